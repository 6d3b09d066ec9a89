"""Run a :class:`~fedtflite.models.network.Network` in TensorFlow, builtins-only.

Every layer goes through :mod:`fedtflite.models.ops` or
:mod:`fedtflite.models.spatial_ops`, whose hand-written
gradients convert to LiteRT builtins; the forward computations are the ones
Keras' TensorFlow backend runs for the same layers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import tensorflow as tf

from fedtflite.models import ops, spatial_ops
from fedtflite.models.network import (
    Activation,
    BatchNorm,
    Conv2D,
    Dense,
    Dropout,
    GlobalAveragePool2D,
    Layer,
    Network,
    Pool2D,
    Reshape,
)

__all__ = ["Pass", "forward", "noise_shapes"]


@dataclass(frozen=True)
class Pass:
    """How a forward pass runs.

    Attributes
    ----------
    training : bool
        `train` (dropout masks, batch statistics) or `infer`.
    mask : tf.Tensor or None
        ``[B]`` real-row mask of the batch (batch normalization's statistics).
    noise : tuple of tf.Tensor
        One uniform noise tensor per dropout layer, in order (training only).
    """

    training: bool
    mask: tf.Tensor | None = None
    noise: tuple[tf.Tensor, ...] = ()


def forward(
    net: Network,
    weights: Sequence[tf.Tensor],
    x: tf.Tensor,
    run: Pass,
) -> tf.Tensor:
    """What the loss takes as logits, for ``x: [B, *net.input_shape]``.

    That is the network's output, or the input of its last layer when that is a
    softmax or sigmoid the loss skips (:attr:`Network.strips_last_activation`).

    Parameters
    ----------
    net : Network
    weights : sequence of tf.Tensor
        One per ``net.weights`` (variables or constants).
    x : tf.Tensor
    run : Pass
    """
    layers = net.layers[:-1] if net.strips_last_activation else net.layers
    noise = iter(run.noise)
    h = x
    for layer in layers:
        h = _apply(layer, weights, h, run, noise)
    return h


def _weight(weights: Sequence[tf.Tensor], index: int | None) -> tf.Tensor | None:
    return None if index is None else weights[index]


def _apply(
    layer: Layer,
    weights: Sequence[tf.Tensor],
    h: tf.Tensor,
    run: Pass,
    noise: Iterator[tf.Tensor],
) -> tf.Tensor:
    if isinstance(layer, Dense):
        kernel, bias = weights[layer.kernel], _weight(weights, layer.bias)
        if len(h.shape) == 2:
            return ops.dense(h, kernel, bias)
        lead = h.shape[1:-1]
        flat = ops.dense(tf.reshape(h, [-1, h.shape[-1]]), kernel, bias)
        return tf.reshape(flat, [-1, *lead, kernel.shape[-1]])
    if isinstance(layer, Conv2D):
        return spatial_ops.conv2d(
            h,
            weights[layer.kernel],
            _weight(weights, layer.bias),
            layer.strides,
            layer.padding,
        )
    if isinstance(layer, Pool2D):
        if not run.training:  # no gradient needed: TensorFlow's kernels
            pool = tf.nn.max_pool2d if layer.mode == "max" else tf.nn.avg_pool2d
            return pool(h, layer.pool_size, layer.strides, layer.padding.upper())
        return spatial_ops.pool2d(
            h, layer.mode, layer.pool_size, layer.strides, layer.padding
        )
    if isinstance(layer, GlobalAveragePool2D):
        y = (
            spatial_ops.global_avg_pool(h)
            if run.training
            else tf.reduce_mean(h, [1, 2])
        )
        return tf.reshape(y, [-1, 1, 1, y.shape[-1]]) if layer.keepdims else y
    if isinstance(layer, Reshape):
        return tf.reshape(h, [-1, *layer.shape])
    if isinstance(layer, Activation):
        return ops.activation(h, layer.function, layer.alpha)
    if isinstance(layer, Dropout):
        return ops.dropout(h, next(noise), layer.rate) if run.training else h
    return _batch_norm(layer, weights, h, run)


def _batch_norm(
    layer: BatchNorm, weights: Sequence[tf.Tensor], h: tf.Tensor, run: Pass
) -> tf.Tensor:
    gamma, beta = _weight(weights, layer.gamma), _weight(weights, layer.beta)
    moving_mean = weights[layer.moving_mean]
    moving_variance = weights[layer.moving_variance]
    if not run.training or layer.frozen:  # Keras: a frozen layer uses its averages
        inv = tf.math.rsqrt(moving_variance + layer.epsilon)
        scaled = inv if gamma is None else inv * gamma
        shift = -moving_mean * scaled if beta is None else beta - moving_mean * scaled
        return h * scaled + shift
    mask = run.mask if run.mask is not None else tf.ones([h.shape[0]], h.dtype)
    y, mean, variance = ops.batch_norm(h, gamma, beta, mask, layer.epsilon)
    m = layer.momentum
    moving_mean.assign(moving_mean * m + mean * (1.0 - m))
    moving_variance.assign(moving_variance * m + variance * (1.0 - m))
    return y


def noise_shapes(net: Network, batch: int | None) -> list[list[int | None]]:
    """The shape of each dropout layer's noise input (``None``: the batch)."""
    shapes = []
    for layer in net.dropouts:
        first = layer.noise_shape[0]
        lead: int | None = batch if first == -1 else first
        shapes.append([lead, *layer.noise_shape[1:]])
    return shapes
