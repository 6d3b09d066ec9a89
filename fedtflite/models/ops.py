"""Layer ops with hand-written gradients that convert to LiteRT builtins.

TensorFlow's own gradients of these ops are kernels LiteRT has no builtin for
(`Conv2DBackpropFilter`, `Conv2DBackpropInput`, `MaxPoolGrad`, `AvgPoolGrad`,
`ReluGrad`, `TanhGrad`, `SigmoidGrad`, `EluGrad`, `LeakyReluGrad`,
`FusedBatchNormGradV3`, `BroadcastGradientArgs` for dynamic shapes), which would
force the Flex delegate. Each op here states its backward pass with ops that do
convert (`CONV_2D`, `TRANSPOSE_CONV`, `FULLY_CONNECTED`, `AVERAGE_POOL_2D`,
`CONCATENATION`, ...), so a `train` signature built from them runs with
``TFLITE_BUILTINS`` alone. The forward passes are TensorFlow's (and Keras')
own kernels, so the results equal theirs to float rounding (checked in
``tests/test_ops.py`` against native autodiff). No library offers these: this
is the part of the builder fedtflite has to write itself.

Spatial ops (convolution, pooling, batch normalization) need a static shape:
the filter gradient is a convolution that treats the batch as channels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ParamSpec

import numpy as np
import tensorflow as tf

__all__ = [
    "activation",
    "batch_norm",
    "conv2d",
    "dense",
    "dropout",
    "global_avg_pool",
    "max_pool_2x2",
    "pool2d",
    "relu",
    "softmax_cross_entropy",
]

_Grad = Callable[..., Any]
_P = ParamSpec("_P")


def _custom_gradient(
    f: Callable[_P, tuple[tf.Tensor, _Grad]],
) -> Callable[_P, tf.Tensor]:
    """`tf.custom_gradient` with the argument types kept (TensorFlow is untyped)."""
    op: Callable[_P, tf.Tensor] = tf.custom_gradient(f)
    return op


# -- dense -----------------------------------------------------------------------


@_custom_gradient
def _dense(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) -> tuple[tf.Tensor, _Grad]:
    def grad(dy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        dx = tf.matmul(dy, w, transpose_b=True)
        dw = tf.matmul(x, dy, transpose_a=True)
        db = tf.reduce_sum(dy, axis=0)
        return dx, dw, db

    return tf.matmul(x, w) + b, grad


def _keep_activation(y: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """``y`` plus a zero computed from ``w`` at run time, for a bias-free matmul.

    TensorFlow 2.21's converter fuses a ReLU or ReLU6 that follows a bias-free
    ``matmul`` into it, then lowers it to `BATCH_MATMUL`, which has no fused
    activation: the ReLU is silently lost (measured; ``tests/test_ops.py``). An
    `ADD` in between takes the fused activation instead.
    """
    return y + w[0] * 0.0


@_custom_gradient
def _matmul(x: tf.Tensor, w: tf.Tensor) -> tuple[tf.Tensor, _Grad]:
    def grad(dy: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.matmul(dy, w, transpose_b=True), tf.matmul(x, dy, transpose_a=True)

    return _keep_activation(tf.matmul(x, w), w), grad


def dense(x: tf.Tensor, w: tf.Tensor, b: tf.Tensor | None = None) -> tf.Tensor:
    """``x @ w (+ b)`` for ``x: [B, n_in]``, ``w: [n_in, n_out]``, ``b: [n_out]``."""
    return _matmul(x, w) if b is None else _dense(x, w, b)


# -- activations -------------------------------------------------------------------


@_custom_gradient
def relu(x: tf.Tensor) -> tuple[tf.Tensor, _Grad]:
    """``max(x, 0)``; gradient ``dy * [x > 0]`` (0 at 0, as TensorFlow)."""

    def grad(dy: tf.Tensor) -> tf.Tensor:
        return dy * tf.cast(x > 0.0, dy.dtype)

    return tf.maximum(x, 0.0), grad


def _elementwise(
    forward: Callable[[tf.Tensor], tf.Tensor],
    derivative: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
) -> Callable[[tf.Tensor], tf.Tensor]:
    """An element-wise op whose derivative is a function of its input and output."""

    @_custom_gradient
    def op(x: tf.Tensor) -> tuple[tf.Tensor, _Grad]:
        y = forward(x)

        def grad(dy: tf.Tensor) -> tf.Tensor:
            return dy * derivative(x, y)

        return y, grad

    return op


def _softmax(x: tf.Tensor) -> tf.Tensor:
    @_custom_gradient
    def op(x: tf.Tensor) -> tuple[tf.Tensor, _Grad]:
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


# -- windows (convolution and pooling geometry) --------------------------------------


def _window(size: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """``(out, pad_before, pad_after)`` of TensorFlow's ``VALID``/``SAME`` windows."""
    if padding == "valid":
        return (size - k) // s + 1, 0, 0
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


