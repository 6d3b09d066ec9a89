"""Real devices on the virtual clock, end to end.

Runs are real (the `.tflite` through LiteRT on Fashion-MNIST, Flower's
ServerApp and ClientApp): one on Flower's simulation engine over Ray, the others
in one process (``in_process_grid``) to stay fast. ``step-seconds`` is pinned,
so that the clock, and with it who straggles, is the same on every machine.
"""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedtflite.orchestrator import simulate
from fedtflite.simulation import RoundRecord, SimulationConfig, read_history
from fedtflite.simulation.history import TIME_COLUMNS
from fedtflite.simulation.prepare import prepare_run
from server.server_app import run_server

pytestmark = pytest.mark.integration

LOGNORMAL = (
    "num-clients=20",
    "num-rounds=3",
    "fraction-train=0.5",
    "fraction-evaluate=0",
    "partitioner=iid",
    "devices=lognormal",
    "over-commit=1.3",
    "round-deadline=6.0",
    "straggler-policy=drop",
    "step-seconds=0.02",
)
"""10 of 20 clients per round, 13 sampled; 75 steps of full work each, 1.5 s on
this machine, a median phone 4 s: a 6 s deadline drops the slow tail."""


def _comparable(rows: list[RoundRecord]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        d = {k: v for k, v in asdict(r).items() if k not in TIME_COLUMNS}
        out.append({k: "nan" if v != v else v for k, v in d.items()})
    return out


def _participation(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "participation.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _in_process(config: SimulationConfig, run_dir: Path, grid: Any) -> Path:
    with prepare_run(config, run_dir) as run:
        run_server(grid, run, progress=False)
    return run_dir


@pytest.fixture(scope="module")
def ray_run(
    small_config: Callable[..., SimulationConfig],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    run_dir = tmp_path_factory.mktemp("devices") / "ray"
    simulate(small_config(*LOGNORMAL), run_dir, progress=False)
    return run_dir


def test_deadline_and_over_commit_straggle_and_the_clock_runs(ray_run: Path) -> None:
    rows = read_history(ray_run / "history.csv")
    trained = rows[1:]
    assert [r.clients_sampled for r in trained] == [13, 13, 13]  # ceil(1.3 * 10)
    assert all(r.clients_straggled > 0 for r in trained)
    assert all(0 < r.clients_ok <= 10 for r in trained)
    assert all(
        r.clients_ok + r.clients_straggled + r.clients_unavailable == 13
        for r in trained
    )
    clock = [r.virtual_clock for r in rows]
    assert all(b > a for a, b in itertools.pairwise(clock))
    for r in trained:  # no round outlasts its deadline
        assert 0 < r.virtual_seconds <= 6.0
    parts = _participation(ray_run)
    assert sum(int(p["rounds_sampled"]) for p in parts) == 39
    assert sum(int(p["rounds_aggregated"]) for p in parts) == sum(
        r.clients_ok for r in trained
    )
    assert (ray_run / "participation.png").stat().st_size > 0
    assert (ray_run / "accuracy.png").stat().st_size > 0


def test_the_same_seed_repeats_exactly_on_ray_and_in_process(
    ray_run: Path,
    small_config: Callable[..., SimulationConfig],
    tmp_path: Path,
    in_process_grid: Any,
) -> None:
    again = _in_process(small_config(*LOGNORMAL), tmp_path / "again", in_process_grid)
    a = read_history(ray_run / "history.csv")
    b = read_history(again / "history.csv")
    assert _comparable(a) == _comparable(b)
    assert _participation(ray_run) == _participation(again)


@pytest.fixture(scope="module")
def half_slow(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A device file: even clients run at this machine's speed, odd ones 10x
    slower; the network is fast (1 Gbit/s)."""
    path = tmp_path_factory.mktemp("files") / "half_slow.csv"
    rows = [f"{c},{1.0 if c % 2 == 0 else 10.0},1000000,1000000" for c in range(20)]
    path.write_text(
        "client_id,compute_factor,download_kbps,upload_kbps\n" + "\n".join(rows)
    )
    return path


def _half_slow_config(
    make: Callable[..., SimulationConfig], path: Path, policy: str
) -> SimulationConfig:
    # 75 steps of full work: 1.5 s fast, 15 s slow; the deadline is 4 s
    return make(
        "num-clients=20",
        "num-rounds=4",
        "fraction-train=0.5",
        "fraction-evaluate=0",
        "partitioner=iid",
        f"devices={str(path)!r}",
        "round-deadline=4.0",
        f"straggler-policy={policy!r}",
        "step-seconds=0.02",
    )


def test_a_deadline_favours_the_fast_half(
    half_slow: Path,
    small_config: Callable[..., SimulationConfig],
    tmp_path: Path,
    in_process_grid: Any,
) -> None:
    config = _half_slow_config(small_config, half_slow, "drop")
    run_dir = _in_process(config, tmp_path / "drop", in_process_grid)
    parts = _participation(run_dir)

    def total(column: str, compute_factor: str) -> int:
        return sum(
            int(p[column]) for p in parts if p["compute_factor"] == compute_factor
        )

    fast = total("rounds_aggregated", "1.0")
    slow = total("rounds_aggregated", "10.0")
    sampled_slow = total("rounds_sampled", "10.0")
    assert sampled_slow > 0 and slow == 0 and fast >= 8
    rows = read_history(run_dir / "history.csv")
    assert sum(r.clients_straggled for r in rows) == sampled_slow


def test_partial_work_gives_every_sampled_client_some_work(
    half_slow: Path,
    small_config: Callable[..., SimulationConfig],
    tmp_path: Path,
    in_process_grid: Any,
) -> None:
    config = _half_slow_config(small_config, half_slow, "partial")
    run_dir = _in_process(config, tmp_path / "partial", in_process_grid)
    for p in _participation(run_dir):
        assert p["rounds_aggregated"] == p["rounds_sampled"]
    rows = read_history(run_dir / "history.csv")[1:]
    assert all(r.clients_ok == r.clients_sampled == 10 for r in rows)
    assert all(r.clients_straggled == 0 for r in rows)
    # slow clients train the 19 of their 75 steps that fit (0.2 s each, plus
    # the transfers): the round lasts longer than a fast client's full work
    assert all(1.5 < r.virtual_seconds <= 4.0 for r in rows)


def test_cohorts_and_one_message_per_client_agree(
    half_slow: Path,
    small_config: Callable[..., SimulationConfig],
    tmp_path: Path,
    in_process_grid: Any,
) -> None:
    config = _half_slow_config(small_config, half_slow, "partial")
    cohorts = _in_process(config, tmp_path / "cohorts", in_process_grid)
    single = _in_process(
        SimulationConfig(**{**asdict(config), "clients_per_message": 1}),
        tmp_path / "single",
        in_process_grid,
    )
    a = read_history(cohorts / "history.csv")
    b = read_history(single / "history.csv")
    for x, y in zip(a, b, strict=True):
        assert (x.virtual_clock, x.clients_ok) == (y.virtual_clock, y.clients_ok)
    with (
        np.load(cohorts / "final_weights.npz") as f,
        np.load(single / "final_weights.npz") as g,
    ):
        for k in f.files:
            np.testing.assert_allclose(f[k], g[k], rtol=1e-5, atol=1e-6)


class _CrashError(Exception):
    pass


class _CrashAt:
    """Raises while round ``at`` is recorded (before its checkpoint)."""

    def __init__(self, at: int):
        self.at = at

    def on_round(self, record: RoundRecord) -> None:
        if record.round == self.at:
            raise _CrashError

    def on_end(self) -> None:
        pass


def test_a_resumed_run_keeps_its_clock_availability_and_counts(
    small_config: Callable[..., SimulationConfig],
    tmp_path: Path,
    in_process_grid: Any,
) -> None:
    # step-seconds = 0: measured once, recorded, and taken back on resume
    config = small_config(
        "num-clients=12",
        "num-rounds=4",
        "fraction-train=0.5",
        "devices=lognormal",
        "availability='bernoulli:0.7'",
        "round-deadline=30.0",
        "straggler-policy=partial",
        "over-commit=1.5",
    )
    whole = _in_process(config, tmp_path / "whole", in_process_grid)
    with prepare_run(config, tmp_path / "cut") as cut, pytest.raises(_CrashError):
        run_server(in_process_grid, cut, [_CrashAt(3)], progress=False)
    with prepare_run(config, tmp_path / "cut", resume=True) as resumed:
        assert resumed.config.step_seconds == cut.config.step_seconds > 0
        run_server(in_process_grid, resumed, progress=False)
    a = read_history(whole / "history.csv")
    b = read_history(tmp_path / "cut" / "history.csv")
    assert _comparable(a) == _comparable(b)
    assert any(r.clients_unavailable for r in a)
    assert _participation(whole) == _participation(tmp_path / "cut")
