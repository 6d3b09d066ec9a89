"""Layer ops with hand-written gradients that convert to LiteRT builtins.

TensorFlow's own gradients of these ops are kernels LiteRT has no builtin for
(`ReluGrad`, `TanhGrad`, `SigmoidGrad`, `EluGrad`, `LeakyReluGrad`,
`FusedBatchNormGradV3`, `BroadcastGradientArgs` for dynamic shapes), which would
force the Flex delegate. Each op here states its backward pass with ops that do
convert (`FULLY_CONNECTED`, `BATCH_MATMUL`, `MUL`, `SELECT_V2`, ...), so a
`train` signature built from them runs with ``TFLITE_BUILTINS`` alone. The
forward passes are TensorFlow's (and Keras') own kernels, so the results equal
theirs to float rounding (checked in ``tests/test_ops.py`` against native
autodiff). No library offers these: this is the part of the builder fedtflite
has to write itself. Convolution and pooling are in
:mod:`fedtflite.models.spatial_ops`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec

import numpy as np
import tensorflow as tf

__all__ = [
    "Grad",
    "activation",
    "batch_norm",
    "custom_gradient",
    "dense",
    "dropout",
    "keep_activation",
    "relu",
    "softmax_cross_entropy",
]

Grad = Callable[..., Any]
_P = ParamSpec("_P")


def custom_gradient(
    f: Callable[_P, tuple[tf.Tensor, Grad]],
) -> Callable[_P, tf.Tensor]:
    """`tf.custom_gradient` with the argument types kept (TensorFlow is untyped)."""
    op: Callable[_P, tf.Tensor] = tf.custom_gradient(f)
    return op


# -- dense -----------------------------------------------------------------------


@custom_gradient
def _dense(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) -> tuple[tf.Tensor, Grad]:
    def grad(dy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        dx = tf.matmul(dy, w, transpose_b=True)
        dw = tf.matmul(x, dy, transpose_a=True)
        db = tf.reduce_sum(dy, axis=0)
        return dx, dw, db

    return tf.matmul(x, w) + b, grad


def keep_activation(y: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """``y`` plus a zero computed from ``w`` at run time, for a bias-free matmul.

    TensorFlow 2.21's converter fuses a ReLU or ReLU6 that follows a bias-free
    ``matmul`` into it, then lowers it to `BATCH_MATMUL`, which has no fused
    activation: the ReLU is silently lost (measured; ``tests/test_ops.py``). An
    `ADD` in between takes the fused activation instead.
    """
    return y + w[0] * 0.0


@custom_gradient
def _matmul(x: tf.Tensor, w: tf.Tensor) -> tuple[tf.Tensor, Grad]:
    def grad(dy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.matmul(dy, w, transpose_b=True), tf.matmul(x, dy, transpose_a=True)

    return keep_activation(tf.matmul(x, w), w), grad


def dense(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor | None = None) -> tf.Tensor:
    """``x @ w (+ b)`` for ``x: [B, n_in]``, ``w: [n_in, n_out]``, ``b: [n_out]``."""
    return _matmul(x, w) if b is None else _dense(x, w, b)


# -- activations -------------------------------------------------------------------


@custom_gradient
def relu(x: tf.Tensor) -> tuple[tf.Tensor, Grad]:
    """``max(x, 0)``; gradient ``dy * [x > 0]`` (0 at 0, as TensorFlow)."""

    def grad(dy: tf.Tensor) -> tf.Tensor:
        return dy * tf.cast(x > 0.0, dy.dtype)

    return tf.maximum(x, 0.0), grad


def _elementwise(
    forward: Callable[[tf.Tensor], tf.Tensor],
    derivative: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
) -> Callable[[tf.Tensor], tf.Tensor]:
    """An element-wise op whose derivative is a function of its input and output."""

    @custom_gradient
    def op(x: tf.Tensor) -> tuple[tf.Tensor, Grad]:
        y = forward(x)

        def grad(dy: tf.Tensor) -> tf.Tensor:
            return dy * derivative(x, y)

        return y, grad

    return op


def _softmax(x: tf.Tensor) -> tf.Tensor:
    @custom_gradient
    def op(x: tf.Tensor) -> tuple[tf.Tensor, Grad]:
        y = tf.nn.softmax(x)

        def grad(dy: tf.Tensor) -> tf.Tensor:
            return y * (dy - tf.reduce_sum(dy * y, axis=-1, keepdims=True))

        return y, grad

    return op(x)


def _elu(alpha: float) -> Callable[[tf.Tensor], tf.Tensor]:
    def forward(x: tf.Tensor) -> tf.Tensor:
        y = tf.nn.elu(x)  # Keras: ELU, then alpha on the negative side
        return y if alpha == 1.0 else tf.where(x > 0.0, y, alpha * y)

    return _elementwise(forward, lambda x, y: tf.where(x > 0.0, 1.0, y + alpha))


def _leaky_relu(alpha: float) -> Callable[[tf.Tensor], tf.Tensor]:
    return _elementwise(
        lambda x: tf.nn.leaky_relu(x, alpha=alpha),
        lambda x, y: tf.where(x > 0.0, 1.0, alpha),
    )


def _activations(alpha: float) -> dict[str, Callable[[tf.Tensor], tf.Tensor]]:
    return {
        "relu": relu,
        "relu6": _elementwise(
            tf.nn.relu6,
            lambda x, y: tf.cast(tf.logical_and(x > 0.0, x < 6.0), x.dtype),
        ),
        "tanh": _elementwise(tf.tanh, lambda x, y: 1.0 - y * y),
        "sigmoid": _elementwise(tf.sigmoid, lambda x, y: y * (1.0 - y)),
        "silu": _elementwise(
            tf.nn.silu,
            lambda x, y: tf.sigmoid(x) * (1.0 + x * (1.0 - tf.sigmoid(x))),
        ),
        "softmax": _softmax,
        "elu": _elu(alpha),
        "leaky_relu": _leaky_relu(alpha),
    }


def activation(x: tf.Tensor, function: str, alpha: float = 0.0) -> tf.Tensor:
    """Keras' activation ``function`` (one of ``network.ACTIVATIONS``).

    ``alpha`` is ELU's ``alpha`` or leaky ReLU's ``negative_slope``. ``softmax``
    is over the last axis.
    """
    if function == "linear":
        return x
    return _activations(alpha)[function](x)


# -- dropout and batch normalization --------------------------------------------------


@custom_gradient
def _scale_by(x: tf.Tensor, keep: tf.Tensor) -> tuple[tf.Tensor, Grad]:
    def grad(dy: tf.Tensor) -> tuple[tf.Tensor, None]:
        return dy * keep, None

    return x * keep, grad


def dropout(x: tf.Tensor, noise: tf.Tensor, rate: float) -> tf.Tensor:
    """Keep ``x`` where ``noise >= rate``, scaled by ``1 / (1 - rate)``.

    ``noise`` is uniform in ``[0, 1)``, broadcastable to ``x`` (a noise shape);
    TensorFlow's ``stateless_dropout`` (Keras' dropout) keeps the same elements
    for the same uniform draws.
    """
    keep = tf.cast(noise >= rate, x.dtype) * (1.0 / (1.0 - rate))
    return _scale_by(x, keep)


def batch_norm(
    x: tf.Tensor,
    gamma: tf.Tensor | None,
    beta: tf.Tensor | None,
    mask: tf.Tensor,
    epsilon: float,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Training-mode batch normalization over the last axis of a static ``x``.

    The mean and (biased) variance are over every axis but the last, real rows
    only (``mask: [B]``, 1 real, 0 padding); padding rows get no gradient.

    Returns
    -------
    (y, mean, variance)
        The normalized output and the batch statistics (no gradient through
        the statistics themselves: their effect is inside ``y``'s gradient).
    """
    axes = list(range(len(x.shape) - 1))
    m = tf.reshape(mask, [-1] + [1] * (len(x.shape) - 1))
    n = tf.reduce_sum(mask) * float(np.prod(x.shape[1:-1]))
    mean = tf.reduce_sum(x * m, axis=axes) / n
    variance = tf.reduce_sum(tf.square((x - mean) * m), axis=axes) / n
    params = [p for p in (gamma, beta) if p is not None]

    @custom_gradient
    def op(x: tf.Tensor, *params: tf.Tensor) -> tuple[tf.Tensor, Grad]:
        g = params[0] if gamma is not None else None
        off = params[-1] if beta is not None else None
        inv = tf.math.rsqrt(variance + epsilon)
        scaled = inv if g is None else inv * g
        shift = -mean * scaled if off is None else off - mean * scaled
        y = x * scaled + shift  # tf.nn.batch_normalization's order

        def grad(dy: tf.Tensor) -> list[tf.Tensor]:
            x_hat = (x - mean) * inv
            d_mean = tf.reduce_sum(dy * m, axis=axes) / n
            d_cov = tf.reduce_sum(dy * x_hat * m, axis=axes) / n
            dx = (dy - d_mean - x_hat * d_cov) * scaled * m
            grads = [dx]
            if g is not None:
                grads.append(tf.reduce_sum(dy * x_hat * m, axis=axes))
            if off is not None:
                grads.append(tf.reduce_sum(dy * m, axis=axes))
            return grads

        return y, grad

    return op(x, *params), tf.stop_gradient(mean), tf.stop_gradient(variance)


# -- loss -------------------------------------------------------------------------


@custom_gradient
def softmax_cross_entropy(
    logits: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor
) -> tuple[tf.Tensor, Grad]:
    """Weighted mean cross-entropy: ``sum_i w_i CE_i / max(sum_i w_i, 1)``.

    ``weights`` is the padding mask of a fixed-size batch (1 real, 0 padding);
    with all ones this is the plain batch mean. No gradient reaches labels or
    weights.
    """
    ce = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    denom = tf.maximum(tf.reduce_sum(weights), 1.0)
    loss = tf.reduce_sum(ce * weights) / denom

    def grad(dloss: tf.Tensor) -> tuple[tf.Tensor, None, None]:
        scale = tf.expand_dims(weights, 1) * (dloss / denom)
        return (tf.nn.softmax(logits) - labels) * scale, None, None

    return loss, grad
