"""A run cut off mid-way goes on from its checkpoint and ends exactly where a run
that was never interrupted ends: same history, same weights.

The real ServerApp and ClientApp code runs in one process (``in_process_grid``),
on the real `.tflite`, LiteRT and Fashion-MNIST; one test resumes through
:func:`fedtflite.simulate` on Ray.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedtflite.errors import CheckpointError, ConfigError
from fedtflite.orchestrator import simulate
from fedtflite.simulation import RoundRecord, SimulationConfig
from fedtflite.simulation.checkpoint import CHECKPOINT_FILE, load_checkpoint
from fedtflite.simulation.history import TIME_COLUMNS
from fedtflite.simulation.prepare import prepare_run
from server.server_app import run_server

pytestmark = pytest.mark.integration


class CrashError(Exception):
    """What the test's callback raises to cut a run off."""


class CrashAt:
    """A round callback that raises when round ``at`` is recorded, i.e. after the
    history has its row but before the server writes that round's checkpoint."""

    def __init__(self, at: int):
        self.at = at

    def on_round(self, record: RoundRecord) -> None:
        if record.round == self.at:
            raise CrashError(f"cut off at round {self.at}")

    def on_end(self) -> None:
        pass


class Counting:
    """Wraps a grid and counts the rounds' message batches it carries."""

    def __init__(self, grid: Any):
        self.grid, self.batches = grid, 0
        self.pull_interval = 0.0

    def get_node_ids(self) -> Iterable[int]:
        return list(self.grid.get_node_ids())

    def send_and_receive(self, messages: Iterable[Any], **kw: Any) -> Iterable[Any]:
        self.batches += 1
        return list(self.grid.send_and_receive(messages, **kw))


def _cut_off(config: SimulationConfig, run_dir: Path, grid: Any, at: int) -> Path:
    """Run ``config`` in ``run_dir`` until it crashes while recording round ``at``."""
    with prepare_run(config, run_dir) as run, pytest.raises(CrashError):
        run_server(grid, run, [CrashAt(at)], progress=False)
    return run_dir


@pytest.fixture
def cut_run(
    small_config: Callable[..., SimulationConfig],
    tmp_path: Path,
    in_process_grid: Any,
) -> tuple[SimulationConfig, Path]:
    """A 3-round run cut off while recording round 2 (checkpoint at round 1)."""
    config = small_config("num-rounds=3")
    return config, _cut_off(config, tmp_path / "run", in_process_grid, at=2)


def _same(a: RoundRecord, b: RoundRecord) -> bool:
    for k, v in asdict(a).items():
        w = getattr(b, k)
        if k in TIME_COLUMNS or (
            isinstance(v, float) and math.isnan(v) and math.isnan(w)
        ):
            continue
        if v != w:
            return False
    return True


