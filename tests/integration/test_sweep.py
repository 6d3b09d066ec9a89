"""Sweeps end to end: a two-cell grid of real simulations, resumed, summarised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from fedtflite.cli import main
from fedtflite.errors import ConfigError
from fedtflite.orchestrator.sweep import load_grid, read_sweep, run_sweep, sweep_table
from fedtflite.simulation.checkpoint import CHECKPOINT_FILE
from fedtflite.simulation.config import config_from_mapping
from fedtflite.simulation.history import RoundRecord, read_history
from fedtflite.simulation.prepare import prepare_run
from server.server_app import run_server

pytestmark = pytest.mark.integration

GRID = """
[base]
num-clients = 6
num-rounds = 1
fraction-train = 0.5
fraction-evaluate = 0.5
seed = 3

[axes.strategy.fedavg]
label = "FedAvg"
strategy = "fedavg"

[axes.strategy.fedprox]
label = "FedProx"
strategy = "fedprox"
proximal-mu = 0.1
"""


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("grid") / "grid.toml"
    path.write_text(GRID)
    return path


@pytest.fixture(scope="module")
def swept(grid: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sweep")
    base, cells = load_grid(grid)
    run_sweep(base, cells, out, log=lambda line: None)
    return out


def test_every_cell_runs_once_and_is_summarised(grid: Path, swept: Path) -> None:
    base, cells = load_grid(grid)
    results = read_sweep(base, cells, swept)

    assert [r.cell.name for r in results] == ["fedavg", "fedprox"]
    assert all(r.complete and len(r.rounds) == 2 for r in results)
    assert results[1].config.strategy == "fedprox"
    assert results[1].config.proximal_mu == 0.1
    table = sweep_table(results, ["strategy"])
    assert "| FedAvg | 1/1 |" in table and "| FedProx | 1/1 |" in table


def test_a_rerun_skips_complete_cells_and_redoes_a_partial_one(
    grid: Path, swept: Path
) -> None:
    base, cells = load_grid(grid)
    kept = (swept / "fedavg" / "history.csv").stat().st_mtime_ns
    (swept / "fedprox" / "final_weights.npz").unlink()  # as if cut off
    lines: list[str] = []

    results = run_sweep(base, cells, swept, log=lines.append)

    assert lines[0] == "fedavg: complete, skipped"
    assert lines[1] == "fedprox: running"
    assert (swept / "fedavg" / "history.csv").stat().st_mtime_ns == kept
    assert all(r.complete for r in results)


class _CutOffError(Exception):
    pass


class _CutAt:
    def __init__(self, at: int):
        self.at = at

    def on_round(self, record: RoundRecord) -> None:
        if record.round == self.at:
            raise _CutOffError

    def on_end(self) -> None:
        pass


def test_a_cell_cut_off_mid_run_goes_on_from_its_checkpoint(
    grid: Path, tmp_path: Path, in_process_grid: Any
) -> None:
    base, cells = load_grid(grid)
    base = {**base, "num-rounds": 3}
    fedprox = [c for c in cells if c.name == "fedprox"]
    config = config_from_mapping({**base, **fedprox[0].overrides})
    cut = prepare_run(config, tmp_path / "fedprox")
    with cut, pytest.raises(_CutOffError):  # cut off in round 2 (its row is written)
        run_server(in_process_grid, cut, [_CutAt(2)], progress=False)
    before = read_history(tmp_path / "fedprox" / "history.csv")
    lines: list[str] = []

    results = run_sweep(base, fedprox, tmp_path, log=lines.append)

    assert lines[:2] == ["fedprox: goes on after round 1", "fedprox: running"]
    assert results[0].complete and len(results[0].rounds) == 4
    kept = [(r.round, r.test_accuracy, r.seconds) for r in results[0].rounds[:2]]
    assert kept == [(r.round, r.test_accuracy, r.seconds) for r in before[:2]]
    assert not (tmp_path / "fedprox" / CHECKPOINT_FILE).exists()


def test_cli_reports_without_running(
    grid: Path, swept: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["sweep", str(grid), "--out", str(swept), "--summary", str(tmp_path)]
    code = main([*args, "--report-only"])

    assert code == 0
    assert "| FedProx | 1/1 |" in (tmp_path / "summary.md").read_text()
    assert (tmp_path / "accuracy.png").stat().st_size > 0
    assert "FedAvg" in capsys.readouterr().out


def test_a_bad_cell_fails_before_anything_runs(grid: Path, tmp_path: Path) -> None:
    base, cells = load_grid(grid)
    bad = [*cells, type(cells[0])("oops", {"alpha": -1.0}, {"strategy": "bad"})]

    with pytest.raises(ConfigError, match=r"sweep cell 'oops': alpha = -1.0"):
        run_sweep(base, bad, tmp_path, log=lambda line: None)
    assert not any(tmp_path.iterdir())


def test_parallel_cells_run_as_subprocesses_and_resume(
    grid: Path, tmp_path: Path, in_process_grid: Any
) -> None:
    # Two cells at once (each a `fedtflite simulate --resume` subprocess with one
    # CPU): one starts from nothing, one goes on from a checkpoint after round 1.
    base, cells = load_grid(grid)
    base = {**base, "num-rounds": 2, "client-cpus": 1}
    fedavg = next(c for c in cells if c.name == "fedavg")
    config = config_from_mapping({**base, **fedavg.overrides})
    cut = prepare_run(config, tmp_path / "fedavg")
    with cut, pytest.raises(_CutOffError):
        run_server(in_process_grid, cut, [_CutAt(2)], progress=False)
    lines: list[str] = []

    results = run_sweep(base, cells, tmp_path, jobs=2, log=lines.append)

    assert "fedavg: goes on after round 1" in lines
    assert all(r.complete and len(r.rounds) == 3 for r in results)
    log = (tmp_path / "fedavg" / "simulate.log").read_text()
    assert "final test accuracy" in log
