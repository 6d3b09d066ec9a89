"""Where the `cnn`'s `train` step spends its time: each convolution of the step
and each pooling gradient as its own LiteRT model; prints a markdown table.

LiteRT's Python API has no per-op profiler, so every piece of the step
(:mod:`fedtflite.models.spatial_ops`, batch 64, NIID-Bench's CNN shapes) is converted
alone, with its filter as an input as in the `train` graph (where filters are
read from variables), and timed on one thread. Two alternatives that convert to
builtins are timed beside the forms the model uses: the first convolution as a
depthwise convolution (one input channel), and the input gradient as a "full"
convolution of the zero-padded gradient with the flipped filter. Finally the
whole `train` signature of the `cnn` is timed for comparison.

Usage: ``python benchmarks/cnn_ops.py [--repeats N]`` (needs TensorFlow).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from fedtflite.models import ops, spatial_ops
from fedtflite.models.build import build_model
from fedtflite.models.specs import ModelSpec, OptimizerSpec

B = 64


def _convert(fn: Callable[..., Any], shapes: list[tuple[int, ...]]) -> bytes:
    specs = [tf.TensorSpec(s, tf.float32) for s in shapes]
    concrete = tf.function(fn, input_signature=specs).get_concrete_function()
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], None)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    result: bytes = converter.convert()
    return result


def _time_invoke(interpreter: Interpreter, repeats: int, n: int = 100) -> float:
    for _ in range(10):
        interpreter.invoke()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(n):
            interpreter.invoke()
        best = min(best, (time.perf_counter() - start) / n)
    return 1e3 * best


def _time_piece(
    fn: Callable[..., Any], shapes: list[tuple[int, ...]], repeats: int
) -> float:
    interpreter = Interpreter(model_content=_convert(fn, shapes), num_threads=1)
    interpreter.allocate_tensors()
    rng = np.random.default_rng(0)
    for d in interpreter.get_input_details():
        interpreter.set_tensor(d["index"], rng.random(d["shape"], np.float32))
    return _time_invoke(interpreter, repeats)


def _filter_grad(x: tf.Tensor, dy: tf.Tensor) -> tf.Tensor:
    x_t = tf.transpose(x, [3, 1, 2, 0])
    dy_t = tf.transpose(dy, [1, 2, 0, 3])
    return tf.transpose(tf.nn.conv2d(x_t, dy_t, 1, "VALID"), [1, 2, 0, 3])


def _input_grad_full(dy: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    k = w.shape[0] - 1
    flipped = tf.transpose(tf.reverse(w, [0, 1]), [0, 1, 3, 2])
    padded = tf.pad(dy, [[0, 0], [k, k], [k, k], [0, 0]])
    return tf.nn.conv2d(padded, flipped, 1, "VALID")


def _pool_relu_grad(x: tf.Tensor) -> tf.Tensor:
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = spatial_ops.max_pool_2x2(ops.relu(x))
    return tape.gradient(y, x)


def _train_step_ms(repeats: int) -> float:
    optimizer = OptimizerSpec("sgd", 0.01, momentum=0.9, weight_decay=1e-5)
    spec = ModelSpec("cnn", optimizer, batch_size=B)
    interpreter = Interpreter(model_content=build_model(spec), num_threads=1)
    train = interpreter.get_signature_runner("train")
    rng = np.random.default_rng(0)
    feed = {
        "x": rng.random((B, 28, 28), np.float32),
        "y": np.eye(10, dtype=np.float32)[rng.integers(0, 10, B)],
        "mask": np.ones(B, np.float32),
    }
    for _ in range(10):
        train(**feed)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(100):
            train(**feed)
        best = min(best, (time.perf_counter() - start) / 100)
    return 1e3 * best


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5, help="best of N x 100 calls")
    args = p.parse_args()
    r = args.repeats
    conv = lambda x, w: tf.nn.conv2d(x, w, 1, "VALID")  # noqa: E731
    depthwise = lambda x, w: tf.nn.depthwise_conv2d(x, w, [1, 1, 1, 1], "VALID")  # noqa: E731
    transpose = lambda dy, w: tf.nn.conv2d_transpose(dy, w, [B, 12, 12, 6], 1, "VALID")  # noqa: E731
    rows = [
        ("conv1 forward (conv2d)", "used", conv, [(B, 28, 28, 1), (5, 5, 1, 6)]),
        (
            "conv1 forward (depthwise)",
            "alternative",
            depthwise,
            [(B, 28, 28, 1), (5, 5, 1, 6)],
        ),
        ("conv2 forward", "used", conv, [(B, 12, 12, 6), (5, 5, 6, 16)]),
        (
            "conv1 filter gradient",
            "used",
            _filter_grad,
            [(B, 28, 28, 1), (B, 24, 24, 6)],
        ),
        (
            "conv2 filter gradient",
            "used",
            _filter_grad,
            [(B, 12, 12, 6), (B, 8, 8, 16)],
        ),
        (
            "conv2 input gradient (transpose conv)",
            "used",
            transpose,
            [(B, 8, 8, 16), (5, 5, 6, 16)],
        ),
        (
            "conv2 input gradient (full conv)",
            "alternative",
            _input_grad_full,
            [(B, 8, 8, 16), (5, 5, 6, 16)],
        ),
        ("pool1 + ReLU gradient", "used", _pool_relu_grad, [(B, 24, 24, 6)]),
        ("pool2 + ReLU gradient", "used", _pool_relu_grad, [(B, 8, 8, 16)]),
    ]
    print(f"batch {B}, one thread, best of {r} x 100 calls\n")
    print("| piece | in the model | ms |")
    print("|---|---|---:|")
    used = 0.0
    for name, role, fn, shapes in rows:
        ms = _time_piece(fn, shapes, r)
        used += ms if role == "used" else 0.0
        print(f"| {name} | {role} | {ms:.2f} |")
    print(f"| sum of the pieces the model uses | | {used:.2f} |")
    step = _train_step_ms(r)
    print(f"| whole `train` step (SGD, momentum, weight decay) | | {step:.2f} |")


if __name__ == "__main__":
    main()
