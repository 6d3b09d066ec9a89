"""One source per config fact: the defaults, the run-directory check."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fedtflite.errors import ConfigError
from fedtflite.models.specs import DEFAULT_LEARNING_RATE, OptimizerSpec
from fedtflite.simulation import SimulationConfig
from fedtflite.simulation.prepare import run_directory

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
RUN_KEYS = {"run-dir": "", "resume": False, "overwrite": False}
"""`flwr run`'s own keys beside the config's (see server.server_app.main)."""


def test_the_flwr_app_config_is_simulation_config_at_its_defaults() -> None:
    table = tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]["app"]["config"]

    assert {k: table[k] for k in RUN_KEYS} == RUN_KEYS
    assert {k: v for k, v in table.items() if k not in RUN_KEYS} == (
        SimulationConfig().to_mapping()
    )


def test_one_default_learning_rate() -> None:
    assert SimulationConfig().learning_rate == DEFAULT_LEARNING_RATE
    assert OptimizerSpec().learning_rate == DEFAULT_LEARNING_RATE


def test_resume_needs_a_run_directory_named_as_the_caller_names_it() -> None:
    with pytest.raises(ConfigError, match=r"^--resume needs --out, the run directory"):
        run_directory(None, True, resume_name="--resume", run_dir_name="--out")
    assert run_directory("x/y", True) == Path("x/y")
    assert run_directory(None, False).parent == Path("runs")