def _to_input(
    du: tf.Tensor, size: tuple[int, int], before: tuple[int, int]
) -> tf.Tensor:
    """A gradient over the windows' span (padded coordinates) back onto the input.

    ``du`` covers padded rows ``[0, hu)``; the input is padded rows
    ``[before, before + size)``: rows the windows never reach get zero.
    """
    _, hu, wu, _ = du.shape
    (h, w), (top, left) = size, before
    bottom, right = max(top + h - hu, 0), max(left + w - wu, 0)
    if bottom or right:
        du = tf.pad(du, [[0, 0], [0, bottom], [0, right], [0, 0]])
    if top or left or du.shape[1] != h or du.shape[2] != w:
        du = du[:, top : top + h, left : left + w, :]
    return du


# -- convolution ------------------------------------------------------------------


_IM2COL_MIN_DEPTH = 256
"""Patch depth ``kh * kw * C_in`` from which a convolution runs as patches @ kernel.

LiteRT's `CONV_2D` with a filter read from a variable (not a constant) runs on
its own kernel, not XNNPACK's; `BATCH_MATMUL` does run on XNNPACK. For deep
patches the patch matrix costs less than it saves (``fedavg-cnn``'s 5x5x32
convolution, depth 800: 12-37 % less time per `train` step, BENCHMARKS.md);
for shallow ones it saves nothing measurable (the ``cnn``'s 5x5x6, depth 150,
keeps `CONV_2D`, and with it the exact float steps its published runs took).
"""


def conv2d(
    x: tf.Tensor,
    kernel: tf.Tensor,
    bias: tf.Tensor | None,
    strides: tuple[int, int],
    padding: str,
) -> tf.Tensor:
    """2-D convolution plus bias, NHWC, any kernel, strides and ``valid``/``same``.

    Shallow patches (``kh * kw * C_in`` below :data:`_IM2COL_MIN_DEPTH`) use
    `CONV_2D` forward and, for the filter gradient, a convolution with the batch
    as channels; deep ones use the patch matrix (im2col) times the kernel, and
    its transpose times the output gradient. The input gradient is always a
    transposed convolution.

    Parameters
    ----------
    x : tf.Tensor
        ``[B, H, W, C_in]`` with every dimension static.
    kernel : tf.Tensor
        ``[kh, kw, C_in, C_out]``.
    bias : tf.Tensor or None
        ``[C_out]``.
    strides : tuple of int
        ``(sh, sw)``.
    padding : str
        ``"valid"`` or ``"same"`` (TensorFlow's split: the extra row below).
    """
    b, h, w, c_in = x.shape
    kh, kw, _, c_out = kernel.shape
    sh, sw = strides
    oh, top, bottom = _window(h, kh, sh, padding)
    ow, left, right = _window(w, kw, sw, padding)
    hu, wu = (oh - 1) * sh + kh, (ow - 1) * sw + kw  # the windows' span, padded
    depth = kh * kw * c_in
    im2col = depth >= _IM2COL_MIN_DEPTH
    params = [kernel] if bias is None else [kernel, bias]

    def padded(x: tf.Tensor) -> tf.Tensor:
        if top or bottom or left or right:
            x = tf.pad(x, [[0, 0], [top, bottom], [left, right], [0, 0]])
        if x.shape[1] != hu or x.shape[2] != wu:
            x = x[:, :hu, :wu, :]
        return x

    @_custom_gradient
    def op(x: tf.Tensor, *params: tf.Tensor) -> tuple[tf.Tensor, _Grad]:
        k = params[0]
        if im2col:  # [B*oh*ow, kh*kw*C_in], (i, j, c) order as the kernel's
            xp = padded(x)
            span_h, span_w = (oh - 1) * sh + 1, (ow - 1) * sw + 1
            patches = [
                xp[:, i : i + span_h : sh, j : j + span_w : sw, :]
                for i in range(kh)
                for j in range(kw)
            ]
            cols = tf.reshape(tf.concat(patches, axis=-1), [-1, depth])
            k2 = tf.reshape(k, [depth, c_out])
            y = tf.matmul(cols, k2)
            if len(params) == 1:
                y = _keep_activation(y, k2)
            y = tf.reshape(y, [-1, oh, ow, c_out])
        else:
            y = tf.nn.conv2d(x, k, strides=[1, sh, sw, 1], padding=padding.upper())
        if len(params) == 2:
            y = y + params[1]

        def grad(dy: tf.Tensor) -> list[tf.Tensor]:
            if im2col:
                dy2 = tf.reshape(dy, [-1, c_out])
                dk = tf.matmul(cols, dy2, transpose_a=True)
                dk = tf.reshape(dk, [kh, kw, c_in, c_out])
            else:
                # dK[i,j,ci,co] = sum_{b,p,q} xp[b, s p + i, s q + j, ci] dy[b,p,q,co]:
                # a VALID conv of xp (batch moved to channels) with dy as the
                # filter (batch as its in-dim), dilated by the stride.
                x_t = tf.transpose(padded(x), [3, 1, 2, 0])  # [C_in, hu, wu, B]
                dy_t = tf.transpose(dy, [1, 2, 0, 3])  # [oh, ow, B, C_out]
                dk = tf.nn.conv2d(x_t, dy_t, 1, "VALID", dilations=[1, sh, sw, 1])
                dk = tf.transpose(dk, [1, 2, 0, 3])
            du = tf.nn.conv2d_transpose(
                dy, k, [b, hu, wu, c_in], strides=[1, sh, sw, 1], padding="VALID"
            )
            grads = [_to_input(du, (h, w), (top, left)), dk]
            if len(params) == 2:
                grads.append(tf.reduce_sum(dy, axis=[0, 1, 2]))
            return grads

        return y, grad

    return op(x, *params)


