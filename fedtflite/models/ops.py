"""Layer ops with hand-written gradients that convert to LiteRT builtins.

TensorFlow's own gradients of these ops are kernels LiteRT has no builtin for
(`Conv2DBackpropFilter`, `MaxPoolGrad`, `ReluGrad`, `BiasAddGrad`,
`BroadcastGradientArgs` for dynamic shapes), which would force the Flex delegate.
Each op here states its backward pass with ops that do convert (`CONV_2D`,
`TRANSPOSE_CONV`, `FULLY_CONNECTED`, `AVERAGE_POOL_2D`, ...), so a `train`
signature built from them runs with ``TFLITE_BUILTINS`` alone. The forward pass
uses TensorFlow's native kernels, so the results equal TensorFlow's to float
rounding (checked in ``tests/test_models.py`` against native autodiff).

Convolutions need a static batch size: the filter gradient is a convolution that
treats the batch as channels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec

import tensorflow as tf

__all__ = ["conv2d_valid", "dense", "max_pool_2x2", "relu", "softmax_cross_entropy"]

_Grad = Callable[..., Any]
_P = ParamSpec("_P")


def _custom_gradient(
    f: Callable[_P, tuple[tf.Tensor, _Grad]],
) -> Callable[_P, tf.Tensor]:
    """`tf.custom_gradient` with the argument types kept (TensorFlow is untyped)."""
    op: Callable[_P, tf.Tensor] = tf.custom_gradient(f)
    return op


@_custom_gradient
def dense(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) -> tuple[tf.Tensor, _Grad]:
    """``x @ w + b`` for ``x: [B, n_in]``, ``w: [n_in, n_out]``, ``b: [n_out]``."""

    def grad(dy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        dx = tf.matmul(dy, w, transpose_b=True)
        dw = tf.matmul(x, dy, transpose_a=True)
        db = tf.reduce_sum(dy, axis=0)
        return dx, dw, db

    return tf.matmul(x, w) + b, grad


@_custom_gradient
def relu(x: tf.Tensor) -> tuple[tf.Tensor, _Grad]:
    """``max(x, 0)``; gradient ``dy * [x > 0]`` (0 at 0, as TensorFlow)."""

    def grad(dy: tf.Tensor) -> tf.Tensor:
        return dy * tf.cast(x > 0.0, dy.dtype)

    return tf.maximum(x, 0.0), grad


@_custom_gradient
def conv2d_valid(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) -> tuple[tf.Tensor, _Grad]:
    """Stride-1 'VALID' convolution plus bias, NHWC, with a static batch.

    Parameters
    ----------
    x : tf.Tensor
        ``[B, H, W, C_in]`` with every dimension static.
    w : tf.Tensor
        ``[k, k, C_in, C_out]``.
    b : tf.Tensor
        ``[C_out]``.
    """
    y = tf.nn.conv2d(x, w, strides=1, padding="VALID") + b

    def grad(dy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        # dW[i,j,ci,co] = sum_{b,h,w} x[b,h+i,w+j,ci] dy[b,h,w,co]: a VALID conv of
        # x (batch moved to channels) with dy as the filter (batch as its in-dim).
        x_t = tf.transpose(x, [3, 1, 2, 0])  # [C_in, H, W, B]
        dy_t = tf.transpose(dy, [1, 2, 0, 3])  # [Ho, Wo, B, C_out]
        dw = tf.transpose(tf.nn.conv2d(x_t, dy_t, 1, "VALID"), [1, 2, 0, 3])
        dx = tf.nn.conv2d_transpose(dy, w, tf.shape(x), strides=1, padding="VALID")
        db = tf.reduce_sum(dy, axis=[0, 1, 2])
        return dx, dw, db

    return y, grad


def _upsample_2x2(t: tf.Tensor) -> tf.Tensor:
    """Repeat every pixel of ``[B, h, w, C]`` into a 2x2 block: ``[B, 2h, 2w, C]``.

    Two last-axis concatenations (each pixel twice, then each row twice) with
    free reshapes between them. Not `tf.broadcast_to` of a 6-D reshape: LiteRT
    runs that with its element-by-element reference kernel, which took over half
    of the cnn's `train` step (3.5 of 6.6 ms); `CONCATENATION` is a memcpy.
    """
    _, h, w, c = t.shape
    t = tf.reshape(tf.concat([t, t], axis=-1), [-1, h, 2 * w * c])
    return tf.reshape(tf.concat([t, t], axis=-1), [-1, 2 * h, 2 * w, c])


@_custom_gradient
def max_pool_2x2(x: tf.Tensor) -> tuple[tf.Tensor, _Grad]:
    """2x2 max-pool, stride 2, on a static ``[B, H, W, C]`` with even H and W.

    The gradient is split equally among tied maxima of a window (the equality
    mask divided by the tie count). TensorFlow's `MaxPoolGrad` gives it all to
    the first maximum instead; ties are frequent on Fashion-MNIST's flat
    background, but there the incoming gradient is the same for every tied
    input after ReLU only when it is zero, so the two differ only where ties
    meet non-zero gradients (measured: rare, the weights still agree to 1e-5).
    """
    y = tf.nn.max_pool2d(x, ksize=2, strides=2, padding="VALID")

    def grad(dy: tf.Tensor) -> tf.Tensor:
        is_max = tf.cast(tf.equal(x, _upsample_2x2(y)), x.dtype)
        ties = tf.nn.avg_pool2d(is_max, ksize=2, strides=2, padding="VALID") * 4.0
        return is_max * _upsample_2x2(dy / ties)

    return y, grad


@_custom_gradient
def softmax_cross_entropy(
    logits: tf.Tensor, labels: tf.Tensor, weights: tf.Tensor
) -> tuple[tf.Tensor, _Grad]:
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
