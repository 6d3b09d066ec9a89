"""The hand-written gradients of `fedtflite.models.ops`/`spatial_ops` against TF's.

Each op's forward pass and its gradient for a random upstream gradient are
compared with TensorFlow's native op differentiated by `tf.GradientTape`, on
shapes that exercise every path: strides, ``same`` padding, overlapping and
non-tiling windows, rows the windows never reach. No conversion: fast.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf

from fedtflite.models import ops, spatial_ops

RNG = np.random.default_rng(0)


def _random(*shape: int) -> tf.Tensor:
    return tf.constant(RNG.standard_normal(shape).astype(np.float32))


def _compare(
    ours: Callable[..., tf.Tensor],
    native: Callable[..., tf.Tensor],
    inputs: Sequence[tf.Tensor],
    atol: float = 1e-5,
) -> None:
    """Same output, and the same gradients for the same upstream gradient."""
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(inputs)
        y_ours, y_native = ours(*inputs), native(*inputs)
        upstream = _random(*y_native.shape)
        loss_ours = tf.reduce_sum(y_ours * upstream)
        loss_native = tf.reduce_sum(y_native * upstream)
    np.testing.assert_allclose(y_ours, y_native, atol=atol)
    for g_ours, g_native in zip(
        tape.gradient(loss_ours, inputs),
        tape.gradient(loss_native, inputs),
        strict=True,
    ):
        if g_native is None:  # an input the op does not use here
            assert g_ours is None
            continue
        np.testing.assert_allclose(g_ours, g_native, atol=atol * 10)


@pytest.mark.parametrize(
    ("kernel", "strides", "padding", "size"),
    [
        ((3, 3), (1, 1), "valid", 8),
        ((5, 3), (2, 2), "same", 28),
        ((3, 3), (2, 2), "valid", 10),  # the last row: never reached
        ((4, 4), (3, 1), "same", 11),
        ((1, 1), (2, 2), "valid", 7),
    ],
)
@pytest.mark.parametrize("c_in", [3, 32])  # 32: deep patches, the im2col form
@pytest.mark.parametrize("bias", [True, False])
def test_conv2d(
    kernel: tuple[int, int],
    strides: tuple[int, int],
    padding: str,
    size: int,
    c_in: int,
    bias: bool,
) -> None:
    x, k, b = _random(2, size, size + 1, c_in), _random(*kernel, c_in, 4), _random(4)

    def native(x: tf.Tensor, k: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        y = tf.nn.conv2d(x, k, strides, padding.upper())
        return y + b if bias else y

    def ours(x: tf.Tensor, k: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        return spatial_ops.conv2d(x, k, b if bias else None, strides, padding)

    _compare(ours, native, [x, k, b], atol=1e-4)


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize(
    ("pool", "strides", "padding", "size"),
    [
        (2, 2, "valid", 8),  # tiles
        (2, 2, "valid", 5),  # tiles, the last row and column unused
        (3, 2, "valid", 13),  # overlapping
        (3, 2, "same", 13),
        (2, 2, "same", 7),  # padded
        (4, 4, "same", 26),
        (3, 1, "same", 6),
    ],
)
def test_pool2d(mode: str, pool: int, strides: int, padding: str, size: int) -> None:
    x = _random(2, size, size + 1, 3)
    native = tf.nn.max_pool2d if mode == "max" else tf.nn.avg_pool2d
    _compare(
        lambda x: spatial_ops.pool2d(
            x, mode, (pool, pool), (strides, strides), padding
        ),
        lambda x: native(x, pool, strides, padding.upper()),
        [x],
    )


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize(
    ("pool", "strides", "padding"),
    [
        ((3, 2), (2, 1), "valid"),  # overlapping rows only
        ((2, 2), (3, 3), "valid"),  # windows skip pixels
        ((3, 3), (2, 3), "same"),
    ],
)
def test_pool2d_uneven(
    mode: str, pool: tuple[int, int], strides: tuple[int, int], padding: str
) -> None:
    x = _random(2, 11, 12, 3)
    native = tf.nn.max_pool2d if mode == "max" else tf.nn.avg_pool2d
    _compare(
        lambda x: spatial_ops.pool2d(x, mode, pool, strides, padding),
        lambda x: native(x, pool, strides, padding.upper()),
        [x],
    )


def test_max_pool_splits_ties_equally() -> None:
    x = tf.constant(np.ones((1, 2, 2, 1), np.float32))
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = spatial_ops.pool2d(x, "max", (2, 2), (2, 2), "valid")
    np.testing.assert_array_equal(tape.gradient(y, x), np.full((1, 2, 2, 1), 0.25))


@pytest.mark.parametrize(
    ("function", "alpha", "native"),
    [
        ("relu", 0.0, tf.nn.relu),
        ("relu6", 0.0, tf.nn.relu6),
        ("tanh", 0.0, tf.tanh),
        ("sigmoid", 0.0, tf.sigmoid),
        ("silu", 0.0, tf.nn.silu),
        ("softmax", 0.0, tf.nn.softmax),
        ("elu", 1.0, tf.nn.elu),
        ("elu", 0.5, lambda x: tf.where(x > 0, x, 0.5 * (tf.exp(x) - 1))),
        ("leaky_relu", 0.2, lambda x: tf.nn.leaky_relu(x, 0.2)),
    ],
)
def test_activation(
    function: str, alpha: float, native: Callable[[tf.Tensor], tf.Tensor]
) -> None:
    x = _random(4, 9) * 4.0
    _compare(lambda x: ops.activation(x, function, alpha), native, [x])


def test_dense_with_and_without_bias() -> None:
    x, w, b = _random(5, 7), _random(7, 3), _random(3)
    _compare(ops.dense, lambda x, w, b: x @ w + b, [x, w, b])
    _compare(lambda x, w: ops.dense(x, w), lambda x, w: x @ w, [x, w])


def test_global_average_pool() -> None:
    _compare(
        spatial_ops.global_avg_pool,
        lambda x: tf.reduce_mean(x, [1, 2]),
        [_random(2, 5, 6, 3)],
    )


def test_dropout_keeps_where_the_noise_reaches_the_rate() -> None:
    x = _random(3, 4)
    noise = tf.constant([[0.1, 0.5, 0.7, 0.3]] * 3)  # broadcast over the batch
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = ops.dropout(x, noise, 0.5)
    keep = np.array([0.0, 2.0, 2.0, 0.0], np.float32)
    np.testing.assert_allclose(y, x.numpy() * keep)
    np.testing.assert_allclose(tape.gradient(y, x), np.broadcast_to(keep, (3, 4)))


@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 3, 2)])
@pytest.mark.parametrize("affine", [True, False])
def test_batch_norm_matches_moments_and_normalization(
    shape: tuple[int, ...], affine: bool
) -> None:
    channels = shape[-1]
    gamma, beta = _random(channels), _random(channels)
    axes = list(range(len(shape) - 1))

    def native(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
        mean, variance = tf.nn.moments(x, axes)
        g, b = (gamma, beta) if affine else (None, None)
        return tf.nn.batch_normalization(x, mean, variance, b, g, 1e-3)

    def ours(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor) -> tf.Tensor:
        g, b = (gamma, beta) if affine else (None, None)
        ones = tf.ones([shape[0]])
        return ops.batch_norm(x, g, b, ones, 1e-3)[0]

    _compare(ours, native, [_random(*shape), gamma, beta], atol=1e-4)


def test_batch_norm_ignores_padding_rows() -> None:
    x = _random(6, 4)
    mask = tf.constant([1, 1, 1, 1, 0, 0], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y, mean, variance = ops.batch_norm(x, None, None, mask, 1e-3)
        loss = tf.reduce_sum(y[:4] * _random(4, 4))
    real_mean, real_variance = tf.nn.moments(x[:4], [0])
    np.testing.assert_allclose(mean, real_mean, atol=1e-6)
    np.testing.assert_allclose(variance, real_variance, atol=1e-6)
    np.testing.assert_array_equal(tape.gradient(loss, x)[4:], np.zeros((2, 4)))


@pytest.mark.parametrize("function", ["relu", "relu6"])
@pytest.mark.parametrize("layer", ["dense", "deep conv"])
def test_relu_after_a_bias_free_matmul_survives_conversion(
    function: str, layer: str
) -> None:
    """TensorFlow 2.21's converter drops a ReLU it fuses into `BATCH_MATMUL`."""
    from ai_edge_litert.interpreter import Interpreter

    if layer == "dense":
        shapes = [(16, 40), (40, 12)]

        def fn(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
            return ops.activation(ops.dense(x, w), function)
    else:
        shapes = [(4, 9, 9, 32), (3, 3, 32, 8)]  # depth 288: the im2col form

        def fn(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
            return ops.activation(
                spatial_ops.conv2d(x, w, None, (1, 1), "valid"), function
            )

    specs = [tf.TensorSpec(s, tf.float32) for s in shapes]
    concrete = tf.function(fn, input_signature=specs).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], None)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    lite = Interpreter(model_content=converter.convert(), num_threads=1)
    lite.allocate_tensors()
    args = [_random(*s).numpy() * 3.0 for s in shapes]
    for detail, value in zip(lite.get_input_details(), args, strict=True):
        lite.set_tensor(detail["index"], value)
    lite.invoke()
    out = lite.get_tensor(lite.get_output_details()[0]["index"])
    expected = fn(*[tf.constant(a) for a in args])
    assert float(np.min(out)) >= 0.0
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-4)
