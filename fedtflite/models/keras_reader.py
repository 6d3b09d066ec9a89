"""Read a Keras model: its layer chain, weights, compiled loss and optimizer.

Keras 3 layers and optimizers cannot be traced into a `tf.Module` for conversion
(the module does not track their variables, and TensorFlow's gradients of their
ops need Flex kernels), so fedtflite reads what defines them instead — Keras'
own layer configs (``layer.get_config()``), the weight values, the compiled
loss's and optimizer's configs — into a :class:`~fedtflite.models.network.Network`
that :mod:`fedtflite.models.layers` rebuilds with builtins-only gradients.
Anything it cannot rebuild exactly is refused with a one-line
:class:`~fedtflite.errors.KerasModelError` naming the layer (class and name) or
the setting, and what is supported.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedtflite.errors import KerasModelError, ModelFileError
from fedtflite.models.architectures import NUM_CLASSES
from fedtflite.models.keras_compile import read_loss, read_optimizer
from fedtflite.models.keras_layers import (
    SUPPORTED_LAYERS,
    Fail,
    LayerConverter,
    Site,
    describe,
)
from fedtflite.models.network import Layer, Network, Weight, ends_in_cached_logits
from fedtflite.models.specs import OptimizerSpec

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # after the log level

__all__ = ["INPUT_SHAPES", "KerasModel", "load_keras", "read_keras"]

INPUT_SHAPES = ((28, 28), (28, 28, 1), (784,))
"""Per-example input shapes that fit Fashion-MNIST (the client contract's)."""


@dataclass(frozen=True)
class KerasModel:
    """What fedtflite builds from a Keras model.

    Attributes
    ----------
    source : str
        The file, or ``Keras model '<name>'``; every message starts with it.
    network : Network
        The layer chain and the loss.
    weights : tuple of np.ndarray
        Initial float32 value of each ``network.weights`` entry.
    optimizer : OptimizerSpec
        The compiled optimizer (or the one given instead).
    """

    source: str
    network: Network
    weights: tuple[np.ndarray, ...]
    optimizer: OptimizerSpec


def load_keras(model_or_path: Any) -> tuple[Any, str]:
    """A ``keras.Model`` and its name for messages, loading a path with Keras.

    Raises
    ------
    ModelFileError
        No such file, or a file Keras cannot load.
    KerasModelError
        Not a Keras model.
    """
    if isinstance(model_or_path, keras.Model):
        return model_or_path, f"Keras model '{model_or_path.name}'"
    if not isinstance(model_or_path, str | os.PathLike):
        raise KerasModelError(
            f"expected a keras.Model or a path to a .keras file, got "
            f"{type(model_or_path).__name__}"
        )
    path = Path(model_or_path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such Keras model file")
    try:
        model = keras.saving.load_model(path)
    except Exception as e:  # Keras raises ValueError, TypeError, zipfile errors...
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        raise ModelFileError(
            f"{path}: Keras cannot load it ({type(e).__name__}: {first[:200]}); "
            "expected a model saved with model.save('model.keras')"
        ) from None
    if not isinstance(model, keras.Model):
        raise KerasModelError(f"{path}: holds a {type(model).__name__}, not a model")
    return model, str(path)


def read_keras(
    model: Any, source: str, *, optimizer: OptimizerSpec | None = None
) -> KerasModel:
    """Read ``model`` into a network, weights, loss and optimizer.

    Parameters
    ----------
    model : keras.Model
        A ``Sequential`` or functional model that is a chain, compiled with its
        loss (and optimizer, unless ``optimizer`` is given).
    source : str
        Names the model in messages.
    optimizer : OptimizerSpec, optional
        Used instead of the compiled optimizer.

    Raises
    ------
    KerasModelError
        Anything fedtflite cannot rebuild exactly.
    """
    reader = _Reader(model, source)
    converter = LayerConverter(reader.weight_index, Fail(source))
    layers: list[Layer] = []
    for site in reader.chain:
        layers += converter.convert(site)
    weights, values = reader.weights()
    last = reader.chain[-1].layer if reader.chain else model
    net_layers = tuple(layers)
    strips = ends_in_cached_logits(net_layers)
    network = Network(
        input_shape=reader.input_shape,
        layers=net_layers,
        weights=weights,
        num_classes=NUM_CLASSES,
        loss=read_loss(model, source, strips, last),
    )
    spec = optimizer if optimizer is not None else read_optimizer(model, source)
    return KerasModel(source, network, values, spec)


class _Reader:
    """Walks a model's chain once and converts its layers."""

    def __init__(self, model: Any, source: str):
        self.source = source
        self._fail = Fail(source)
        if type(model).__name__ not in ("Sequential", "Functional"):
            self._fail(
                f"{describe(model)} is a subclassed keras.Model; supported: "
                "Sequential models and functional models that are a chain"
            )
        policy = getattr(model.dtype_policy, "name", "float32")
        if policy != "float32":
            self._fail(f"dtype policy {policy!r}; supported: float32")
        self.chain = self._walk(model)
        x = _inputs(model, self._fail)[0]
        shape = tuple(x.shape[1:])
        if shape not in INPUT_SHAPES or x.dtype != "float32":
            self._fail(
                f"input {x.dtype}{shape} does not fit Fashion-MNIST; supported: "
                f"float32 {', '.join(map(str, INPUT_SHAPES))}"
            )
        self.input_shape: tuple[int, ...] = shape
        out = model.outputs[0].shape
        if len(out) != 2 or out[1] != NUM_CLASSES:
            self._fail(
                f"output shape {tuple(out)} does not fit Fashion-MNIST; supported: "
                f"(None, {NUM_CLASSES}), one score per class"
            )
        trainable = {id(v): i for i, v in enumerate(model.trainable_weights)}
        others = {id(v): i for i, v in enumerate(model.non_trainable_weights)}
        if not trainable:
            self._fail("has no trainable weights; nothing to train")
        used: list[tuple[Any, str]] = []
        for site in self.chain:
            layer = site.layer
            for v in layer.weights:
                if id(v) in trainable:
                    kind = "trainable"
                elif _is_bn(layer) and layer.trainable and not v.trainable:
                    kind = "state"  # moving statistics the layer updates
                else:
                    kind = "constant"
                used.append((v, kind))
        rank = {"trainable": 0, "state": 1, "constant": 2}
        used.sort(
            key=lambda vk: (
                rank[vk[1]],
                trainable.get(id(vk[0]), others.get(id(vk[0]), 0)),
            )
        )
        self._used = used
        self._index = {id(v): i for i, (v, _) in enumerate(used)}

    # -- the chain ---------------------------------------------------------------

    def _walk(self, model: Any) -> list[Site]:
        """Every layer, input to output, with its input and output shapes."""
        inputs = _inputs(model, self._fail)
        outputs = model.outputs
        if len(inputs) != 1 or len(outputs) != 1:
            self._fail(
                f"{describe(model)} has {len(inputs)} inputs and {len(outputs)} "
                "outputs; supported: one image input and one class-score output"
            )
        backwards: list[Site] = []
        tensor = outputs[0]
        while True:
            op, node_index, _ = tensor._keras_history
            if isinstance(op, keras.layers.InputLayer):
                break
            if not isinstance(op, keras.layers.Layer):
                self._fail(
                    f"operation {type(op).__name__} '{op.name}' is not a layer; "
                    f"supported layers: {', '.join(SUPPORTED_LAYERS)}"
                )
            node = op._inbound_nodes[node_index]
            if len(node.input_tensors) != 1:
                self._fail(
                    f"layer {describe(op)} takes {len(node.input_tensors)} inputs; "
                    "supported: a chain (each layer takes the previous layer's "
                    "output)"
                )
            # Keras overrides a recorded `training` with the model call's own.
            kwargs = {
                k: v
                for k, v in node.arguments.kwargs.items()
                if v is not None and k != "training"
            }
            if kwargs:
                self._fail(
                    f"layer {describe(op)} is called with {', '.join(sorted(kwargs))}; "
                    "supported: a plain call layer(x)"
                )
            if isinstance(op, keras.Model):  # a nested chain: inline its layers
                backwards += self._walk(op)[::-1]
            else:
                backwards.append(
                    Site(
                        op,
                        op.get_config(),
                        tuple(node.input_tensors[0].shape),
                        tuple(node.output_tensors[0].shape),
                    )
                )
            tensor = node.input_tensors[0]
        chain = backwards[::-1]
        on_path = [id(site.layer) for site in chain]
        for layer in _all_layers(model):
            if on_path.count(id(layer)) != 1:
                how = "called twice" if on_path.count(id(layer)) else "off the path"
                self._fail(
                    f"layer {describe(layer)} is {how} from the input to the output; "
                    "supported: a chain"
                )
        return chain

    # -- weights -------------------------------------------------------------------

    def weight_index(self, variable: Any) -> int:
        """Index of a Keras variable in the network's weights."""
        return self._index[id(variable)]

    def weights(self) -> tuple[tuple[Weight, ...], tuple[np.ndarray, ...]]:
        """The weights in the network's order, and their values."""
        specs = tuple(
            Weight(v.path, tuple(int(d) for d in v.shape), kind)
            for v, kind in self._used
        )
        values = tuple(np.array(v.numpy(), np.float32) for v, _ in self._used)
        return specs, values

    # -- layers ----------------------------------------------------------------------


def _is_bn(layer: Any) -> bool:
    return type(layer) is keras.layers.BatchNormalization


def _inputs(model: Any, fail: Fail) -> list[Any]:
    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError):
        inputs = []
    if not inputs:
        fail(
            f"{describe(model)} has no input shape; start it with "
            "keras.Input(shape=(28, 28)) (or (28, 28, 1), (784,))"
        )
    return inputs


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            out += _all_layers(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            out.append(layer)
    return out
