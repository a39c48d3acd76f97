"""The command line as a user meets it: usage errors are one line on stderr and exit 2."""

from __future__ import annotations

import pytest

from moprune.cli import main


@pytest.mark.parametrize("text", ["", "# a study spec, to be written\n\n   # (not yet)\n"], ids=["empty", "comments-only"])
def test_an_empty_spec_exits_2_with_one_line_saying_so(tmp_path, monkeypatch, capsys, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith(f"moprune: error: {path}: the spec is empty") and "studies/quickstart.yaml" in lines[0]
    assert captured.out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.yaml"], "nothing is created for an empty spec"

