"""The named architectures as Keras models: what ``fedtflite build NAME`` converts.

Each is the Keras definition of an entry of
:data:`fedtflite.models.architectures.ARCHITECTURES`, compiled with
cross-entropy on logits and one-hot labels; the builder sets its weights to the
seeded :func:`~fedtflite.models.architectures.init_weights` and its optimizer to
the :class:`~fedtflite.models.specs.ModelSpec`'s, then converts it with
:func:`fedtflite.models.from_keras`, the path every user's model takes.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # after the log level

__all__ = ["keras_definition"]

_L = keras.layers


def _mlp() -> list[Any]:
    return [
        _L.Flatten(name="flatten"),
        _L.Dense(128, activation="relu", name="hidden"),
        _L.Dense(10, name="logits"),
    ]


def _cnn() -> list[Any]:
    return [
        _L.Reshape((28, 28, 1), name="channels"),
        _L.Conv2D(6, 5, activation="relu", name="conv1"),
        _L.MaxPooling2D(2, name="pool1"),
        _L.Conv2D(16, 5, activation="relu", name="conv2"),
        _L.MaxPooling2D(2, name="pool2"),
        _L.Flatten(name="flatten"),
        _L.Dense(120, activation="relu", name="fc1"),
        _L.Dense(84, activation="relu", name="fc2"),
        _L.Dense(10, name="logits"),
    ]


def _two_nn() -> list[Any]:
    return [
        _L.Flatten(name="flatten"),
        _L.Dense(200, activation="relu", name="hidden1"),
        _L.Dense(200, activation="relu", name="hidden2"),
        _L.Dense(10, name="logits"),
    ]


def _fedavg_cnn() -> list[Any]:
    return [
        _L.Reshape((28, 28, 1), name="channels"),
        _L.Conv2D(32, 5, padding="same", activation="relu", name="conv1"),
        _L.MaxPooling2D(2, name="pool1"),
        _L.Conv2D(64, 5, padding="same", activation="relu", name="conv2"),
        _L.MaxPooling2D(2, name="pool2"),
        _L.Flatten(name="flatten"),
        _L.Dense(512, activation="relu", name="fc"),
        _L.Dense(10, name="logits"),
    ]


_LAYERS: dict[str, Callable[[], list[Any]]] = {
    "mlp": _mlp,
    "cnn": _cnn,
    "2nn": _two_nn,
    "fedavg-cnn": _fedavg_cnn,
}


def keras_definition(name: str) -> Any:
    """The compiled ``keras.Sequential`` of architecture ``name``.

    Its optimizer is a placeholder (Keras' SGD): the builder uses the spec's.
    """
    model = keras.Sequential(
        [keras.Input((28, 28), name="x"), *_LAYERS[name]()],
        name=name.replace("-", "_"),
    )
    model.compile(
        optimizer=keras.optimizers.SGD(),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    return model
