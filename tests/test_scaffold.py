"""SCAFFOLD by hand: two clients, option II, the Flower strategy on real Messages."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict

from fedtflite.algorithms.control_variates import (
    scaffold_client_update,
    scaffold_server_update,
)
from fedtflite.protocol import keys
from server.scaffold import Scaffold

X = [np.array([1.0, 2.0], np.float32)]
C = [np.array([0.1, 0.1], np.float32)]
# client 1: c_1 = 0, ends at y_1 after K=2 steps of lr 0.1, 30 examples
C1, Y1 = [np.array([0.0, 0.0], np.float32)], [np.array([0.8, 1.9], np.float32)]
# client 2: c_2 = (0.2, 0), ends at y_2 after K=4 steps, 10 examples
C2, Y2 = [np.array([0.2, 0.0], np.float32)], [np.array([1.1, 2.2], np.float32)]


def test_client_option_ii_by_hand():
    # c_1+ = c_1 - c + (x - y_1) / (K lr) = 0 - 0.1 + (0.2, 0.1) / 0.2 = (0.9, 0.4)
    new1, d1 = scaffold_client_update(C1, C, X, Y1, num_steps=2, learning_rate=0.1)
    np.testing.assert_allclose(new1[0], [0.9, 0.4], atol=1e-6)
    np.testing.assert_allclose(d1[0], [0.9, 0.4], atol=1e-6)
    # c_2+ = (0.2, 0) - 0.1 + (-0.1, -0.2) / 0.4 = (-0.15, -0.6); delta (-0.35, -0.6)
    new2, d2 = scaffold_client_update(C2, C, X, Y2, num_steps=4, learning_rate=0.1)
    np.testing.assert_allclose(new2[0], [-0.15, -0.6], atol=1e-6)
    np.testing.assert_allclose(d2[0], [-0.35, -0.6], atol=1e-6)


def test_server_update_by_hand():
    d1, d2 = [np.array([0.9, 0.4], np.float32)], [np.array([-0.35, -0.6], np.float32)]
    x, c = scaffold_server_update(X, C, [Y1, Y2], [d1, d2], [30, 10], num_clients=4)
    # x + 0.75 (y_1 - x) + 0.25 (y_2 - x) = (1 - 0.15 + 0.025, 2 - 0.075 + 0.05)
    np.testing.assert_allclose(x[0], [0.875, 1.975], atol=1e-6)
    # c + (d_1 + d_2) / N = (0.1 + 0.55 / 4, 0.1 - 0.2 / 4)
    np.testing.assert_allclose(c[0], [0.2375, 0.05], atol=1e-6)


@pytest.fixture
def flower_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages need Flower's task identity, which a running app would set."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1, raising=False)


def _reply(y: np.ndarray, dc: np.ndarray, n: int) -> Message:
    instruction = Message(
        content=RecordDict({"config": ConfigRecord({})}),
        dst_node_id=1,
        message_type="train",
    )
    arrays = ArrayRecord(array_dict={"a0": Array(y), "dc.a0": Array(dc)})
    metrics = MetricRecord({keys.NUM_EXAMPLES: n})
    return Message(
        RecordDict({"arrays": arrays, "metrics": metrics}), reply_to=instruction
    )


def test_strategy_applies_the_same_update(flower_task: None) -> None:
    strategy = Scaffold(num_clients=4)
    strategy.current_arrays = ArrayRecord(array_dict={"a0": Array(X[0])})
    strategy.control = ArrayRecord(array_dict={"a0": Array(C[0])})
    replies = [
        _reply(Y1[0], np.array([0.9, 0.4], np.float32), 30),
        _reply(Y2[0], np.array([-0.35, -0.6], np.float32), 10),
    ]
    arrays, metrics = strategy.aggregate_train(1, replies)
    assert arrays is not None and metrics is not None
    np.testing.assert_allclose(arrays["a0"].numpy(), [0.875, 1.975], atol=1e-6)
    np.testing.assert_allclose(
        strategy.control["a0"].numpy(), [0.2375, 0.05], atol=1e-6
    )
    assert list(arrays.keys()) == ["a0"]  # the deltas never reach the global model
