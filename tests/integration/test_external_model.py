"""A `.tflite` built outside fedtflite's builder trains in a real federated run.

The model is what a user might write: a softmax regression as a ``tf.Module``
with the four contract signatures only (no ``set_learning_rate``; its learning
rate is baked in), converted with builtin ops alone.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fedtflite.orchestrator import simulate
from fedtflite.runtime import ClientModel
from fedtflite.simulation import SimulationConfig

pytestmark = pytest.mark.integration


def _softmax_regression_tflite(workdir: Path) -> bytes:
    """``logits = x @ a0 + a1`` on ``[None, 784]`` inputs, plain SGD at 0.1."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    class SoftmaxRegression(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            init = np.random.default_rng(1).normal(0.0, 0.01, (784, 10))
            self.w = tf.Variable(init.astype(np.float32))
            self.b = tf.Variable(np.zeros(10, np.float32))

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 784], tf.float32),
                tf.TensorSpec([None], tf.int32),
            ]
        )
        def train(self, x: tf.Tensor, y: tf.Tensor) -> dict[str, tf.Tensor]:
            # The gradient by hand: tf.GradientTape's would need Select-TF ops.
            z = x @ self.w + self.b
            onehot = tf.one_hot(y, 10)
            n = tf.cast(tf.shape(x)[0], tf.float32)
            dz = (tf.nn.softmax(z) - onehot) / n
            self.w.assign_sub(0.1 * tf.matmul(x, dz, transpose_a=True))
            self.b.assign_sub(0.1 * tf.reduce_sum(dz, axis=0))
            return {"loss": -tf.reduce_sum(onehot * tf.nn.log_softmax(z)) / n}

        @tf.function(input_signature=[tf.TensorSpec([None, 784], tf.float32)])
        def infer(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
            return {"logits": x @ self.w + self.b}

        @tf.function(input_signature=[])
        def parameters(self) -> dict[str, tf.Tensor]:
            return {"a0": self.w.read_value(), "a1": self.b.read_value()}

        @tf.function(
            input_signature=[
                tf.TensorSpec([784, 10], tf.float32),
                tf.TensorSpec([10], tf.float32),
            ]
        )
        def restore(self, a0: tf.Tensor, a1: tf.Tensor) -> dict[str, tf.Tensor]:
            self.w.assign(a0)
            self.b.assign(a1)
            return {"a0": self.w.read_value()}

    module = SoftmaxRegression()
    signatures = {
        name: getattr(module, name).get_concrete_function()
        for name in ("train", "infer", "parameters", "restore")
    }
    tf.saved_model.save(module, str(workdir / "saved"), signatures=signatures)
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(workdir / "saved"), signature_keys=list(signatures)
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.experimental_enable_resource_variables = True
    return bytes(converter.convert())


@pytest.fixture(scope="module")
def external_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("external")
    path = root / "softmax.tflite"
    path.write_bytes(_softmax_regression_tflite(root))
    return path


def test_external_model_learns_in_a_federated_run(
    external_model: Path,
    small_config: Callable[..., SimulationConfig],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert not ClientModel(external_model).supports_learning_rate
    config = small_config(f"model={json.dumps(str(external_model))}")

    with caplog.at_level(logging.WARNING, logger="fedtflite"):
        history = simulate(config, tmp_path / "run", progress=False)

    first, last = history.rounds[0], history.rounds[-1]
    assert "no set_learning_rate" in caplog.text
    assert (
        history.run_dir / "model.tflite"
    ).read_bytes() == external_model.read_bytes()
    assert all(r.clients_ok == r.clients_sampled == 3 for r in history.rounds[1:])
    assert first.test_accuracy < 0.3
    assert last.test_accuracy > first.test_accuracy + 0.3
    assert last.test_loss < first.test_loss
