"""Clients whose training diverges: every reply is an error, the model stays put.

With ``learning-rate = 1e30`` the ``mlp``'s loss is NaN within a few steps; the
ClientApp raises :class:`~fedtflite.errors.NonFiniteError`, Flower turns the
exception into an error reply, and its ``aggregate_train`` leaves error replies
out. A round with no successful reply returns no arrays, so Flower's strategy
loop keeps the previous global weights.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from fedtflite.orchestrator import simulate
from fedtflite.runtime import ClientModel
from fedtflite.simulation import History, SimulationConfig

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def diverged(
    small_config: Callable[..., SimulationConfig],
    tmp_path_factory: pytest.TempPathFactory,
) -> History:
    config = small_config("learning-rate=1e30")
    return simulate(config, tmp_path_factory.mktemp("diverged") / "run", progress=False)


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
