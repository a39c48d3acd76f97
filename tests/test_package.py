"""The package as a library: importing it is cheap and changes nothing of the host program's logging or Optuna's
settings; its public API has the documented signatures."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import moprune

PROBE = """
import json, logging, sys
root_handlers = list(logging.getLogger().handlers)
{before}
import moprune
out = {{"optuna": "optuna" in sys.modules, "torch": "torch" in sys.modules,
       "root_handlers_unchanged": logging.getLogger().handlers == root_handlers,
       "moprune_handlers": [type(h).__name__ for h in logging.getLogger("moprune").handlers]}}
{after}
print(json.dumps(out))
"""


def probe(before: str = "", after: str = "") -> dict:
    """Run PROBE in a fresh interpreter (this one has long imported everything)."""
    proc = subprocess.run([sys.executable, "-c", PROBE.format(before=before, after=after)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_importing_moprune_loads_neither_optuna_nor_torch_and_leaves_logging_alone():
    out = probe()
    assert out["optuna"] is False and out["torch"] is False
    assert out["root_handlers_unchanged"] and out["moprune_handlers"] == ["NullHandler"]


def test_using_the_api_leaves_optunas_verbosity_and_the_root_logger_alone():
    before = "import optuna\nverbosity = optuna.logging.get_verbosity()"
    after = ("run_study = moprune.run_study\nimport moprune.search, moprune.report, moprune.ship\n"
             "out['verbosity_unchanged'] = optuna.logging.get_verbosity() == verbosity\n"
             "out['root_handlers_still_unchanged'] = logging.getLogger().handlers == root_handlers")
    out = probe(before, after)
    assert out["verbosity_unchanged"] and out["root_handlers_still_unchanged"]


def test_run_study_is_the_real_function_with_its_documented_parameters():
    from moprune.search import run_study

    assert moprune.run_study is run_study
    parameters = inspect.signature(moprune.run_study).parameters
    assert list(parameters)[0] == "spec"
    assert {"storage", "n_trials", "timeout_s", "progress"} <= set(parameters)
    assert all(parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
               for name in ("storage", "n_trials", "timeout_s", "progress"))
    assert set(moprune.__all__) <= set(dir(moprune))


def test_no_two_test_files_share_a_name():
    # The test folders are not packages (rootdir-relative imports), so pytest refuses to collect a second
    # test_x.py in another folder and the whole run stops at collection.
    from collections import Counter
    from pathlib import Path

    names = Counter(p.name for p in Path(__file__).parent.rglob("test_*.py"))
    assert [n for n, k in names.items() if k > 1] == []