# -- pooling ------------------------------------------------------------------------


def _upsample(t: tf.Tensor, ph: int, pw: int) -> tf.Tensor:
    """Repeat every pixel of ``[B, h, w, C]`` into a ``ph x pw`` block.

    Last-axis concatenations (each pixel ``pw`` times, then each row ``ph``
    times) with free reshapes between them. Not `tf.broadcast_to` of a 6-D
    reshape: LiteRT runs that with its element-by-element reference kernel,
    which took over half of the cnn's `train` step (3.5 of 6.6 ms);
    `CONCATENATION` is a memcpy.
    """
    _, h, w, c = t.shape
    if pw > 1:
        t = tf.concat([t] * pw, axis=-1)
    t = tf.reshape(t, [-1, h, pw * w * c])
    if ph > 1:
        t = tf.concat([t] * ph, axis=-1)
    return tf.reshape(t, [-1, ph * h, pw * w, c])


def _dilate(t: tf.Tensor, sh: int, sw: int) -> tf.Tensor:
    """Insert ``sh - 1`` zero rows and ``sw - 1`` zero columns between pixels."""
    b, h, w, c = t.shape
    if sw > 1:
        t = tf.concat([t, tf.zeros([b, h, w, (sw - 1) * c], t.dtype)], axis=-1)
        t = tf.reshape(t, [b, h, sw * w, c])[:, :, : (w - 1) * sw + 1, :]
    w = t.shape[2]
    if sh > 1:
        t = tf.reshape(t, [b, h, 1, w * c])
        t = tf.concat([t, tf.zeros([b, h, sh - 1, w * c], t.dtype)], axis=2)
        t = tf.reshape(t, [b, sh * h, w, c])[:, : (h - 1) * sh + 1, :, :]
    return t


