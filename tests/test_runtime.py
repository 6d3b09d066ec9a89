"""The LiteRT client runtime: contract, training, client isolation, and every error.

Built models come from the on-disk cache; models "built elsewhere" (a softmax
regression with other input layouts, and broken variants of it) are converted
here with TensorFlow once per module. The TensorFlow-free claim is checked in a
subprocess, since this test process imports TensorFlow to build those models.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from fedtflite.data import FashionMnist
from fedtflite.errors import (
    DataShapeError,
    FlexOpsError,
    MissingSignatureError,
    ModelFileError,
    NonFiniteError,
    SignatureMismatchError,
    WeightsMismatchError,
)
from fedtflite.models.cache import cached_model
from fedtflite.models.specs import ModelSpec, OptimizerSpec
from fedtflite.runtime import ClientModel

REPO = Path(__file__).resolve().parents[1]
SOFTMAX_LR = 0.1  # learning rate of the custom softmax-regression models

Weights = list[np.ndarray]


# -- fixtures ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlp_file(mlp_bytes: bytes, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("built") / "mlp.tflite"
    path.write_bytes(mlp_bytes)
    return path


class _SoftmaxRegression(tf.Module):
    """``logits = flatten(x) @ a0 + a1``, plain SGD, built the way a user might.

    The gradient is written out, ``(softmax(z) - onehot(y)) / n``: TensorFlow's
    own gradients of a dynamic-batch cross-entropy need Select-TF ops
    (``SparseSoftmaxCrossEntropyWithLogits``, ``BroadcastGradientArgs``).
    """

    def __init__(self, image_shape: tuple[int, ...], one_hot: bool, classes: int = 10):
        super().__init__()
        rng = np.random.default_rng(0)
        self.w = tf.Variable(rng.normal(0.0, 0.01, (784, classes)).astype(np.float32))
        self.b = tf.Variable(np.zeros(classes, np.float32))
        self.classes = classes
        self.lr = tf.Variable(SOFTMAX_LR, dtype=tf.float32)
        self.image_shape = image_shape
        self.one_hot = one_hot

    def signatures(
        self, *, infer_output: str = "logits", restore: str = "mirror"
    ) -> dict[str, tf.types.experimental.ConcreteFunction]:
        """``train/infer/parameters/restore/set_learning_rate``.

        ``restore`` is ``"mirror"`` (a0, a1 as `parameters`), ``"transposed"``
        (a0 of shape [10,784]), ``"renamed"`` (a0, a2) or ``"none"`` (absent).
        """
        x_spec = tf.TensorSpec([None, *self.image_shape], tf.float32)
        k = self.classes
        y_spec = (
            tf.TensorSpec([None, k], tf.float32)
            if self.one_hot
            else tf.TensorSpec([None], tf.int32)
        )

        @tf.function(input_signature=[x_spec, y_spec])
        def train(x: tf.Tensor, y: tf.Tensor) -> dict[str, tf.Tensor]:
            flat = tf.reshape(x, [-1, 784])
            z = flat @ self.w + self.b
            onehot = y if self.one_hot else tf.one_hot(y, k)
            n = tf.cast(tf.shape(flat)[0], tf.float32)
            loss = -tf.reduce_sum(onehot * tf.nn.log_softmax(z)) / n
            dz = (tf.nn.softmax(z) - onehot) / n
            self.w.assign_sub(self.lr * tf.matmul(flat, dz, transpose_a=True))
            self.b.assign_sub(self.lr * tf.reduce_sum(dz, axis=0))
            return {"loss": loss}

        @tf.function(input_signature=[x_spec])
        def infer(x: tf.Tensor) -> dict[str, tf.Tensor]:
            z = tf.reshape(x, [-1, 784]) @ self.w + self.b
            return (
                {"output": tf.nn.softmax(z)}
                if infer_output == "output"
                else {"logits": z}
            )

        @tf.function(input_signature=[])
        def parameters() -> dict[str, tf.Tensor]:
            return {"a0": self.w.read_value(), "a1": self.b.read_value()}

        w_spec = tf.TensorSpec([784, k], tf.float32)
        b_spec = tf.TensorSpec([k], tf.float32)

        @tf.function(input_signature=[w_spec, b_spec])
        def mirror(a0: tf.Tensor, a1: tf.Tensor) -> dict[str, tf.Tensor]:
            self.w.assign(a0)
            self.b.assign(a1)
            return {"a0": self.w.read_value()}

        @tf.function(input_signature=[tf.TensorSpec([k, 784], tf.float32), b_spec])
        def transposed(a0: tf.Tensor, a1: tf.Tensor) -> dict[str, tf.Tensor]:
            self.w.assign(tf.transpose(a0))
            self.b.assign(a1)
            return {"a0": self.w.read_value()}

        @tf.function(input_signature=[w_spec, b_spec])
        def renamed(a0: tf.Tensor, a2: tf.Tensor) -> dict[str, tf.Tensor]:
            self.w.assign(a0)
            self.b.assign(a2)
            return {"a0": self.w.read_value()}

        @tf.function(input_signature=[tf.TensorSpec([], tf.float32)])
        def set_learning_rate(lr: tf.Tensor) -> dict[str, tf.Tensor]:
            self.lr.assign(lr)
            return {"lr": self.lr.read_value()}

        sigs = {"train": train, "infer": infer, "parameters": parameters}
        restores = {"mirror": mirror, "transposed": transposed, "renamed": renamed}
        if restore in restores:
            sigs["restore"] = restores[restore]
        if infer_output == "logits":  # the probabilities model has no lr signature
            sigs["set_learning_rate"] = set_learning_rate
        return {k: f.get_concrete_function() for k, f in sigs.items()}


class _ReluGradient(tf.Module):
    """One signature whose gradient needs the Select-TF op ``ReluGrad``."""

    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable(np.ones(4, np.float32))

    @tf.function(input_signature=[tf.TensorSpec([4], tf.float32)])
    def grad(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(tf.nn.relu(x * self.w))
        return {"g": tape.gradient(y, self.w)}


def _convert(
    module: tf.Module,
    signatures: dict[str, tf.types.experimental.ConcreteFunction],
    saved: Path,
    *,
    flex: bool = False,
) -> bytes:
    tf.saved_model.save(module, str(saved), signatures=signatures)
    converter = tf.lite.TFLiteConverter.from_saved_model(
        str(saved), signature_keys=list(signatures)
    )
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if flex:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops
    converter.experimental_enable_resource_variables = True
    return bytes(converter.convert())


@pytest.fixture(scope="module")
def custom(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Models built outside fedtflite, as files: name -> path."""
    root = tmp_path_factory.mktemp("custom")
    flat = _SoftmaxRegression((784,), one_hot=False)
    hwc = _SoftmaxRegression((28, 28, 1), one_hot=True)
    relu = _ReluGradient()
    five = _SoftmaxRegression((784,), one_hot=False, classes=5)
    models = {
        "five_classes": (five, five.signatures()),
        "flat_ids": (flat, flat.signatures()),
        "hwc_onehot": (hwc, hwc.signatures(infer_output="output")),
        "no_restore": (flat, flat.signatures(restore="none")),
        "restore_transposed": (flat, flat.signatures(restore="transposed")),
        "restore_renamed": (flat, flat.signatures(restore="renamed")),
        "flex": (relu, {"train": relu.grad.get_concrete_function()}),
    }
    paths = {}
    for name, (module, sigs) in models.items():
        path = root / f"{name}.tflite"
        path.write_bytes(_convert(module, sigs, root / name, flex=name == "flex"))
        paths[name] = path
    return paths


