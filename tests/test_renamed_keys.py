"""Renamed config keys: refused in a config with a hint; a run directory written
before the rename still resumes.

``tests/data/run_before_rename`` is such a directory: the NIID-Bench cell
``dir05-fedavg-s0`` as committed before it finished (commit 8ff3d94; its
``config.toml`` says ``cohort-size``), kept here once the cell completed.
"""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from fedtflite.errors import ConfigError
from fedtflite.simulation import config_from_mapping, load_config
from fedtflite.simulation.checkpoint import load_checkpoint, resume_point
from fedtflite.simulation.config import load_run_config

ROOT = Path(__file__).resolve().parents[1]
OLD_RUN = ROOT / "tests" / "data" / "run_before_rename"


def test_the_old_key_is_refused_with_its_new_name() -> None:
    with pytest.raises(ConfigError, match=r"^config key 'cohort-size' is now "):
        config_from_mapping({"cohort-size": 4})
    with pytest.raises(ConfigError, match="'clients-per-message'"):
        load_config(None, ["cohort-size=4"])


@pytest.fixture
def old_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(OLD_RUN, run)
    return run


def test_a_run_written_before_the_rename_reads_and_resumes(old_run: Path) -> None:
    assert "cohort-size" in (old_run / "config.toml").read_text()
    config = load_run_config(old_run)
    checkpoint = load_checkpoint(old_run / "checkpoint.npz")
    assert checkpoint is not None
    assert "clients-per-message" in checkpoint.config
    assert "cohort-size" not in checkpoint.config

    got, rows = resume_point(old_run, config.to_mapping())

    assert got is not None and got.round == checkpoint.round
    assert len(rows) == checkpoint.round + 1
    # clients-per-message is where the run runs, not what it computes
    regrouped = replace(config, clients_per_message=1)
    assert resume_point(old_run, regrouped.to_mapping())[0] is not None
