"""from_keras refuses what it cannot rebuild exactly, in one line naming it.

Every refusal happens while reading the model (before any conversion), so
these tests are fast.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

from fedtflite.errors import KerasModelError, ModelFileError
from fedtflite.models import from_keras

L = keras.layers


def _seq(*layers: Any, shape: tuple[int, ...] = (28, 28)) -> Any:
    return keras.Sequential([keras.Input(shape), *layers], name="m")


def _compiled(model: Any, optimizer: Any = None, loss: Any = None) -> Any:
    model.compile(
        optimizer=optimizer or keras.optimizers.SGD(0.1),
        loss=loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def _dense_head(*layers: Any, shape: tuple[int, ...] = (28, 28)) -> Any:
    return _seq(*layers, L.Flatten(), L.Dense(10), shape=shape)


class _Scaled(L.Dense):  # a subclass: its call could be anything
    pass


class _Subclassed(keras.Model):
    def __init__(self) -> None:
        super().__init__(name="sub")
        self.flat, self.out = L.Flatten(), L.Dense(10)

    def call(self, x: Any) -> Any:
        return self.out(self.flat(x))


def _two_branches() -> Any:
    x = keras.Input((784,))
    a, b = L.Dense(16, name="left")(x), L.Dense(16, name="right")(x)
    return keras.Model(x, L.Dense(10)(L.Add(name="join")([a, b])), name="m")


def _two_outputs() -> Any:
    x = keras.Input((784,))
    return keras.Model(x, [L.Dense(10)(x), L.Dense(10)(x)], name="m")


def _ops_call() -> Any:
    x = keras.Input((784,))
    return keras.Model(x, L.Dense(10)(keras.ops.relu(x)), name="m")


def _shared() -> Any:
    x = keras.Input((784,))
    dense = L.Dense(784, name="twice")
    return keras.Model(x, L.Dense(10)(dense(dense(x))), name="m")


def _excluded_decay() -> Any:
    opt = keras.optimizers.AdamW(1e-3, weight_decay=0.01)
    opt.exclude_from_weight_decay(var_names=["bias"])
    return _compiled(_dense_head(), opt)


CASES: dict[str, tuple[Callable[[], Any], str]] = {
    "lstm": (
        lambda: _compiled(_seq(L.LSTM(8, name="rnn"), L.Dense(10))),
        r"layer LSTM 'rnn' is not supported; supported layers: InputLayer, Dense",
    ),
    "conv1d": (
        lambda: _compiled(_dense_head(L.Conv1D(4, 3, name="c1"))),
        r"layer Conv1D 'c1' is not supported",
    ),
    "rescaling": (
        lambda: _compiled(_dense_head(L.Rescaling(1 / 255, name="scale"))),
        r"layer Rescaling 'scale' is not supported",
    ),
    "subclassed-layer": (
        lambda: _compiled(_seq(L.Flatten(), _Scaled(10, name="mine"))),
        r"layer _Scaled 'mine' is not supported",
    ),
    "subclassed-model": (
        lambda: _compiled(_Subclassed()),
        r"_Subclassed 'sub' is a subclassed keras.Model; supported: Sequential",
    ),
    "non-chain": (
        lambda: _compiled(_two_branches()),
        r"layer Add 'join' takes 2 inputs; supported: a chain",
    ),
    "two-outputs": (
        lambda: _compiled(_two_outputs(), loss=["mse", "mse"]),
        r"has 1 inputs and 2 outputs",
    ),
    "ops-call": (
        lambda: _compiled(_ops_call()),
        r"operation Relu '.*' is not a layer",
    ),
    "shared-layer": (
        lambda: _compiled(_shared()),
        r"layer Dense 'twice' is called twice",
    ),
    "input-shape": (
        lambda: _compiled(_dense_head(shape=(32, 32, 3))),
        r"input float32\(32, 32, 3\) does not fit Fashion-MNIST; supported: "
        r"float32 \(28, 28\), \(28, 28, 1\), \(784,\)",
    ),
    "output-shape": (
        lambda: _compiled(_seq(L.Flatten(), L.Dense(5))),
        r"output shape \(None, 5\) does not fit Fashion-MNIST",
    ),
    "no-input": (
        lambda: _compiled(keras.Sequential([L.Flatten(), L.Dense(10)], name="m")),
        r"has no input shape; start it with keras.Input\(shape=\(28, 28\)\)",
    ),
    "regularizer": (
        lambda: _compiled(
            _seq(L.Flatten(), L.Dense(10, kernel_regularizer="l2", name="d"))
        ),
        r"layer Dense 'd' has kernel_regularizer=.*; supported: None",
    ),
    "dilation": (
        lambda: _compiled(
            _dense_head(L.Conv2D(4, 3, dilation_rate=2, name="c"), shape=(28, 28, 1))
        ),
        r"layer Conv2D 'c' has dilation_rate=\(2, 2\), groups=1",
    ),
    "gelu": (
        lambda: _compiled(_seq(L.Flatten(), L.Dense(10, activation="gelu", name="d"))),
        r"layer Dense 'd' has activation 'gelu'; supported: linear, relu",
    ),
    "renorm": (
        lambda: _compiled(
            _dense_head(L.BatchNormalization(renorm=True, name="bn"), shape=(784,))
        ),
        r"layer BatchNormalization 'bn' has axis=-1, renorm=True",
    ),
    "mixed-precision": (
        lambda: _compiled(_dense_head(L.Dense(8, dtype="mixed_float16", name="h"))),
        r"layer Dense 'h' has dtype policy 'mixed_float16'; supported: float32",
    ),
    "not-compiled": (
        lambda: _dense_head(),
        r"is not compiled with a loss",
    ),
    "mse": (
        lambda: _compiled(_dense_head(), loss="mse"),
        r"loss mean_squared_error is not supported; supported: "
        r"SparseCategoricalCrossentropy or CategoricalCrossentropy",
    ),
    "label-smoothing": (
        lambda: _compiled(
            _dense_head(),
            loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
        ),
        r"loss CategoricalCrossentropy has label_smoothing=0.1; supported: 0.0",
    ),
    "probabilities-without-softmax": (
        lambda: _compiled(_dense_head(), loss="sparse_categorical_crossentropy"),
        r"takes probabilities \(from_logits=False\) but the model ends in layer "
        r"Dense 'dense.*', not a softmax",
    ),
    "adagrad": (
        lambda: _compiled(_dense_head(), keras.optimizers.Adagrad()),
        r"optimizer Adagrad is not supported; supported: SGD, Adam, AdamW, RMSprop",
    ),
    "clipnorm": (
        lambda: _compiled(_dense_head(), keras.optimizers.SGD(0.1, clipnorm=1.0)),
        r"optimizer SGD has clipnorm=1.0; supported: None",
    ),
    "schedule": (
        lambda: _compiled(
            _dense_head(),
            keras.optimizers.SGD(
                keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
            ),
        ),
        r"optimizer SGD has a learning-rate schedule; supported: a constant rate",
    ),
    "excluded-from-decay": (
        _excluded_decay,
        r"optimizer AdamW excludes .*bias.* from weight_decay",
    ),
    "frozen": (
        lambda: _compiled(_frozen(_dense_head())),
        r"has no trainable weights; nothing to train",
    ),
}


def _frozen(model: Any) -> Any:
    model.trainable = False
    return model


@pytest.mark.parametrize("name", list(CASES))
def test_refusal_names_the_layer_or_setting(name: str) -> None:
    make, message = CASES[name]
    model = make()
    with pytest.raises(KerasModelError) as err:
        from_keras(model)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(f"Keras model '{model.name}': ")
    assert re.search(message, text), text


def test_a_path_keras_cannot_load(tmp_path: Any) -> None:
    bad = tmp_path / "bad.keras"
    bad.write_text("not a zip\n")
    with pytest.raises(ModelFileError, match=r"bad.keras: Keras cannot load it"):
        from_keras(bad)
    with pytest.raises(ModelFileError, match=r"no such Keras model file"):
        from_keras(tmp_path / "missing.keras")


def test_not_a_model() -> None:
    with pytest.raises(KerasModelError, match=r"expected a keras.Model or a path"):
        from_keras(42)