def _same(a: Weights, b: Weights) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x, y) for x, y in zip(a, b, strict=True)
    )


# -- loading and the contract ----------------------------------------------------------


def test_load_from_path_and_bytes_agree(mlp_file: Path, mlp_bytes: bytes) -> None:
    from_path, from_bytes = ClientModel(mlp_file), ClientModel(mlp_bytes)
    assert from_path.contract.source == str(mlp_file)
    assert from_bytes.contract.source == "<bytes>"
    assert from_path.sha256 == from_bytes.sha256
    assert from_path.contract.parameters == from_bytes.contract.parameters
    assert _same(from_path.parameters(), from_bytes.parameters())


def test_mlp_contract(mlp_bytes: bytes) -> None:
    c = ClientModel(mlp_bytes).contract
    assert c.train_batch is None and c.infer_batch is None
    assert not c.has_mask
    assert c.image_shape == (28, 28) and c.num_classes == 10
    assert [str(p) for p in c.parameters] == [
        "a0: float32[784,128]",
        "a1: float32[128]",
        "a2: float32[128,10]",
        "a3: float32[10]",
    ]
    assert c.num_parameters == 784 * 128 + 128 + 128 * 10 + 10 == 101_770
    assert c.parameter_bytes == 4 * 101_770
    assert c.infer_output == "logits"
    assert c.extra_signatures == ("set_learning_rate", "train_tail")
    assert "RELU" in c.ops and not any(op.startswith("Flex") for op in c.ops)


