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
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from fedtflite.errors import KerasModelError, ModelFileError
from fedtflite.models.architectures import NUM_CLASSES
from fedtflite.models.network import (
    Activation,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    GlobalAveragePool2D,
    Layer,
    Loss,
    Network,
    Pool2D,
    Reshape,
    Weight,
    ends_in_cached_logits,
)
from fedtflite.models.specs import OptimizerSpec

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # after the log level

__all__ = [
    "INPUT_SHAPES",
    "SUPPORTED_LAYERS",
    "SUPPORTED_OPTIMIZERS",
    "KerasModel",
    "load_keras",
    "read_keras",
]

INPUT_SHAPES = ((28, 28), (28, 28, 1), (784,))
"""Per-example input shapes that fit Fashion-MNIST (the client contract's)."""

SUPPORTED_LAYERS = (
    "InputLayer",
    "Dense",
    "Conv2D",
    "MaxPooling2D",
    "AveragePooling2D",
    "GlobalAveragePooling2D",
    "Flatten",
    "Reshape",
    "Dropout",
    "SpatialDropout2D",
    "Activation",
    "ReLU",
    "LeakyReLU",
    "ELU",
    "Softmax",
    "BatchNormalization",
)

SUPPORTED_OPTIMIZERS = {
    "SGD": "sgd",
    "Adam": "adam",
    "AdamW": "adamw",
    "RMSprop": "rmsprop",
}

_ACTIVATIONS = {  # Keras activation name -> (function, Keras' default alpha)
    "linear": ("linear", 0.0),
    "relu": ("relu", 0.0),
    "relu6": ("relu6", 0.0),
    "tanh": ("tanh", 0.0),
    "sigmoid": ("sigmoid", 0.0),
    "softmax": ("softmax", 0.0),
    "elu": ("elu", 1.0),
    "leaky_relu": ("leaky_relu", 0.2),
    "silu": ("silu", 0.0),
    "swish": ("silu", 0.0),
}

_UNSUPPORTED_OPTIONS = (  # layer config keys that must be unset
    "kernel_regularizer",
    "bias_regularizer",
    "activity_regularizer",
    "kernel_constraint",
    "bias_constraint",
    "beta_regularizer",
    "gamma_regularizer",
    "beta_constraint",
    "gamma_constraint",
    "lora_rank",
    "quantization_config",
)


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
    layers: list[Layer] = []
    for site in reader.chain:
        layers += reader.convert(site)
    weights, values = reader.weights()
    last = reader.chain[-1].layer if reader.chain else model
    net_layers = tuple(layers)
    strips = ends_in_cached_logits(net_layers)
    network = Network(
        input_shape=reader.input_shape,
        layers=net_layers,
        weights=weights,
        num_classes=NUM_CLASSES,
        loss=_loss(model, source, strips, last),
    )
    spec = optimizer if optimizer is not None else _optimizer(model, source)
    return KerasModel(source, network, values, spec)


def _name(layer: Any) -> str:
    return f"{type(layer).__name__} '{layer.name}'"


@dataclass(frozen=True)
class _Site:
    """One Keras layer being converted."""

    layer: Any
    cfg: dict[str, Any]
    in_shape: tuple[Any, ...]
    out_shape: tuple[Any, ...]

    @property
    def source(self) -> str:
        return _name(self.layer)

    @property
    def where(self) -> str:
        return f"layer {_name(self.layer)}"


