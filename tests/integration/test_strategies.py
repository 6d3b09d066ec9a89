"""Every strategy, end to end in one process: the real ServerApp and ClientApp code.

A grid that hands each message straight to the ClientApp's handlers stands in
for Flower's simulation engine (which ``test_simulation.py`` runs on Ray), so all
strategies run in seconds on the real `.tflite`, LiteRT and Fashion-MNIST. The
invariants: every round aggregates every client, the global model stays
float32 and finite, and it learns.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from flwr.serverapp import Grid

from fedtflite.simulation import SimulationConfig
from fedtflite.simulation.prepare import prepare_run
from fedtflite.simulation.strategy_registry import STRATEGIES
from server.server_app import run_server

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_aggregates_every_client_and_learns(
    strategy: str,
    small_config: Callable[..., SimulationConfig],
    tmp_path_factory: pytest.TempPathFactory,
    in_process_grid: Grid,
) -> None:
    config = small_config(
        f"strategy={strategy}", "num-clients=8", "fraction-train=0.5", "num-rounds=3"
    )
    run = prepare_run(config, tmp_path_factory.mktemp(strategy) / "run")

    with run:
        rows = run_server(in_process_grid, run, progress=False)

    assert [r.round for r in rows] == [0, 1, 2, 3]
    for r in rows[1:]:
        assert (r.clients_sampled, r.clients_ok, r.clients_failed) == (4, 4, 0)
        assert r.messages == 4  # one train and one evaluate cohort per node
    assert rows[-1].test_accuracy > rows[0].test_accuracy + 0.2
    with np.load(run.run_dir / "final_weights.npz") as f:
        for name in f.files:
            assert f[name].dtype == np.float32 and np.isfinite(f[name]).all()