def test_cnn_contract(cnn_bytes: bytes) -> None:
    c = ClientModel(cnn_bytes).contract
    assert c.train_batch == 32 and c.has_mask
    assert len(c.parameters) == 10
    assert c.parameters[0].shape == (5, 5, 1, 6)
    assert "CONV_2D" in c.ops


# -- LiteRT alone: no TensorFlow in the process ------------------------------------

_NO_TF_SCRIPT = """
import sys
import numpy as np
from fedtflite.data import load_fashion_mnist
from fedtflite.runtime import ClientModel

path = sys.argv[1]
data = load_fashion_mnist()
x, y = data.train.images, data.train.labels
test_x, test_y = data.test.images[:2000], data.test.labels[:2000]
model = ClientModel(path)
before = model.evaluate(test_x, test_y)
losses = []
for i in range(200):  # one `train` step of batch 32 per fit
    batch = slice(32 * i, 32 * (i + 1))
    fit = model.fit(x[batch], y[batch], epochs=1, batch_size=32,
                    rng=np.random.default_rng(i))
    assert fit.num_steps == 1, fit
    losses.append(fit.loss)
after = model.evaluate(test_x, test_y)
first, last = np.mean(losses[:20]), np.mean(losses[-20:])
print(f"loss first 20 {first:.4f} last 20 {last:.4f}; test loss "
      f"{before.loss:.4f} -> {after.loss:.4f}, accuracy "
      f"{before.accuracy:.3f} -> {after.accuracy:.3f}")
assert last < first - 0.5, (first, last)
assert after.loss < before.loss - 0.5 and after.accuracy > 0.6, (before, after)

trained = model.parameters()
rng = np.random.default_rng(0)
noise = [rng.standard_normal(w.shape).astype(np.float32) for w in trained]
for weights in (noise, trained):
    model.restore(weights)
    assert all(map(np.array_equal, model.parameters(), weights))

other = ClientModel(path)
initial = other.parameters()
model.fit(x[:320], y[:320], epochs=1, batch_size=32, rng=np.random.default_rng(0))
assert not all(map(np.array_equal, model.parameters(), trained))
assert all(map(np.array_equal, other.parameters(), initial))
other.restore(noise)
assert not all(map(np.array_equal, model.parameters(), noise))

tf_modules = sorted(m for m in sys.modules if m.split(".")[0] == "tensorflow")
assert not tf_modules, tf_modules[:5]
print("no tensorflow imported")
"""


