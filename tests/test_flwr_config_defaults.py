"""The ``flwr run`` config table in pyproject.toml is the config's defaults."""

from __future__ import annotations

import tomllib
from pathlib import Path

from fedtflite.simulation import SimulationConfig

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_flwr_app_config_holds_every_key_at_its_default() -> None:
    table = tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]["app"]["config"]
    run_only = {"run-dir": "", "resume": False}
    assert {k: table[k] for k in run_only} == run_only
    values = {k: v for k, v in table.items() if k not in run_only}
    assert values == SimulationConfig().to_mapping()
