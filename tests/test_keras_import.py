"""from_keras: one LiteRT `train` step equals one Keras ``train_on_batch``.

Each case is a Keras model of the supported kinds, compiled with one of the
supported losses and optimizers. The reference is Keras itself: the same model
object trained with ``train_on_batch`` on the same real Fashion-MNIST batches
(its dropout masks fed to the `.tflite` as its noise inputs, drawn from the
layers' own seed generators). The `.tflite` runs on LiteRT, one thread.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
from ai_edge_litert.interpreter import Interpreter

from fedtflite.models import from_keras
from fedtflite.runtime import ClientModel

BATCH = 32
STEPS = 10
TOL = 1e-4
L = keras.layers


@dataclass(frozen=True)
class Case:
    """A Keras model, its compile arguments and the labels its loss takes."""

    layers: Callable[[], list[Any]]
    input_shape: tuple[int, ...]
    optimizer: Callable[[], Any]
    loss: Callable[[], Any]
    sparse: bool
    functional: bool = False

    def model(self) -> Any:
        keras.utils.set_random_seed(7)
        x = keras.Input(self.input_shape)
        if self.functional:
            h = x
            for layer in self.layers():
                h = layer(h)
            model = keras.Model(x, h)
        else:
            model = keras.Sequential([x, *self.layers()])
        model.compile(optimizer=self.optimizer(), loss=self.loss())
        return model


def _scce(from_logits: bool) -> Callable[[], Any]:
    return lambda: keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)


def _cce(from_logits: bool) -> Callable[[], Any]:
    return lambda: keras.losses.CategoricalCrossentropy(from_logits=from_logits)


def _nested() -> list[Any]:
    inner = keras.Sequential(
        [keras.Input((28, 28)), L.Flatten(), L.Dense(40, activation="relu")]
    )
    return [inner, L.Dense(16), L.Activation("tanh"), L.Dense(10), L.Softmax()]


CASES: dict[str, Case] = {
    "dense-sgd": Case(
        lambda: [L.Flatten(), L.Dense(64, activation="relu"), L.Dense(10)],
        (28, 28),
        lambda: keras.optimizers.SGD(0.1),
        _scce(True),
        sparse=True,
    ),
    "dense-nobias-tanh-relu-softmax-momentum": Case(
        lambda: [
            L.Dense(32, activation="tanh", use_bias=False),
            L.Dense(24, activation="relu", use_bias=False),  # see test_ops
            L.Dense(10, activation="softmax"),
        ],
        (784,),
        lambda: keras.optimizers.SGD(0.05, momentum=0.9),
        _cce(False),
        sparse=False,
    ),
    "sigmoid-elu-nesterov": Case(
        lambda: [
            L.Dense(32, activation="sigmoid"),
            L.Dense(32, activation="elu"),
            L.Dense(10),
        ],
        (784,),
        lambda: keras.optimizers.SGD(0.05, momentum=0.8, nesterov=True),
        _scce(True),
        sparse=True,
    ),
    "activation-layers-adam": Case(
        lambda: [
            L.Dense(16),  # on [B, 28, 28]: per row, as Keras does
            L.LeakyReLU(0.1),
            L.Flatten(),
            L.Dense(32, activation="leaky_relu"),
            L.ELU(0.5),
            L.Dense(24, activation="relu6"),
            L.Activation("silu"),
            L.Dense(10),
            L.Softmax(),
        ],
        (28, 28),
        lambda: keras.optimizers.Adam(1e-3),
        _scce(False),
        sparse=True,
    ),
    "conv-valid-maxpool-adamw": Case(
        lambda: [
            L.Reshape((28, 28, 1)),
            L.Conv2D(8, 3, activation="relu"),
            L.MaxPooling2D(),
            L.Flatten(),
            L.Dense(10),
        ],
        (28, 28),
        lambda: keras.optimizers.AdamW(2e-3, weight_decay=0.05),
        _scce(True),
        sparse=True,
    ),
    "conv-strided-same-avgpool-rmsprop": Case(
        lambda: [
            L.Conv2D(32, (5, 3), strides=2, padding="same", activation="tanh"),
            L.Conv2D(12, 3, strides=(1, 2), use_bias=False),  # 3x3x32: im2col
            L.ReLU(),
            L.AveragePooling2D(2),
            L.Flatten(),
            L.Dense(10),
        ],
        (28, 28, 1),
        lambda: keras.optimizers.RMSprop(1e-3, momentum=0.5, centered=True),
        _cce(True),
        sparse=False,
    ),
    "overlapping-padded-pools-gap-amsgrad": Case(
        lambda: [
            L.Conv2D(6, 3, padding="same", activation="relu"),
            L.MaxPooling2D(3, strides=2),
            L.Conv2D(8, 3, activation="elu"),
            L.AveragePooling2D(3, strides=2, padding="same"),
            L.MaxPooling2D(2, padding="same"),
            L.GlobalAveragePooling2D(),
            L.Dense(10),
        ],
        (28, 28, 1),
        lambda: keras.optimizers.Adam(3e-3, amsgrad=True),
        _scce(True),
        sparse=True,
    ),
    "pools-with-leftovers-sgd-decay": Case(
        lambda: [
            L.Reshape((28, 28, 1)),
            L.Conv2D(4, 3, activation="relu"),  # 26x26
            L.MaxPooling2D(4, padding="same"),  # 7x7 from a padded 28x28
            L.Conv2D(8, 3, activation="sigmoid"),  # 5x5
            L.AveragePooling2D(2),  # 2x2: the last row and column unused
            L.Flatten(),
            L.Dense(10),
        ],
        (28, 28),
        lambda: keras.optimizers.SGD(0.1, weight_decay=0.01),
        _scce(True),
        sparse=True,
    ),
    "dropout-dense": Case(
        lambda: [
            L.Dense(64, activation="relu"),
            L.Dropout(0.3),
            L.Dense(32, activation="relu"),
            L.Dropout(0.5, noise_shape=(1, 32)),
            L.Dense(10),
        ],
        (784,),
        lambda: keras.optimizers.SGD(0.05, momentum=0.9),
        _scce(True),
        sparse=True,
    ),
    "dropout-conv": Case(
        lambda: [
            L.Conv2D(8, 3, activation="relu"),
            L.SpatialDropout2D(0.25),
            L.MaxPooling2D(),
            L.Flatten(),
            L.Dropout(0.4),
            L.Dense(10, activation="softmax"),
        ],
        (28, 28, 1),
        lambda: keras.optimizers.Adam(1e-3),
        _cce(False),
        sparse=False,
    ),
    "batchnorm-dense": Case(
        lambda: [
            # No bias before batch normalization: its gradient is zero up to
            # rounding noise, which Adam would scale up to full-size steps.
            L.Dense(64, use_bias=False),
            L.BatchNormalization(),
            L.Activation("relu"),
            L.Dense(10, activation="softmax"),
        ],
        (784,),
        lambda: keras.optimizers.Adam(1e-3),
        _scce(False),
        sparse=True,
    ),
    "batchnorm-conv": Case(
        lambda: [
            L.Conv2D(8, 3, use_bias=False),
            L.BatchNormalization(momentum=0.9, center=False),
            L.Activation("relu"),
            L.MaxPooling2D(),
            L.Flatten(),
            L.Dense(10),
        ],
        (28, 28, 1),
        lambda: keras.optimizers.SGD(0.01, momentum=0.9),
        _scce(True),
        sparse=True,
    ),
    "frozen-layers": Case(
        lambda: [
            L.Dense(32, trainable=False),  # constants in the .tflite
            L.BatchNormalization(trainable=False),  # Keras: its averages, always
            L.Activation("relu"),
            L.Dense(10),
        ],
        (784,),
        lambda: keras.optimizers.SGD(0.1, momentum=0.5, nesterov=True),
        _scce(True),
        sparse=True,
    ),
    "functional-nested-rmsprop": Case(
        _nested,
        (28, 28),
        lambda: keras.optimizers.RMSprop(1e-3),
        _cce(False),
        sparse=False,
        functional=True,
    ),
}


@dataclass
class Built:
    """A case's Keras model (untrained) and its `.tflite`."""

    model: Any
    tflite: bytes
    initial: list[np.ndarray]