def test_litert_only_process_trains_restores_and_isolates(
    mlp_file: Path, tmp_path: Path
) -> None:
    script = tmp_path / "no_tf.py"
    script.write_text(_NO_TF_SCRIPT)
    proc = subprocess.run(
        [sys.executable, str(script), str(mlp_file)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no tensorflow imported" in proc.stdout


# -- one interpreter, many clients ---------------------------------------------------


@pytest.mark.parametrize(
    "optimizer",
    [OptimizerSpec("sgd", 0.05, momentum=0.9), OptimizerSpec("adam", 1e-3)],
    ids=["sgd-momentum", "adam"],
)
def test_client_sees_nothing_of_the_previous_client(
    optimizer: OptimizerSpec, data: FashionMnist
) -> None:
    model_bytes = cached_model(ModelSpec("mlp", optimizer))
    shared = ClientModel(model_bytes)
    initial = shared.parameters()
    rng = np.random.default_rng(7)
    w_a = [w + 0.01 * rng.standard_normal(w.shape).astype(np.float32) for w in initial]
    w_b = [w + 0.01 * rng.standard_normal(w.shape).astype(np.float32) for w in initial]
    x, y = data.train.images, data.train.labels
    x_a, y_a, x_b, y_b = x[:96], y[:96], x[96:160], y[96:160]

    def fit_b(model: ClientModel) -> tuple[float, Weights]:
        model.restore(w_b)
        r = model.fit(x_b, y_b, epochs=2, batch_size=32, rng=np.random.default_rng(3))
        return r.loss, model.parameters()

    shared.restore(w_a)
    shared.fit(x_a, y_a, epochs=2, batch_size=32, rng=np.random.default_rng(1))
    shared.restore(w_b)
    assert _same(shared.parameters(), w_b)
    loss_shared, after_shared = fit_b(shared)
    loss_fresh, after_fresh = fit_b(ClientModel(model_bytes))
    assert loss_shared == loss_fresh
    assert _same(after_shared, after_fresh)

    # Not vacuous: the optimizer does carry state from one fit to the next
    # unless restore resets it.
    shared.fit(x_b, y_b, epochs=1, batch_size=32, rng=np.random.default_rng(4))
    carried = shared.parameters()
    shared.restore(after_shared)
    shared.fit(x_b, y_b, epochs=1, batch_size=32, rng=np.random.default_rng(4))
    assert not _same(shared.parameters(), carried)


# -- fit: epochs, partial and masked batches ----------------------------------


def test_fit_trains_every_example_once_per_epoch(
    mlp_bytes: bytes, data: FashionMnist
) -> None:
    # With learning rate 0 every step reports the loss of the initial weights,
    # so the row-weighted mean over the epoch is the loss of all 70 examples
    # exactly when each is trained once (64 in full batches + 6 in a partial one).
    model = ClientModel(mlp_bytes)
    model.set_learning_rate(0.0)
    x, y = data.train.images[:70], data.train.labels[:70]
    initial = model.parameters()
    expected = model.evaluate(x, y).loss
    fit = model.fit(x, y, epochs=2, batch_size=32, rng=np.random.default_rng(0))
    assert (fit.num_steps, fit.num_examples) == (2 * 3, 70)
    assert fit.loss == pytest.approx(expected, rel=1e-5)
    assert _same(model.parameters(), initial)


def test_fit_max_steps_runs_the_first_steps_of_the_schedule(
    mlp_bytes: bytes, data: FashionMnist
) -> None:
    # 70 examples in batches of 32: 3 steps per epoch. A budget of 3 steps out
    # of 2 epochs is exactly the first epoch, in the same shuffled order.
    x, y = data.train.images[:70], data.train.labels[:70]
    one_epoch = ClientModel(mlp_bytes)
    full = one_epoch.fit(x, y, epochs=1, batch_size=32, rng=np.random.default_rng(5))
    cut = ClientModel(mlp_bytes)
    fit = cut.fit(
        x, y, epochs=2, batch_size=32, rng=np.random.default_rng(5), max_steps=3
    )
    assert (fit.num_steps, fit.num_examples) == (3, 70)
    assert fit.loss == pytest.approx(full.loss, rel=1e-6)
    assert _same(cut.parameters(), one_epoch.parameters())

    # A budget that ends inside an epoch; one above the schedule changes nothing.
    model = ClientModel(mlp_bytes)
    assert (
        model.fit(
            x, y, epochs=2, batch_size=32, rng=np.random.default_rng(5), max_steps=4
        ).num_steps
        == 4
    )
    assert (
        model.fit(
            x, y, epochs=2, batch_size=32, rng=np.random.default_rng(5), max_steps=99
        ).num_steps
        == 6
    )


def test_fit_zero_step_budget_trains_nothing(
    mlp_bytes: bytes, data: FashionMnist
) -> None:
    model = ClientModel(mlp_bytes)
    initial = model.parameters()
    x, y = data.train.images[:10], data.train.labels[:10]
    fit = model.fit(
        x, y, epochs=1, batch_size=32, rng=np.random.default_rng(0), max_steps=0
    )
    assert (fit.num_steps, fit.num_examples) == (0, 10)
    assert np.isnan(fit.loss)
    assert _same(model.parameters(), initial)
    with pytest.raises(DataShapeError, match="max_steps must be >= 0, got -1"):
        model.fit(
            x, y, epochs=1, batch_size=32, rng=np.random.default_rng(0), max_steps=-1
        )


def test_fit_zero_epochs_takes_no_step(mlp_bytes: bytes, data: FashionMnist) -> None:
    model = ClientModel(mlp_bytes)
    initial = model.parameters()
    x, y = data.train.images[:10], data.train.labels[:10]
    fit = model.fit(x, y, epochs=0, batch_size=32, rng=np.random.default_rng(0))
    assert (fit.num_steps, fit.num_examples) == (0, 10)
    assert _same(model.parameters(), initial)


def test_fixed_batch_model_masks_a_partial_batch(
    cnn_bytes: bytes, data: FashionMnist
) -> None:
    # 20 real rows padded to 32 with zero images and all-zero one-hot labels:
    # the masked mean equals the loss of the 20 (unmasked it would be 20/32 of it).
    model = ClientModel(cnn_bytes)
    x, y = data.train.images[:20], data.train.labels[:20]
    initial = model.parameters()
    expected = model.evaluate(x, y).loss
    fit = model.fit(x, y, epochs=1, batch_size=32, rng=np.random.default_rng(0))
    assert (fit.num_steps, fit.num_examples) == (1, 20)
    assert fit.loss == pytest.approx(expected, rel=1e-5)
    assert not _same(model.parameters(check_finite=True), initial)


def test_fixed_batch_model_rejects_another_batch_size(
    cnn_bytes: bytes, data: FashionMnist
) -> None:
    model = ClientModel(cnn_bytes)
    x, y = data.train.images[:20], data.train.labels[:20]
    with pytest.raises(DataShapeError, match=r"fixed batches of 32; batch-size=16"):
        model.fit(x, y, epochs=1, batch_size=16, rng=np.random.default_rng(0))


# -- models built elsewhere ------------------------------------------------------------


def _softmax_sgd_step(
    w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, lr: float
) -> tuple[float, np.ndarray, np.ndarray]:
    """Reference step in float64: loss before it and the updated weights."""
    x = x.reshape(len(x), -1).astype(np.float64)
    z = x @ w + b
    z -= z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    onehot = np.eye(10)[y]
    loss = float(-(onehot * logp).sum() / len(y))
    dz = (np.exp(logp) - onehot) / len(y)
    return loss, w - lr * x.T @ dz, b - lr * dz.sum(axis=0)


@pytest.mark.parametrize("name", ["flat_ids", "hwc_onehot"])
def test_custom_model_step_matches_hand_computed_sgd(
    name: str, custom: dict[str, Path], data: FashionMnist
) -> None:
    model = ClientModel(custom[name])
    w, b = model.parameters()
    x, y = data.train.images[:8], data.train.labels[:8]
    fit = model.fit(x, y, epochs=1, batch_size=8, rng=np.random.default_rng(0))
    loss, w_ref, b_ref = _softmax_sgd_step(w, b, x, y, SOFTMAX_LR)
    w_new, b_new = model.parameters()
    assert fit.num_steps == 1
    assert fit.loss == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(w_new, w_ref, atol=1e-6)
    np.testing.assert_allclose(b_new, b_ref, atol=1e-6)


def test_custom_flat_model_with_class_ids(
    custom: dict[str, Path], data: FashionMnist
) -> None:
    model = ClientModel(custom["flat_ids"])
    c = model.contract
    assert (c.image_shape, c.one_hot_labels, c.label_dtype) == ((784,), False, np.int32)
    _check_learns(model, data)
    model.set_learning_rate(0.0)
    frozen = model.parameters()
    x, y = data.train.images[:64], data.train.labels[:64]
    model.fit(x, y, epochs=1, batch_size=32, rng=np.random.default_rng(0))
    assert _same(model.parameters(), frozen)


def test_custom_nhwc_one_hot_probabilities_model(
    custom: dict[str, Path], data: FashionMnist
) -> None:
    model = ClientModel(custom["hwc_onehot"])
    c = model.contract
    assert (c.image_shape, c.one_hot_labels, c.infer_output) == (
        (28, 28, 1),
        True,
        "output",
    )
    assert not model.supports_learning_rate
    _check_learns(model, data)
    with pytest.raises(SignatureMismatchError, match="no set_learning_rate signature"):
        model.set_learning_rate(0.01)


def _check_learns(model: ClientModel, data: FashionMnist) -> None:
    test_x, test_y = data.test.images[:2000], data.test.labels[:2000]
    before = model.evaluate(test_x, test_y)
    x, y = data.train.images[:3200], data.train.labels[:3200]
    fit = model.fit(x, y, epochs=1, batch_size=32, rng=np.random.default_rng(0))
    after = model.evaluate(test_x, test_y)
    assert fit.num_steps == 100
    assert before.num_examples == after.num_examples == 2000
    assert after.loss < before.loss - 1.0
    assert after.accuracy > 0.7 > before.accuracy


# -- every bad input: its error type and what the message says -----------------------


def test_text_file_is_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "notes.tflite"
    path.write_text("these are notes, not a model\n")
    with pytest.raises(ModelFileError, match=r"not a \.tflite") as e:
        ClientModel(path)
    assert str(path) in str(e.value)


def test_truncated_model(mlp_bytes: bytes, tmp_path: Path) -> None:
    path = tmp_path / "half.tflite"
    path.write_bytes(mlp_bytes[: len(mlp_bytes) // 2])
    with pytest.raises(
        ModelFileError, match=r"truncated or corrupt|LiteRT cannot load"
    ) as e:
        ClientModel(path)
    assert str(e.value).startswith(str(path))


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.tflite"
    with pytest.raises(ModelFileError, match="no such model file") as e:
        ClientModel(path)
    assert str(path) in str(e.value)


def test_errors_name_the_given_source(mlp_bytes: bytes) -> None:
    model = ClientModel(mlp_bytes, source="mlp")
    assert model.contract.source == "mlp"
    with pytest.raises(DataShapeError, match=r"^mlp: images of shape \[3, 5\]"):
        model.predict(np.zeros((3, 5), np.float32))


def test_a_client_without_examples_evaluates_to_weight_zero(mlp_bytes: bytes) -> None:
    result = ClientModel(mlp_bytes).evaluate(
        np.zeros((0, 28, 28), np.float32), np.zeros(0, np.int64)
    )
    assert result.num_examples == 0


def test_a_model_with_five_classes_is_not_a_fashion_mnist_client(
    custom: dict[str, Path],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib

    run_module = importlib.import_module("fedtflite.orchestrator.simulate")
    from fedtflite.cli import main

    path = custom["five_classes"]
    assert ClientModel(path).contract.num_classes == 5  # the contract itself holds
    assert main(["inspect", str(path)]) == 2
    out, err = capfd.readouterr()
    assert out == "" and err == (
        f"invalid client model: {path}: infer has 5 output classes; Fashion-MNIST "
        "has 10 (expected [B,10])\n"
    )

    def no_ray(*args: object, **kwargs: object) -> bool:
        raise AssertionError("Ray was started for a model that cannot work")

    monkeypatch.setattr(run_module, "start_ray", no_ray)
    run_dir = tmp_path / "run"
    code = main(["simulate", "--set", f"model={path}", "--out", str(run_dir)])
    err = capfd.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert f"model = '{path}' has 5 output classes; Fashion-MNIST has 10" in err
    assert not run_dir.exists()  # nothing left behind


def test_flex_model(custom: dict[str, Path]) -> None:
    with pytest.raises(FlexOpsError, match=r"Select-TF \(Flex\) ops FlexReluGrad"):
        ClientModel(custom["flex"])


def test_missing_restore_signature(custom: dict[str, Path]) -> None:
    with pytest.raises(MissingSignatureError, match=r"missing signature\(s\) restore;"):
        ClientModel(custom["no_restore"])


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "restore_transposed",
            r"restore input a0: float32\[10,784\] does not match "
            r"parameters output a0: float32\[784,10\]",
        ),
        (
            "restore_renamed",
            r"restore inputs \['a0', 'a2'\] do not match parameters outputs "
            r"\['a0', 'a1'\]",
        ),
    ],
)
def test_restore_must_mirror_parameters(
    name: str, message: str, custom: dict[str, Path]
) -> None:
    with pytest.raises(SignatureMismatchError, match=message):
        ClientModel(custom[name])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        pytest.param(
            lambda ws: ws[:3],
            r"restore got 3 arrays; the model has 4 \(a0: float32\[784,128\]",
            id="count",
        ),
        pytest.param(
            lambda ws: [ws[0].T, *ws[1:]],
            r"a0 got float32\[128, 784\]; expected a0: float32\[784,128\]",
            id="shape",
        ),
        pytest.param(
            lambda ws: [ws[0].astype(np.float64), *ws[1:]],
            r"a0 got float64\[784, 128\]; expected a0: float32\[784,128\]",
            id="dtype",
        ),
    ],
)
def test_restore_rejects_wrong_weights(
    change: Callable[[Weights], Weights], message: str, mlp_bytes: bytes
) -> None:
    model = ClientModel(mlp_bytes)
    with pytest.raises(WeightsMismatchError, match=message):
        model.restore(change(model.parameters()))


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        pytest.param(
            lambda x: x[:, :27, :27].copy(),
            lambda y: y,
            r"images of shape \[5, 27, 27\] do not fit input x \[B,28,28\]",
            id="27x27",
        ),
        pytest.param(
            lambda x: x,
            lambda y: y[:4],
            r"labels of shape \[4\] \(int64\) for 5 images",
            id="label-count",
        ),
        pytest.param(
            lambda x: x,
            lambda y: np.array([0, 1, 2, 3, 10]),
            r"labels span 0\.\.10; the model has 10 classes \(0\.\.9\)",
            id="label-10",
        ),
        pytest.param(
            lambda x: x,
            lambda y: np.array([0, 1, 2, 3, -1]),
            r"labels span -1\.\.3",
            id="label-negative",
        ),
        pytest.param(
            lambda x: x.astype(np.float64),
            lambda y: y,
            r"images are float64; expected float32",
            id="float64",
        ),
    ],
)
def test_data_that_does_not_fit(
    images: Callable[[np.ndarray], np.ndarray],
    labels: Callable[[np.ndarray], np.ndarray],
    message: str,
    mlp_bytes: bytes,
    data: FashionMnist,
) -> None:
    model = ClientModel(mlp_bytes)
    x, y = images(data.train.images[:5]), labels(data.train.labels[:5])
    with pytest.raises(DataShapeError, match=message):
        model.fit(x, y, epochs=1, batch_size=4, rng=np.random.default_rng(0))


