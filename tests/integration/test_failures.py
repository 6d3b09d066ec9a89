"""Clients whose training diverges: every reply is an error, the model stays put.

With ``learning-rate = 1e30`` the ``mlp``'s loss is NaN within a few steps; the
ClientApp raises :class:`~fedtflite.errors.NonFiniteError`, Flower turns the
exception into an error reply, and its ``aggregate_train`` leaves error replies
out. A round with no successful reply returns no arrays, so Flower's strategy
loop keeps the previous global weights. Such a run fails
(:class:`~fedtflite.errors.RunFailedError`) once its rounds are recorded, unless
``allow-failed-rounds = true``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fedtflite.errors import RunFailedError
from fedtflite.orchestrator import simulate
from fedtflite.runtime import ClientModel
from fedtflite.simulation import History, SimulationConfig, read_history
from fedtflite.simulation.prepare import prepare_run
from server.server_app import run_server

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def diverged(
    small_config: Callable[..., SimulationConfig],
    tmp_path_factory: pytest.TempPathFactory,
) -> History:
    config = small_config("learning-rate=1e30", "allow-failed-rounds=true")
    return simulate(config, tmp_path_factory.mktemp("diverged") / "run", progress=False)


def test_a_run_whose_rounds_aggregated_nothing_fails_after_recording_them(
    small_config: Callable[..., SimulationConfig], tmp_path: Path, in_process_grid: Any
) -> None:
    config = small_config("learning-rate=1e30", "num-rounds=3")
    with (
        prepare_run(config, tmp_path / "run") as run,
        pytest.raises(RunFailedError) as e,
    ):
        run_server(in_process_grid, run, progress=False)

    assert str(e.value).startswith(
        "3 of 3 rounds aggregated no update, every sampled client failed "
        "(round 1-3); first failure: client "
    )
    assert "train returned loss" in str(e.value)
    assert str(e.value).endswith("set allow-failed-rounds = true to accept such rounds")
    assert "\n" not in str(e.value)
    # Every round is recorded all the same, and the run is finished.
    assert [r.round for r in read_history(tmp_path / "run" / "history.csv")] == [
        0,
        1,
        2,
        3,
    ]
    assert (tmp_path / "run" / "final_weights.npz").is_file()


def test_every_training_client_fails_and_none_is_aggregated(diverged: History) -> None:
    for r in diverged.rounds[1:]:
        assert r.clients_sampled == 3
        assert r.clients_failed == r.clients_sampled
        assert r.clients_ok == 0
        assert r.bytes_up == 0
        assert math.isnan(r.train_loss)  # no metrics from failed clients


def test_global_model_stays_the_initial_one(diverged: History) -> None:
    initial = diverged.rounds[0]
    model = ClientModel(diverged.run_dir / "model.tflite")
    names = [p.name for p in model.contract.parameters]

    with np.load(diverged.run_dir / "final_weights.npz") as f:
        final = [f[n] for n in names]

    for r in diverged.rounds[1:]:
        assert (r.test_accuracy, r.test_loss) == (
            initial.test_accuracy,
            initial.test_loss,
        )
        # Federated evaluation still runs, on the unchanged weights.
        assert 0.0 <= r.fed_eval_accuracy <= 1.0
    for w, w0 in zip(final, model.parameters(), strict=True):
        assert np.isfinite(w).all()
        np.testing.assert_array_equal(w, w0)


class _DyingNode:
    """The in-process grid, but node 12's worker dies: its messages of the phases
    ``dead`` (round 1 training is 0, its evaluation 1, ...) fail as a whole, as
    Ray's ActorDiedError does."""

    def __init__(self, grid: Any, dead: range):
        self.grid, self.dead, self.phase = grid, dead, -1

    def get_node_ids(self) -> Any:
        return self.grid.get_node_ids()

    def send_and_receive(self, messages: Any, *, timeout: Any = None) -> Any:
        from flwr.app import Message
        from flwr.app.error import Error
        from flwr.common.constant import ErrorCode

        self.phase += 1
        messages = list(messages)
        if not messages:
            return []
        replies = []
        for m in messages:
            if m.metadata.dst_node_id == 12 and self.phase in self.dead:
                error = Error(ErrorCode.UNKNOWN, "ActorDiedError:<'The actor died'>\nx")
                replies.append(Message(error, reply_to=m))
            else:
                replies.extend(self.grid.send_and_receive([m], timeout=timeout))
        return replies


def test_a_worker_that_stays_dead_ends_the_run_in_one_line(
    small_config: Callable[..., SimulationConfig], tmp_path: Path, in_process_grid: Any
) -> None:
    config = small_config("num-rounds=5")
    grid = _DyingNode(in_process_grid, dead=range(2, 100))  # from round 2 on
    with (
        prepare_run(config, tmp_path / "run") as run,
        pytest.raises(RunFailedError) as e,
    ):
        run_server(grid, run, progress=False)

    assert str(e.value) == (
        "round 2: a worker process died and was not replaced (whole messages failed "
        "in two phases in a row); last: ActorDiedError:<'The actor died'>"
    )
    rows = read_history(tmp_path / "run" / "history.csv")
    # It never ran on crippled: round 2 is not recorded, round 1's checkpoint stays.
    assert [r.round for r in rows] == [0, 1]


def test_a_worker_lost_for_one_phase_costs_that_phase_only(
    small_config: Callable[..., SimulationConfig], tmp_path: Path, in_process_grid: Any
) -> None:
    config = small_config("num-rounds=3")
    grid = _DyingNode(in_process_grid, dead=range(2, 3))  # round 2: training
    with prepare_run(config, tmp_path / "run") as run:
        rows = run_server(grid, run, progress=False)

    failed = [r.clients_failed for r in rows[1:]]
    assert failed[0] == 0 and failed[1] > 0 and failed[2] == 0
    assert rows[2].clients_ok == rows[2].clients_sampled - failed[1] > 0
