"""Built `.tflite` models: builtins only, and `train` equal to TensorFlow's step.

The reference is independent of :mod:`fedtflite.models.ops`: native TensorFlow
ops differentiated by `tf.GradientTape`, updated by Keras' own ``SGD`` and
``Adam`` on plain `tf.Variable`s, on real Fashion-MNIST batches. LiteRT runs
the model as the clients do (one thread, no TensorFlow in the loop).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import tensorflow as tf
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from fedtflite.models.architectures import ARCHITECTURES, init_weights
from fedtflite.models.build import build_model
from fedtflite.models.specs import ModelSpec, OptimizerSpec

BATCH = 32
STEPS = 10
TOL = 1e-5
OPTIMIZERS = {
    "sgd": OptimizerSpec("sgd", learning_rate=0.05, momentum=0.9),
    "adam": OptimizerSpec("adam", learning_rate=1e-3),
}
CASES = [(a, o) for a in ("mlp", "cnn") for o in OPTIMIZERS]
SIGNATURES = {"train", "infer", "parameters", "restore", "set_learning_rate"}

Batch = tuple[np.ndarray, np.ndarray]
Weights = list[np.ndarray]


def _spec(arch: str, opt: str, seed: int = 0) -> ModelSpec:
    return ModelSpec(arch, OPTIMIZERS[opt], seed=seed)


@pytest.fixture(scope="module")
def model_bytes() -> Callable[[str, str], bytes]:
    """Build each (architecture, optimizer) once per test session."""
    built: dict[tuple[str, str], bytes] = {}

    def get(arch: str, opt: str) -> bytes:
        if (arch, opt) not in built:
            built[arch, opt] = build_model(_spec(arch, opt))
        return built[arch, opt]

    return get


@pytest.fixture(scope="module")
def batches(train_batches: Callable[[int, int, int], list[Batch]]) -> list[Batch]:
    """``STEPS + 1`` real training batches of ``BATCH`` rows, labels one-hot."""
    eye = np.eye(10, dtype=np.float32)
    return [
        (np.ascontiguousarray(x), eye[y])
        for x, y in train_batches(STEPS + 1, BATCH, 1234)
    ]


class _Lite:
    """The signatures of one LiteRT interpreter, with numpy in and out."""

    def __init__(self, model: bytes):
        self.interpreter = Interpreter(model_content=model, num_threads=1)
        self._run = {
            name: self.interpreter.get_signature_runner(name) for name in SIGNATURES
        }
        self.static_batch = "mask" in self._run["train"].get_input_details()

    def train(
        self, x: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None
    ) -> float:
        inputs = {"x": x, "y": y}
        if self.static_batch:
            inputs["mask"] = np.ones(len(x), np.float32) if mask is None else mask
        return float(self._run["train"](**inputs)["loss"])

    def infer(self, x: np.ndarray) -> dict[str, np.ndarray]:
        return dict(self._run["infer"](x=x))

    def parameters(self) -> Weights:
        out = self._run["parameters"]()
        return [np.array(out[f"a{i}"]) for i in range(len(out))]

    def restore(self, weights: Sequence[np.ndarray]) -> float:
        out = self._run["restore"](**{f"a{i}": w for i, w in enumerate(weights)})
        return float(out["step"])

    def set_learning_rate(self, lr: float) -> None:
        self._run["set_learning_rate"](lr=np.float32(lr))


def _native_logits(arch: str, w: Sequence[tf.Variable], x: tf.Tensor) -> tf.Tensor:
    if arch == "mlp":
        h = tf.nn.relu(tf.matmul(tf.reshape(x, [-1, 784]), w[0]) + w[1])
        return tf.matmul(h, w[2]) + w[3]
    h = tf.expand_dims(x, -1)
    for k, b in ((w[0], w[1]), (w[2], w[3])):
        h = tf.nn.relu(tf.nn.conv2d(h, k, strides=1, padding="VALID") + b)
        h = tf.nn.max_pool2d(h, ksize=2, strides=2, padding="VALID")
    h = tf.reshape(h, [-1, 256])
    h = tf.nn.relu(tf.matmul(h, w[4]) + w[5])
    h = tf.nn.relu(tf.matmul(h, w[6]) + w[7])
    return tf.matmul(h, w[8]) + w[9]


class _Reference:
    """The same network trained by TensorFlow's autodiff and Keras' optimizer."""

    def __init__(self, arch: str, opt: str, weights: Sequence[np.ndarray]):
        self.arch = arch
        self.w = [tf.Variable(a) for a in weights]
        spec = OPTIMIZERS[opt]
        self.opt: keras.optimizers.Optimizer
        if opt == "sgd":
            self.opt = keras.optimizers.SGD(spec.learning_rate, momentum=spec.momentum)
        else:
            self.opt = keras.optimizers.Adam(spec.learning_rate, epsilon=1e-7)

    def step(self, x: np.ndarray, y: np.ndarray) -> float:
        with tf.GradientTape() as tape:
            logits = _native_logits(self.arch, self.w, tf.constant(x))
            ce = tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits)
            loss = tf.reduce_mean(ce)
        self.opt.apply_gradients(zip(tape.gradient(loss, self.w), self.w, strict=True))
        return float(loss)

    def weights(self) -> Weights:
        return [v.numpy() for v in self.w]


def _max_diff(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    assert [x.shape for x in a] == [x.shape for x in b]
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


_BUILTINS = {k for k in vars(schema.BuiltinOperator) if k.isupper()}


def _operator_names(model: bytes) -> set[str]:
    """Every operator kind of every subgraph (the model's operator-code table).

    A custom or Flex op shows as its custom code (``FlexConv2DBackpropFilter``).
    """
    names = {getattr(schema.BuiltinOperator, k): k for k in _BUILTINS}
    root = schema.Model.GetRootAs(model, 0)
    found = set()
    for i in range(root.OperatorCodesLength()):
        code = root.OperatorCodes(i)
        custom = code.CustomCode()
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        found.add(custom.decode() if custom else names[builtin])
    return found


@pytest.mark.parametrize(("arch", "opt"), CASES)
def test_builds_builtins_only_and_runs(
    arch: str, opt: str, model_bytes: Callable[[str, str], bytes], batches: list[Batch]
) -> None:
    model = model_bytes(arch, opt)
    ops = _operator_names(model)
    assert not [op for op in ops if "flex" in op.lower() or op == "CUSTOM"]
    assert ops <= _BUILTINS
    lite = _Lite(model)
    dynamic = {"train_tail"} if arch == "mlp" else set()  # train's twin (contract)
    assert set(lite.interpreter.get_signature_list()) == SIGNATURES | dynamic
    assert lite.static_batch == (arch == "cnn")
    x, y = batches[0]
    out = lite.infer(x[:5])
    assert out["logits"].shape == (5, 10)
    np.testing.assert_allclose(out["output"].sum(axis=1), 1.0, rtol=1e-5)
    assert np.isfinite(lite.train(x, y))


@pytest.mark.parametrize(("arch", "opt"), CASES)
def test_train_matches_tensorflow(
    arch: str, opt: str, model_bytes: Callable[[str, str], bytes], batches: list[Batch]
) -> None:
    lite = _Lite(model_bytes(arch, opt))
    ref = _Reference(arch, opt, lite.parameters())
    for x, y in batches[:STEPS]:
        loss = lite.train(x, y)
        assert loss == pytest.approx(ref.step(x, y), rel=TOL)
    assert _max_diff(lite.parameters(), ref.weights()) <= TOL


@pytest.mark.parametrize("opt", list(OPTIMIZERS))
def test_masked_padded_batch_equals_the_real_rows(
    opt: str, model_bytes: Callable[[str, str], bytes], batches: list[Batch]
) -> None:
    real = 20
    (x, y), (x_pad, y_pad) = batches[0], batches[1]
    # Padding rows are other real images, so only the mask can hide them.
    x_in = np.concatenate([x[:real], x_pad[real:]])
    y_in = np.concatenate([y[:real], y_pad[real:]])
    mask = (np.arange(BATCH) < real).astype(np.float32)
    lite = _Lite(model_bytes("cnn", opt))
    ref = _Reference("cnn", opt, lite.parameters())
    loss = lite.train(x_in, y_in, mask)
    assert loss == pytest.approx(ref.step(x[:real], y[:real]), rel=TOL)
    assert _max_diff(lite.parameters(), ref.weights()) <= TOL


@pytest.mark.parametrize(("arch", "opt"), CASES)
def test_restore_resets_optimizer_state(
    arch: str, opt: str, model_bytes: Callable[[str, str], bytes], batches: list[Batch]
) -> None:
    model = model_bytes(arch, opt)
    fresh = _Lite(model)
    start = fresh.parameters()
    fresh.train(*batches[0])
    used = _Lite(model)
    for x, y in batches[1:4]:
        used.train(x, y)
    assert used.restore(start) == 0.0
    assert _max_diff(used.parameters(), start) == 0.0
    used.train(*batches[0])
    assert _max_diff(used.parameters(), fresh.parameters()) <= 1e-7


@pytest.mark.parametrize(("arch", "opt"), CASES)
def test_restore_keeps_learning_rate(
    arch: str, opt: str, model_bytes: Callable[[str, str], bytes], batches: list[Batch]
) -> None:
    model = model_bytes(arch, opt)
    lr = OPTIMIZERS[opt].learning_rate / 5
    used = _Lite(model)
    start = used.parameters()
    used.set_learning_rate(lr)
    used.train(*batches[1])
    used.restore(start)
    used.train(*batches[0])
    fresh_same_lr = _Lite(model)
    fresh_same_lr.set_learning_rate(lr)
    fresh_same_lr.train(*batches[0])
    fresh_default_lr = _Lite(model)
    fresh_default_lr.train(*batches[0])
    assert _max_diff(used.parameters(), fresh_same_lr.parameters()) <= 1e-7
    assert _max_diff(used.parameters(), fresh_default_lr.parameters()) > 1e-5


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_same_spec_gives_identical_bytes(
    arch: str, model_bytes: Callable[[str, str], bytes]
) -> None:
    assert build_model(_spec(arch, "sgd")) == model_bytes(arch, "sgd")


def test_seed_sets_the_initial_weights(
    model_bytes: Callable[[str, str], bytes],
) -> None:
    seed0 = _Lite(model_bytes("mlp", "sgd")).parameters()
    seed1 = _Lite(build_model(_spec("mlp", "sgd", seed=1))).parameters()
    assert _max_diff(seed0, init_weights(ARCHITECTURES["mlp"], 0)) == 0.0
    assert _max_diff(seed1, init_weights(ARCHITECTURES["mlp"], 1)) == 0.0
    kernels = [i for i, w in enumerate(seed0) if w.ndim > 1]
    assert all(not np.array_equal(seed0[i], seed1[i]) for i in kernels)