def _weights(run_dir: Path) -> dict[str, np.ndarray]:
    with np.load(run_dir / "final_weights.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.mark.parametrize("strategy", ["fedavg", "fedavgm", "fedadam", "scaffold"])
def test_a_resumed_run_ends_where_an_uninterrupted_one_ends(
    strategy: str,
    small_config: Callable[..., SimulationConfig],
    tmp_path: Path,
    in_process_grid: Any,
) -> None:
    # Half the clients per round: SCAFFOLD's clients keep c_i across rounds they
    # skip, and round 3 is cut off after some of them stored a new c_i.
    config = small_config(
        f"strategy={strategy}", "num-clients=8", "fraction-train=0.5", "num-rounds=4"
    )
    with prepare_run(config, tmp_path / "whole") as whole:
        expected = run_server(in_process_grid, whole, progress=False)

    cut_dir = _cut_off(config, tmp_path / "cut", in_process_grid, at=3)
    checkpoint = load_checkpoint(cut_dir / CHECKPOINT_FILE)
    assert checkpoint is not None and checkpoint.round == 2

    resumed = prepare_run(config, tmp_path / "cut", resume=True)
    assert [r.round for r in resumed.history] == [0, 1, 2]  # round 3's row dropped
    grid = Counting(in_process_grid)
    with resumed:
        got = run_server(grid, resumed, progress=False)

    assert grid.batches == 2 * 2  # rounds 3 and 4 only: train + evaluate each
    assert [r.round for r in got] == [0, 1, 2, 3, 4]
    for a, b in zip(got, expected, strict=True):
        assert _same(a, b), (a, b)
    final, want = _weights(cut_dir), _weights(whole.run_dir)
    for name in want:
        np.testing.assert_array_equal(final[name], want[name])
    assert not (cut_dir / CHECKPOINT_FILE).exists()  # done: no checkpoint
    history = (cut_dir / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 5
    with pytest.raises(CheckpointError, match="nothing to resume"):
        prepare_run(config, cut_dir, resume=True)  # would overwrite it


def test_a_checkpoint_resumes_only_its_own_config(
    small_config: Callable[..., SimulationConfig],
    cut_run: tuple[SimulationConfig, Path],
    in_process_grid: Any,
) -> None:
    config, run_dir = cut_run

    with pytest.raises(CheckpointError, match=r"learning-rate = 0\.05 there, 0\.1 now"):
        prepare_run(
            small_config("num-rounds=3", "learning-rate=0.1"), run_dir, resume=True
        )
    with pytest.raises(CheckpointError, match="nothing to resume for num-rounds = 1"):
        prepare_run(small_config("num-rounds=1"), run_dir, resume=True)
    # Where and how long it runs may change; a run without resume starts over.
    with prepare_run(
        small_config("num-rounds=5", "clients-per-message=1"), run_dir, resume=True
    ) as longer:
        assert longer.checkpoint is not None and longer.checkpoint.round == 1
    with pytest.raises(ConfigError, match="start it over with --overwrite"):
        prepare_run(config, run_dir)
    with prepare_run(config, run_dir, overwrite=True) as fresh:
        assert fresh.checkpoint is None
    assert not (run_dir / CHECKPOINT_FILE).exists()


def test_simulate_resumes_on_ray(
    small_config: Callable[..., SimulationConfig], tmp_path: Path
) -> None:
    config = small_config("num-rounds=3")
    with pytest.raises(CrashError):
        simulate(config, tmp_path / "run", callbacks=[CrashAt(2)], progress=False)

    history = simulate(config, tmp_path / "run", progress=False, resume=True)

    assert [r.round for r in history.rounds] == [0, 1, 2, 3]
    assert all(r.clients_ok == 3 for r in history.rounds[1:])
    assert history.final_accuracy > history.rounds[0].test_accuracy


def test_a_scaffold_checkpoint_needs_its_clients_state(
    small_config: Callable[..., SimulationConfig],
    tmp_path: Path,
    in_process_grid: Any,
) -> None:
    config = small_config("strategy=scaffold", "num-rounds=3")
    run_dir = _cut_off(config, tmp_path / "run", in_process_grid, at=2)
    for f in (run_dir / "client_state").iterdir():
        f.unlink()  # e.g. only the checkpoint was copied to another machine

    with pytest.raises(CheckpointError, match="holds no client state"):
        prepare_run(config, run_dir, resume=True)


def test_flwr_run_entry_resumes_with_run_config(
    small_config: Callable[..., SimulationConfig],
    tmp_path: Path,
    in_process_grid: Any,
) -> None:
    from flwr.app import Context, RecordDict

    from server.server_app import main

    config = small_config("num-rounds=3")
    run_dir = _cut_off(config, tmp_path / "run", in_process_grid, at=2)
    values = {**config.to_mapping(), "run-dir": str(run_dir), "resume": True}
    context = Context(1, 1, {}, RecordDict(), values)

    main(in_process_grid, context)

    rows = (run_dir / "history.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2", "3"]
    assert not (run_dir / CHECKPOINT_FILE).exists()
    del values["run-dir"]
    with pytest.raises(ConfigError, match="resume = true needs run-dir"):
        main(in_process_grid, Context(1, 1, {}, RecordDict(), values))
