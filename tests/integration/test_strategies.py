"""Every strategy, end to end in one process: the real ServerApp and ClientApp code.

A grid that hands each message straight to the ClientApp's handlers stands in
for Flower's simulation engine (which ``test_simulation.py`` runs on Ray), so all
strategies run in seconds on the real `.tflite`, LiteRT and Fashion-MNIST. The
invariants: every round aggregates every client, the global model stays
float32 and finite, and it learns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
import pytest
from flwr.app import Message

import clients.worker as worker_module
from clients.client_app import evaluate, train
from fedtflite.simulation import SimulationConfig
from fedtflite.simulation.config import STRATEGIES
from fedtflite.simulation.prepare import prepare_run
from server.server_app import run_server

pytestmark = pytest.mark.integration


class InProcessGrid:
    """Two nodes; a message is answered by calling the ClientApp handler."""

    pull_interval = 0.0

    def get_node_ids(self) -> Iterable[int]:
        return [11, 12]

    def send_and_receive(
        self, messages: Iterable[Message], *, timeout: float | None = None
    ) -> Iterable[Message]:
        handlers = {"train": train, "evaluate": evaluate}
        return [
            handlers[m.metadata.message_type](m, None)  # type: ignore[arg-type]
            for m in messages
        ]


@pytest.fixture(autouse=True)
def flower_task(monkeypatch: pytest.MonkeyPatch) -> None:
    from flwr.supercore.task_identity import TaskIdentity

    for attr in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1, raising=False)
    worker_module.get_worker.cache_clear()


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_aggregates_every_client_and_learns(
    strategy: str,
    small_config: Callable[..., SimulationConfig],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    config = small_config(
        f"strategy={strategy}", "num-clients=8", "fraction-train=0.5", "num-rounds=3"
    )
    run = prepare_run(config, tmp_path_factory.mktemp(strategy) / "run")

    rows = run_server(InProcessGrid(), run, progress=False)  # type: ignore[arg-type]
    run.wait()

    assert [r.round for r in rows] == [0, 1, 2, 3]
    for r in rows[1:]:
        assert (r.clients_sampled, r.clients_ok, r.clients_failed) == (4, 4, 0)
        assert r.messages == 4  # one train and one evaluate cohort per node
    assert rows[-1].test_accuracy > rows[0].test_accuracy + 0.2
    with np.load(run.run_dir / "final_weights.npz") as f:
        for name in f.files:
            assert f[name].dtype == np.float32 and np.isfinite(f[name]).all()