class _Reader:
    """Walks a model's chain once and converts its layers."""

    def __init__(self, model: Any, source: str):
        self.source = source
        self._fail = _Fail(source)
        if type(model).__name__ not in ("Sequential", "Functional"):
            self._fail(
                f"{_name(model)} is a subclassed keras.Model; supported: "
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

    def _walk(self, model: Any) -> list[_Site]:
        """Every layer, input to output, with its input and output shapes."""
        inputs = _inputs(model, self._fail)
        outputs = model.outputs
        if len(inputs) != 1 or len(outputs) != 1:
            self._fail(
                f"{_name(model)} has {len(inputs)} inputs and {len(outputs)} outputs; "
                "supported: one image input and one class-score output"
            )
        backwards: list[_Site] = []
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
                    f"layer {_name(op)} takes {len(node.input_tensors)} inputs; "
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
                    f"layer {_name(op)} is called with {', '.join(sorted(kwargs))}; "
                    "supported: a plain call layer(x)"
                )
            if isinstance(op, keras.Model):  # a nested chain: inline its layers
                backwards += self._walk(op)[::-1]
            else:
                backwards.append(
                    _Site(
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
                    f"layer {_name(layer)} is {how} from the input to the output; "
                    "supported: a chain"
                )
        return chain

    # -- weights -------------------------------------------------------------------

    def _weight(self, variable: Any) -> int:
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

    def convert(self, site: _Site) -> list[Layer]:
        """The primitive layers of one Keras layer."""
        layer, cfg, where = site.layer, site.cfg, site.where
        kind = type(layer).__name__
        if kind not in SUPPORTED_LAYERS or type(layer) is not getattr(
            keras.layers, kind, None
        ):
            self._fail(
                f"{where} is not supported; supported layers: "
                f"{', '.join(SUPPORTED_LAYERS)}"
            )
        for key in _UNSUPPORTED_OPTIONS:
            if cfg.get(key):
                self._fail(f"{where} has {key}={cfg[key]!r}; supported: None")
        policy = getattr(layer.dtype_policy, "name", "float32")
        if policy != "float32":
            self._fail(f"{where} has dtype policy {policy!r}; supported: float32")
        if cfg.get("data_format", "channels_last") != "channels_last":
            self._fail(
                f"{where} has data_format={cfg['data_format']!r}; "
                "supported: 'channels_last'"
            )
        handlers: dict[str, Callable[[_Site], list[Layer]]] = {
            "InputLayer": lambda _: [],
            "Dense": self._dense,
            "Conv2D": self._conv2d,
            "MaxPooling2D": lambda s: self._pool("max", s),
            "AveragePooling2D": lambda s: self._pool("avg", s),
            "GlobalAveragePooling2D": self._global_average_pooling,
            "Flatten": self._reshape,
            "Reshape": self._reshape,
            "Dropout": self._dropout,
            "SpatialDropout2D": self._spatial_dropout,
            "Activation": lambda s: self._activation(s.cfg["activation"], s),
            "ReLU": self._relu,
            "LeakyReLU": lambda s: [
                Activation(s.source, "leaky_relu", float(s.cfg["negative_slope"]))
            ],
            "ELU": lambda s: [Activation(s.source, "elu", float(s.cfg["alpha"]))],
            "Softmax": self._softmax,
            "BatchNormalization": self._batch_norm,
        }
        layers: list[Layer] = handlers[kind](site)
        return layers

    def _activation(self, value: Any, site: _Site) -> list[Layer]:
        if not isinstance(value, str) or value not in _ACTIVATIONS:
            self._fail(
                f"{site.where} has activation {value!r}; supported: "
                f"{', '.join(_ACTIVATIONS)}"
            )
        function, alpha = _ACTIVATIONS[value]
        if function == "linear":
            return []
        return [Activation(site.source, function, alpha)]

    def _dense(self, site: _Site) -> list[Layer]:
        kernel, bias = self._kernel_bias(site)
        activation = self._activation(site.cfg["activation"], site)
        return [Dense(site.source, kernel, bias), *activation]

    def _conv2d(self, site: _Site) -> list[Layer]:
        cfg = site.cfg
        if tuple(cfg["dilation_rate"]) != (1, 1) or cfg["groups"] != 1:
            self._fail(
                f"{site.where} has dilation_rate={tuple(cfg['dilation_rate'])}, "
                f"groups={cfg['groups']}; supported: dilation_rate=(1, 1), groups=1"
            )
        padding = self._padding(site)
        kernel, bias = self._kernel_bias(site)
        strides = (int(cfg["strides"][0]), int(cfg["strides"][1]))
        activation = self._activation(cfg["activation"], site)
        return [Conv2D(site.source, kernel, bias, strides, padding), *activation]

    def _pool(self, mode: str, site: _Site) -> list[Layer]:
        cfg = site.cfg
        pool = (int(cfg["pool_size"][0]), int(cfg["pool_size"][1]))
        strides_cfg = cfg.get("strides") or pool
        strides = (int(strides_cfg[0]), int(strides_cfg[1]))
        return [Pool2D(site.source, mode, pool, strides, self._padding(site))]

    def _global_average_pooling(self, site: _Site) -> list[Layer]:
        return [GlobalAveragePool2D(site.source, bool(site.cfg.get("keepdims")))]

    def _reshape(self, site: _Site) -> list[Layer]:
        return [Reshape(site.source, tuple(int(d) for d in site.out_shape[1:]))]

    def _dropout(self, site: _Site) -> list[Layer]:
        rate, in_shape = float(site.cfg["rate"]), site.in_shape
        if rate == 0.0:  # Keras: the identity
            return []
        requested = site.cfg.get("noise_shape")
        if requested is None:
            requested = (None,) * len(in_shape)
        if len(requested) != len(in_shape) or requested[0] not in (None, 1):
            self._fail(
                f"{site.where} has noise_shape={tuple(requested)}; supported: None "
                f"or {len(in_shape)} entries, the first None or 1"
            )
        shape = [-1 if requested[0] is None else 1]
        for want, have in zip(requested[1:], in_shape[1:], strict=True):
            shape.append(int(have) if want is None else int(want))
        return [Dropout(site.source, rate, tuple(shape))]

    def _spatial_dropout(self, site: _Site) -> list[Layer]:
        rate = float(site.cfg["rate"])
        if rate == 0.0:
            return []
        return [Dropout(site.source, rate, (-1, 1, 1, int(site.in_shape[3])))]

    def _relu(self, site: _Site) -> list[Layer]:
        cfg = site.cfg
        slope, top = float(cfg["negative_slope"]), cfg["max_value"]
        if float(cfg["threshold"]) == 0.0:
            if top is None and slope:
                return [Activation(site.source, "leaky_relu", slope)]
            if top is None:
                return [Activation(site.source, "relu")]
            if float(top) == 6.0 and not slope:
                return [Activation(site.source, "relu6")]
        self._fail(
            f"{site.where} has threshold={cfg['threshold']}, max_value={top}, "
            f"negative_slope={slope}; supported: threshold=0 with max_value None "
            "(any negative_slope) or 6 (negative_slope 0)"
        )

    def _last_axis(self, site: _Site, extra: str = "") -> None:
        axis = site.cfg["axis"]
        axes = tuple(axis) if isinstance(axis, list | tuple) else (axis,)
        if axes not in ((-1,), (len(site.in_shape) - 1,)) or extra:
            self._fail(
                f"{site.where} has axis={axis}{extra}; supported: axis=-1 "
                "(the last axis)"
            )

    def _softmax(self, site: _Site) -> list[Layer]:
        self._last_axis(site)
        return [Activation(site.source, "softmax")]

    def _batch_norm(self, site: _Site) -> list[Layer]:
        layer, cfg = site.layer, site.cfg
        self._last_axis(site, ", renorm=True" if cfg.get("renorm") else "")
        gamma = self._weight(layer.gamma) if cfg["scale"] else None
        beta = self._weight(layer.beta) if cfg["center"] else None
        return [
            BatchNorm(
                site.source,
                gamma,
                beta,
                self._weight(layer.moving_mean),
                self._weight(layer.moving_variance),
                float(cfg["momentum"]),
                float(cfg["epsilon"]),
                frozen=not layer.trainable,
            )
        ]

    # -- helpers -------------------------------------------------------------------

    def _kernel_bias(self, site: _Site) -> tuple[int, int | None]:
        layer, use_bias = site.layer, bool(site.cfg["use_bias"])
        expected = 2 if use_bias else 1
        if len(layer.weights) != expected:
            self._fail(
                f"{site.where} has {len(layer.weights)} weights; expected "
                f"{expected} (kernel{', bias' if use_bias else ''})"
            )
        kernel = self._weight(layer.weights[0])
        return kernel, self._weight(layer.weights[1]) if use_bias else None

    def _padding(self, site: _Site) -> str:
        padding = str(site.cfg["padding"]).lower()
        if padding not in ("valid", "same"):
            self._fail(
                f"{site.where} has padding={padding!r}; supported: 'valid', 'same'"
            )
        return padding


class _Fail:
    """Raises :class:`KerasModelError` with the model's name in front."""

    def __init__(self, source: str):
        self.source = source

    def __call__(self, message: str) -> NoReturn:
        raise KerasModelError(f"{self.source}: {message}")


def _is_bn(layer: Any) -> bool:
    return type(layer) is keras.layers.BatchNormalization


def _inputs(model: Any, fail: _Fail) -> list[Any]:
    try:
        inputs = list(model.inputs)
    except (AttributeError, ValueError):
        inputs = []
    if not inputs:
        fail(
            f"{_name(model)} has no input shape; start it with "
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


def _loss(model: Any, source: str, strips: bool, last: Any) -> Loss:
    fail = _Fail(source)
    supported = (
        "supported: SparseCategoricalCrossentropy or CategoricalCrossentropy "
        "(from_logits True or False)"
    )
    loss = getattr(model, "loss", None)
    if loss is None:
        fail(
            "is not compiled with a loss; call model.compile(optimizer=..., "
            "loss='sparse_categorical_crossentropy') before saving"
        )
    if isinstance(loss, list | tuple) and len(loss) == 1:
        loss = loss[0]
    compile_config = getattr(getattr(model, "_compile_config", None), "config", {})
    weights = compile_config.get("loss_weights") if compile_config else None
    if weights not in (None, 1, 1.0, [1], [1.0]):
        fail(f"loss_weights={weights!r}; supported: None")
    if isinstance(loss, str):
        loss = keras.losses.get(loss)
    if loss is keras.losses.sparse_categorical_crossentropy:
        sparse, from_logits = True, False
    elif loss is keras.losses.categorical_crossentropy:
        sparse, from_logits = False, False
    elif type(loss) in (
        keras.losses.SparseCategoricalCrossentropy,
        keras.losses.CategoricalCrossentropy,
    ):
        cfg = loss.get_config()
        sparse = type(loss) is keras.losses.SparseCategoricalCrossentropy
        from_logits = bool(cfg.get("from_logits", False))
        options = {
            "reduction": (
                cfg.get("reduction", "sum_over_batch_size"),
                "sum_over_batch_size",
            ),
            "label_smoothing": (cfg.get("label_smoothing", 0.0), 0.0),
            "ignore_class": (cfg.get("ignore_class"), None),
            "axis": (cfg.get("axis", -1), -1),
        }
        for key, (value, default) in options.items():
            if value != default:
                fail(
                    f"loss {type(loss).__name__} has {key}={value!r}; "
                    f"supported: {default!r}"
                )
    else:
        name = getattr(loss, "__name__", type(loss).__name__)
        fail(f"loss {name} is not supported; {supported}")
    if not from_logits and not strips:
        fail(
            f"the loss takes probabilities (from_logits=False) but the model ends "
            f"in layer {_name(last)}, not a softmax; end it in "
            "activation='softmax' or compile with from_logits=True"
        )
    return Loss(sparse=sparse, from_logits=from_logits)


def _optimizer(model: Any, source: str) -> OptimizerSpec:
    fail = _Fail(source)
    opt = getattr(model, "optimizer", None)
    if opt is None:
        fail(
            "is not compiled with an optimizer; call model.compile(optimizer=..., "
            "loss=...) before saving"
        )
    kind = type(opt).__name__
    if kind not in SUPPORTED_OPTIMIZERS or type(opt) is not getattr(
        keras.optimizers, kind, None
    ):
        fail(
            f"optimizer {kind} is not supported; supported: "
            f"{', '.join(SUPPORTED_OPTIMIZERS)}"
        )
    cfg = opt.get_config()
    where = f"optimizer {kind}"
    if not isinstance(cfg["learning_rate"], int | float):
        fail(
            f"{where} has a learning-rate schedule; supported: a constant rate "
            "(a simulation sets it per round through set_learning_rate)"
        )
    for key in (
        "clipnorm",
        "clipvalue",
        "global_clipnorm",
        "loss_scale_factor",
        "gradient_accumulation_steps",
    ):
        if cfg.get(key) is not None:
            fail(f"{where} has {key}={cfg[key]!r}; supported: None")
    if cfg.get("use_ema"):
        fail(f"{where} has use_ema=True; supported: False")
    decay = float(cfg.get("weight_decay") or 0.0)
    if decay and hasattr(opt, "_use_weight_decay"):
        excluded = [
            v.path for v in model.trainable_weights if not opt._use_weight_decay(v)
        ]
        if excluded:
            fail(
                f"{where} excludes {', '.join(excluded)} from weight_decay; "
                "supported: weight decay on every trainable weight"
            )
    name = SUPPORTED_OPTIMIZERS[kind]
    defaults = OptimizerSpec()
    return OptimizerSpec(
        name=name,
        learning_rate=float(cfg["learning_rate"]),
        momentum=float(cfg.get("momentum", 0.0)),
        momentum_form="keras",
        nesterov=bool(cfg.get("nesterov", False)),
        decoupled_weight_decay=decay,
        beta_1=float(cfg.get("beta_1", defaults.beta_1)),
        beta_2=float(cfg.get("beta_2", defaults.beta_2)),
        epsilon=float(cfg.get("epsilon", defaults.epsilon)),
        amsgrad=bool(cfg.get("amsgrad", False)),
        rho=float(cfg.get("rho", defaults.rho)),
        centered=bool(cfg.get("centered", False)),
    )