@pytest.fixture(scope="module")
def built() -> Callable[[str], Built]:
    cache: dict[str, Built] = {}

    def get(name: str) -> Built:
        if name not in cache:
            model = CASES[name].model()
            initial = [v.numpy() for v in model.weights]
            cache[name] = Built(model, from_keras(model), initial)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def batches(
    train_batches: Callable[[int, int, int], list[tuple[Any, Any]]],
) -> list[tuple[Any, Any]]:
    """``STEPS + 1`` real training batches of ``BATCH`` rows (images, class ids)."""
    return train_batches(STEPS + 1, BATCH, 99)


def _dropouts(model: Any) -> Iterator[Any]:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _dropouts(layer)
        elif isinstance(layer, L.Dropout | L.SpatialDropout2D) and layer.rate > 0:
            yield layer


def _keras_noise(layer: Any, shape: tuple[int, ...]) -> np.ndarray:
    """The uniform draws Keras' next dropout mask of ``layer`` comes from."""
    gen = keras.random.SeedGenerator(0)
    gen.state.assign(layer.seed_generator.state.value)
    return np.asarray(keras.random.uniform(shape, seed=gen), np.float32)


def _parameters(lite: Interpreter) -> list[np.ndarray]:
    out = lite.get_signature_runner("parameters")()
    return [np.array(out[f"a{i}"]) for i in range(len(out))]


