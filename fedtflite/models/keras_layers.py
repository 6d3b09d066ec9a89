"""Keras layers -> fedtflite's primitive layers, from each layer's own config.

One Keras layer becomes one or two primitive layers (:mod:`fedtflite.models.network`;
a fused activation is its own). Every option fedtflite cannot rebuild exactly is
refused with a :class:`~fedtflite.errors.KerasModelError` naming the layer (class
and name) and what is supported.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from fedtflite.errors import KerasModelError
from fedtflite.models.network import (
    Activation,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    GlobalAveragePool2D,
    Layer,
    Pool2D,
    Reshape,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras  # after the log level

__all__ = ["SUPPORTED_LAYERS", "Fail", "LayerConverter", "Site", "describe"]

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


class Fail:
    """Raises :class:`KerasModelError` with the model's name in front."""

    def __init__(self, source: str):
        self.source = source

    def __call__(self, message: str) -> NoReturn:
        raise KerasModelError(f"{self.source}: {message}")


def describe(layer: Any) -> str:
    """``Class 'name'`` of a Keras layer or model, for messages."""
    return f"{type(layer).__name__} '{layer.name}'"


@dataclass(frozen=True)
class Site:
    """One Keras layer being converted: its config and its tensors' shapes."""

    layer: Any
    cfg: dict[str, Any]
    in_shape: tuple[Any, ...]
    out_shape: tuple[Any, ...]

    @property
    def source(self) -> str:
        """``Class 'name'`` of the layer."""
        return describe(self.layer)

    @property
    def where(self) -> str:
        """``layer Class 'name'``, how messages start."""
        return f"layer {describe(self.layer)}"


class LayerConverter:
    """Converts :class:`Site` s; ``weight_index`` maps a Keras variable to its index
    in the network's weights."""

    def __init__(self, weight_index: Callable[[Any], int], fail: Fail):
        self._weight = weight_index
        self._fail = fail

    def convert(self, site: Site) -> list[Layer]:
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
        handlers: dict[str, Callable[[Site], list[Layer]]] = {
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

    def _activation(self, value: Any, site: Site) -> list[Layer]:
        if not isinstance(value, str) or value not in _ACTIVATIONS:
            self._fail(
                f"{site.where} has activation {value!r}; supported: "
                f"{', '.join(_ACTIVATIONS)}"
            )
        function, alpha = _ACTIVATIONS[value]
        if function == "linear":
            return []
        return [Activation(site.source, function, alpha)]

    def _dense(self, site: Site) -> list[Layer]:
        kernel, bias = self._kernel_bias(site)
        activation = self._activation(site.cfg["activation"], site)
        return [Dense(site.source, kernel, bias), *activation]

    def _conv2d(self, site: Site) -> list[Layer]:
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

    def _pool(self, mode: str, site: Site) -> list[Layer]:
        cfg = site.cfg
        pool = (int(cfg["pool_size"][0]), int(cfg["pool_size"][1]))
        strides_cfg = cfg.get("strides") or pool
        strides = (int(strides_cfg[0]), int(strides_cfg[1]))
        return [Pool2D(site.source, mode, pool, strides, self._padding(site))]

    def _global_average_pooling(self, site: Site) -> list[Layer]:
        return [GlobalAveragePool2D(site.source, bool(site.cfg.get("keepdims")))]

    def _reshape(self, site: Site) -> list[Layer]:
        return [Reshape(site.source, tuple(int(d) for d in site.out_shape[1:]))]

    def _dropout(self, site: Site) -> list[Layer]:
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

    def _spatial_dropout(self, site: Site) -> list[Layer]:
        rate = float(site.cfg["rate"])
        if rate == 0.0:
            return []
        return [Dropout(site.source, rate, (-1, 1, 1, int(site.in_shape[3])))]

    def _relu(self, site: Site) -> list[Layer]:
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

    def _last_axis(self, site: Site, extra: str = "") -> None:
        axis = site.cfg["axis"]
        axes = tuple(axis) if isinstance(axis, list | tuple) else (axis,)
        if axes not in ((-1,), (len(site.in_shape) - 1,)) or extra:
            self._fail(
                f"{site.where} has axis={axis}{extra}; supported: axis=-1 "
                "(the last axis)"
            )

    def _softmax(self, site: Site) -> list[Layer]:
        self._last_axis(site)
        return [Activation(site.source, "softmax")]

    def _batch_norm(self, site: Site) -> list[Layer]:
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

    def _kernel_bias(self, site: Site) -> tuple[int, int | None]:
        layer, use_bias = site.layer, bool(site.cfg["use_bias"])
        expected = 2 if use_bias else 1
        if len(layer.weights) != expected:
            self._fail(
                f"{site.where} has {len(layer.weights)} weights; expected "
                f"{expected} (kernel{', bias' if use_bias else ''})"
            )
        kernel = self._weight(layer.weights[0])
        return kernel, self._weight(layer.weights[1]) if use_bias else None

    def _padding(self, site: Site) -> str:
        padding = str(site.cfg["padding"]).lower()
        if padding not in ("valid", "same"):
            self._fail(
                f"{site.where} has padding={padding!r}; supported: 'valid', 'same'"
            )
        return padding