def test_non_finite_loss_stops_training(mlp_bytes: bytes, data: FashionMnist) -> None:
    # 10 examples, batch 32: one step per epoch, so step k is in epoch k.
    model = ClientModel(mlp_bytes)
    model.set_learning_rate(1e30)
    x, y = data.train.images[:10], data.train.labels[:10]
    with pytest.raises(NonFiniteError, match=r"loss \S+ at step (\d+) \(epoch \1\)"):
        model.fit(x, y, epochs=5, batch_size=32, rng=np.random.default_rng(0))


def test_non_finite_weight_is_named(mlp_bytes: bytes) -> None:
    model = ClientModel(mlp_bytes)
    weights = model.parameters()
    weights[2][3, 4] = np.nan
    model.restore(weights)
    assert np.isnan(model.parameters()[2][3, 4])  # unchecked by default
    with pytest.raises(NonFiniteError, match="parameter a2 holds 1 non-finite value"):
        model.parameters(check_finite=True)


def test_finite_weights_whose_sum_overflows_pass_the_check(mlp_bytes: bytes) -> None:
    model = ClientModel(mlp_bytes)
    weights = model.parameters()
    weights[0][:2] = 3e38  # finite, but their float32 sum is inf
    model.restore(weights)
    assert not np.isfinite(model.parameters()[0].sum())
    assert np.array_equal(model.parameters(check_finite=True)[0], weights[0])


@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_batch_buffers_reused_across_clients_leave_nothing_behind(
    model_name: str, mlp_bytes: bytes, cnn_bytes: bytes, data: FashionMnist
) -> None:
    # A client with full batches, then one whose last batch is partial (the cnn
    # pads it with zeros and masks it): the reused input buffers must hold only
    # the second client's rows, exactly as on a fresh model.
    model_bytes = {"mlp": mlp_bytes, "cnn": cnn_bytes}[model_name]
    x, y = data.train.images, data.train.labels
    shared = ClientModel(model_bytes)
    initial = shared.parameters()
    shared.fit(x[:64], y[:64], epochs=1, batch_size=32, rng=np.random.default_rng(0))

    def second(model: ClientModel) -> tuple[float, Weights]:
        model.restore(initial)
        fit = model.fit(
            x[64:109], y[64:109], epochs=2, batch_size=32, rng=np.random.default_rng(1)
        )
        return fit.loss, model.parameters()

    loss_shared, after_shared = second(shared)
    loss_fresh, after_fresh = second(ClientModel(model_bytes))
    assert loss_shared == loss_fresh
    assert _same(after_shared, after_fresh)
