"""Convolution and pooling with hand-written gradients that convert to LiteRT builtins.

TensorFlow's own gradients of these ops are kernels LiteRT has no builtin for
(`Conv2DBackpropFilter`, `Conv2DBackpropInput`, `MaxPoolGrad`, `AvgPoolGrad`),
which would force the Flex delegate; here each backward pass is stated with ops
that do convert (`CONV_2D`, `TRANSPOSE_CONV`, `BATCH_MATMUL`, `AVERAGE_POOL_2D`,
`CONCATENATION`, `PAD`, ...). The forward passes are TensorFlow's (and Keras')
own kernels, so results equal theirs to float rounding (``tests/test_ops.py``).

Every op here needs a static ``[B, H, W, C]``: the filter gradient is a
convolution that treats the batch as channels, and window geometry is unrolled.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from fedtflite.models.ops import Grad, custom_gradient, keep_activation

__all__ = ["conv2d", "global_avg_pool", "max_pool_2x2", "pool2d"]


# -- windows (convolution and pooling geometry) --------------------------------------


def _window(size: int, k: int, s: int, padding: str) -> tuple[int, int, int]:
    """``(out, pad_before, pad_after)`` of TensorFlow's ``VALID``/``SAME`` windows."""
    if padding == "valid":
        return (size - k) // s + 1, 0, 0
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return out, total // 2, total - total // 2


def _windows_at(
    x: tf.Tensor,
    offset: tuple[int, int],
    out: tuple[int, int],
    strides: tuple[int, int],
) -> tf.Tensor:
    """``x[:, i : i + sh (oh - 1) + 1 : sh, j : ... : sw, :]``, without a step.

    The input of every window at offset ``(i, j)``: ``[B, oh, ow, C]``. LiteRT's
    `STRIDED_SLICE` with a step above 1 copies element by element (nine of them
    on ``[32,26,26,16]``: 5.2 ms); slicing whole row groups and channel groups
    off reshaped tensors copies contiguous runs (2.6 ms). ``x`` must hold
    ``sh`` rows and ``sw`` columns beyond the last window (callers pad once).
    """
    (i, j), (oh, ow), (sh, sw) = offset, out, strides
    if (sh, sw) == (1, 1):
        return x[:, i : i + oh, j : j + ow, :]
    _, _, w, c = x.shape
    t = x[:, i : i + sh * oh, :, :]
    if sh > 1:  # the first row of every group of sh
        t = tf.reshape(
            tf.reshape(t, [-1, oh, sh * w * c])[:, :, : w * c], [-1, oh, w, c]
        )
    t = t[:, :, j : j + sw * ow, :]
    if sw > 1:  # the first column of every group of sw
        t = tf.reshape(t, [-1, oh, ow, sw * c])[:, :, :, :c]
    return t


def _extend(x: tf.Tensor, strides: tuple[int, int]) -> tf.Tensor:
    """``x`` with ``sh`` rows and ``sw`` columns of zeros appended (for
    :func:`_windows_at`), or ``x`` itself for stride 1."""
    sh, sw = strides
    if (sh, sw) == (1, 1):
        return x
    return tf.pad(x, [[0, 0], [0, sh], [0, sw], [0, 0]])


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

    @custom_gradient
    def op(x: tf.Tensor, *params: tf.Tensor) -> tuple[tf.Tensor, Grad]:
        k = params[0]
        if im2col:  # [B*oh*ow, kh*kw*C_in], (i, j, c) order as the kernel's
            xp = padded(x)
            xe = _extend(xp, (sh, sw))
            patches = [
                _windows_at(xe, (i, j), (oh, ow), (sh, sw))
                for i in range(kh)
                for j in range(kw)
            ]
            cols = tf.reshape(tf.concat(patches, axis=-1), [-1, depth])
            k2 = tf.reshape(k, [depth, c_out])
            y = tf.matmul(cols, k2)
            if len(params) == 1:
                y = keep_activation(y, k2)
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

    @custom_gradient
    def op(x: tf.Tensor) -> tuple[tf.Tensor, Grad]:
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
    """Each window offset ``(i, j)`` sends its share to ``(s p + i, s q + j)``.

    Writing ``i = s a + r``, the share lands on row ``s (p + a) + r``: for each
    residue ``r`` the shares of offsets ``s a + r`` add up after a shift of
    ``a`` rows (a `PAD` of a pooled-size tensor), and the residues interleave
    into the input's rows by concatenation and reshape (memory copies). A
    spread-and-pad per offset took 41 ms for a 3x3, stride-2 max-pool of
    ``[32,26,26,16]``; gathering through index tables 18 ms.
    """
    (ph, pw), (sh, sw) = pool, strides
    _, oh, ow, c = y.shape
    _, hu, wu, _ = xp.shape
    offsets = [(i, j) for i in range(ph) for j in range(pw)]
    if mode == "max":
        xe = _extend(xp, (sh, sw))
        hits = {
            ij: tf.cast(tf.equal(_windows_at(xe, ij, (oh, ow), (sh, sw)), y), xp.dtype)
            for ij in offsets
        }
        g = g / tf.add_n(list(hits.values()))
        shares = {ij: hit * g for ij, hit in hits.items()}
    else:
        shares = dict.fromkeys(offsets, g)
    ah, aw = -(-ph // sh), -(-pw // sw)  # windows reaching a row / a column
    rows, cols = oh + ah - 1, ow + aw - 1
    residues = []
    for rh in range(sh):
        line = []
        for rw in range(sw):
            terms = [
                tf.pad(
                    shares[a * sh + rh, b * sw + rw],
                    [[0, 0], [a, ah - 1 - a], [b, aw - 1 - b], [0, 0]],
                )
                for a in range(ah)
                for b in range(aw)
                if a * sh + rh < ph and b * sw + rw < pw
            ]
            line.append(tf.add_n(terms) if terms else None)
        residues.append(line)
    blank = tf.zeros_like(tf.pad(g, [[0, 0], [0, ah - 1], [0, aw - 1], [0, 0]]))
    row_parts = []
    for line in residues:  # interleave the columns of one row residue
        parts = [blank if t is None else t for t in line]
        row = tf.concat(parts, axis=-1) if sw > 1 else parts[0]
        row_parts.append(tf.reshape(row, [-1, rows, 1, cols * sw * c]))
    out = tf.concat(row_parts, axis=2) if sh > 1 else row_parts[0]
    out = tf.reshape(out, [-1, rows * sh, cols * sw, c])
    return out[:, :hu, :wu, :]


def max_pool_2x2(x: tf.Tensor) -> tf.Tensor:
    """2x2 max-pool, stride 2, on a static ``[B, H, W, C]`` (see :func:`pool2d`)."""
    return pool2d(x, "max", (2, 2), (2, 2), "valid")


@custom_gradient
def global_avg_pool(x: tf.Tensor) -> tuple[tf.Tensor, Grad]:
    """Mean over height and width of a static ``[B, H, W, C]``: ``[B, C]``."""
    _, h, w, c = x.shape

    def grad(dy: tf.Tensor) -> tf.Tensor:
        share = np.full((1, h, w, 1), 1.0 / (h * w), np.float32)
        return tf.reshape(dy, [-1, 1, 1, c]) * share

    return tf.reduce_mean(x, axis=[1, 2]), grad
