"""What the report's methods table says about how a study searched."""

from __future__ import annotations

import optuna
import yaml

from moprune.report.data import _setup
from moprune.spec import parse_spec
from tests.helpers import ROOT


def _screening_row(allocate: float, probe: bool = False, explore: float = 0.0) -> str:
    raw = yaml.safe_load((ROOT / "studies" / "quickstart.yaml").read_text())
    raw["search"]["screen"].update(allocate=allocate, probe=probe, explore=explore)
    spec = parse_spec(raw)
    study = optuna.create_study(directions=spec.directions)
    return _setup(study, spec, {})["methods"]["screening"]


def test_the_methods_table_says_how_much_of_the_screen_the_allocation_model_proposes():
    assert _screening_row(0.5).endswith("50% of each later round from the allocation model")
    assert _screening_row(0.0).endswith("no allocation model")


def test_the_methods_table_says_what_share_of_a_round_the_sampler_keeps():
    assert _screening_row(0.5, explore=0.5).endswith("from the allocation model, at least 50% from the sampler")
    assert "from the sampler" not in _screening_row(0.5)


def test_the_methods_table_says_whether_the_proxy_floor_was_probed():
    assert _screening_row(0.5, probe=True).endswith("allocation model; the proxy floor probed")
    assert "probed" not in _screening_row(0.5)