def _keras_parameters(model: Any) -> list[np.ndarray]:
    """Trainable weights, then batch normalization's moving statistics."""
    state = [
        v
        for layer in _flat_layers(model)
        if isinstance(layer, L.BatchNormalization) and layer.trainable
        for v in (layer.moving_mean, layer.moving_variance)
    ]
    order = {id(v): i for i, v in enumerate(model.non_trainable_weights)}
    state.sort(key=lambda v: order[id(v)])
    return [v.numpy() for v in [*model.trainable_weights, *state]]


def _flat_layers(model: Any) -> Iterator[Any]:
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _flat_layers(layer)
        else:
            yield layer


def _max_diff(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    assert [x.shape for x in a] == [x.shape for x in b]
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("name", list(CASES))
def test_train_equals_keras_train_on_batch(
    name: str, built: Callable[[str], Built], batches: list[tuple[Any, Any]]
) -> None:
    case, b = CASES[name], built(name)
    model = b.model
    assert _max_diff([v.numpy() for v in model.weights], b.initial) == 0.0
    lite = Interpreter(model_content=b.tflite, num_threads=1)
    train = lite.get_signature_runner("train")
    inputs = train.get_input_details()
    assert _max_diff(_parameters(lite), _keras_parameters(model)) == 0.0
    dropouts = list(_dropouts(model))
    assert sorted(n for n in inputs if n.startswith("noise")) == [
        f"noise{k}" for k in range(len(dropouts))
    ]
    for images, labels in batches[:STEPS]:
        x = images.reshape((BATCH, *case.input_shape))
        y = labels if case.sparse else np.eye(10, dtype=np.float32)[labels]
        feed: dict[str, np.ndarray] = {"x": x, "y": y.astype(inputs["y"]["dtype"])}
        if "mask" in inputs:
            feed["mask"] = np.ones(BATCH, np.float32)
        for k, layer in enumerate(dropouts):
            first, *rest = inputs[f"noise{k}"]["shape_signature"]
            shape = (BATCH if first == -1 else int(first), *map(int, rest))
            feed[f"noise{k}"] = _keras_noise(layer, shape)
        lite_loss = float(train(**feed)["loss"])
        keras_loss = float(model.train_on_batch(x, y))
        assert lite_loss == pytest.approx(keras_loss, rel=TOL, abs=TOL)
    assert _max_diff(_parameters(lite), _keras_parameters(model)) <= TOL
    x_test = batches[STEPS][0].reshape((BATCH, *case.input_shape))
    out = lite.get_signature_runner("infer")(x=x_test)["output"]
    expected = model.predict(x_test, verbose=0)
    if not isinstance(model.layers[-1], L.Softmax) and model.layers[
        -1
    ].get_config().get("activation") not in ("softmax",):
        expected = keras.ops.convert_to_numpy(keras.ops.softmax(expected))
    np.testing.assert_allclose(out, expected, atol=TOL)


@pytest.mark.parametrize("name", list(CASES))
def test_result_is_a_valid_client_model(
    name: str, built: Callable[[str], Built]
) -> None:
    model = ClientModel(built(name).tflite)
    c = model.contract
    assert c.num_classes == 10
    assert c.image_shape == CASES[name].input_shape
    assert c.one_hot_labels == (not CASES[name].sparse)
    assert not any(op.startswith("Flex") for op in c.ops)
    assert "set_learning_rate" in c.extra_signatures