def pool2d(
    x: tf.Tensor,
    mode: str,
    pool_size: tuple[int, int],
    strides: tuple[int, int],
    padding: str,
) -> tf.Tensor:
    """Max (``mode="max"``) or average pooling on a static ``[B, H, W, C]``.

    Windows that tile the input (strides equal to the pool, no padding) take a
    fast path; overlapping or padded windows add each window position's share
    back at its offset. A max-pool's gradient is split equally among tied
    maxima of a window (the equality mask divided by the tie count).
    TensorFlow's `MaxPoolGrad` gives it all to one of them instead; ties are
    frequent on Fashion-MNIST's flat background, but there the tied inputs come
    from identical patches, so the weight gradients agree (measured: the
    weights still agree to 1e-5 after 10 steps).
    """
    _, h, w, _ = x.shape
    (ph, pw), (sh, sw) = pool_size, strides
    oh, top, bottom = _window(h, ph, sh, padding)
    ow, left, right = _window(w, pw, sw, padding)
    hu, wu = (oh - 1) * sh + ph, (ow - 1) * sw + pw
    tiles = (sh, sw) == (ph, pw) and not (top or bottom or left or right)
    native = tf.nn.max_pool2d if mode == "max" else tf.nn.avg_pool2d
    if mode == "avg" and (top or bottom or left or right):  # real inputs per window
        rows = np.clip(np.arange(oh) * sh - top + ph, 0, h) - np.clip(
            np.arange(oh) * sh - top, 0, h
        )
        cols = np.clip(np.arange(ow) * sw - left + pw, 0, w) - np.clip(
            np.arange(ow) * sw - left, 0, w
        )
        counts = np.outer(rows, cols).astype(np.float32)[None, :, :, None]
    else:
        counts = np.full((1, 1, 1, 1), ph * pw, np.float32)

    @_custom_gradient
    def op(x: tf.Tensor) -> tuple[tf.Tensor, _Grad]:
        y = native(x, ksize=[ph, pw], strides=[sh, sw], padding=padding.upper())

        def grad(dy: tf.Tensor) -> tf.Tensor:
            fill = x.dtype.min if mode == "max" else 0.0
            xp = x
            if top or bottom or left or right:
                pads = [[0, 0], [top, bottom], [left, right], [0, 0]]
                xp = tf.pad(x, pads, constant_values=fill)
            if xp.shape[1] != hu or xp.shape[2] != wu:
                xp = xp[:, :hu, :wu, :]
            if tiles:
                du = _tiled_grad(xp, y, dy, mode, (ph, pw))
            else:
                share = dy / counts if mode == "avg" else dy
                du = _overlapping_grad(xp, y, share, mode, (ph, pw), (sh, sw))
            return _to_input(du, (h, w), (top, left))

        return y, grad

    return op(x)


def _tiled_grad(
    xp: tf.Tensor, y: tf.Tensor, dy: tf.Tensor, mode: str, pool: tuple[int, int]
) -> tf.Tensor:
    ph, pw = pool
    if mode == "avg":
        return _upsample(dy / float(ph * pw), ph, pw)
    is_max = tf.cast(tf.equal(xp, _upsample(y, ph, pw)), xp.dtype)
    ties = tf.nn.avg_pool2d(is_max, ksize=pool, strides=pool, padding="VALID")
    return is_max * _upsample(dy / (ties * float(ph * pw)), ph, pw)


def _overlapping_grad(
    xp: tf.Tensor,
    y: tf.Tensor,
    g: tf.Tensor,
    mode: str,
    pool: tuple[int, int],
    strides: tuple[int, int],
) -> tf.Tensor:
    """Each window offset ``(i, j)`` sends its share to ``(i + s p, j + s q)``."""
    (ph, pw), (sh, sw) = pool, strides
    _, oh, ow, _ = y.shape
    _, hu, wu, _ = xp.shape
    span_h, span_w = (oh - 1) * sh + 1, (ow - 1) * sw + 1
    offsets = [(i, j) for i in range(ph) for j in range(pw)]
    if mode == "max":
        hits = [
            tf.cast(
                tf.equal(xp[:, i : i + span_h : sh, j : j + span_w : sw, :], y),
                xp.dtype,
            )
            for i, j in offsets
        ]
        g = g / tf.add_n(hits)
        shares = [hit * g for hit in hits]
    else:
        shares = [g] * len(offsets)
    placed = []
    for (i, j), share in zip(offsets, shares, strict=True):
        spread = _dilate(share, sh, sw)
        pads = [[0, 0], [i, hu - i - span_h], [j, wu - j - span_w], [0, 0]]
        placed.append(tf.pad(spread, pads))
    return tf.add_n(placed)


def max_pool_2x2(x: tf.Tensor) -> tf.Tensor:
    """2x2 max-pool, stride 2, on a static ``[B, H, W, C]`` (see :func:`pool2d`)."""
    return pool2d(x, "max", (2, 2), (2, 2), "valid")


@_custom_gradient
def global_avg_pool(x: tf.Tensor) -> tuple[tf.Tensor, _Grad]:
    """Mean over height and width of a static ``[B, H, W, C]``: ``[B, C]``."""
    _, h, w, c = x.shape

    def grad(dy: tf.Tensor) -> tf.Tensor:
        share = np.full((1, h, w, 1), 1.0 / (h * w), np.float32)
        return tf.reshape(dy, [-1, 1, 1, c]) * share

    return tf.reduce_mean(x, axis=[1, 2]), grad


# -- dropout and batch normalization --------------------------------------------------


@_custom_gradient
def _scale_by(x: tf.Tensor, keep: tf.Tensor) -> tuple[tf.Tensor, _Grad]:
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

    @_custom_gradient
    def op(x: tf.Tensor, *params: tf.Tensor) -> tuple[tf.Tensor, _Grad]:
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
