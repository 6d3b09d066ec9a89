"""Time one `train` step in LiteRT against the same step in native TensorFlow.

For each architecture, at a batch of 32 with SGD (lr 0.05, momentum 0.9):

* LiteRT: the built `.tflite`'s ``train`` signature, one interpreter thread (the
  clients run one interpreter per process, one process per core);
* TensorFlow: the same network and update with native ops and native autodiff
  (`tf.GradientTape`) inside a `tf.function` (no XLA);
* the cost of a client's model round: an interpreter from bytes (with its
  signature runners) and a ``parameters`` + ``restore`` round trip.

The two steps are timed in alternating rounds, so both see the same machine
state; every figure is the median over all timed calls. Run::

    python benchmarks/train_step.py [--rounds 20] [--steps 50] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from fedtflite.models.architectures import ARCHITECTURES, init_weights
from fedtflite.models.build import build_model
from fedtflite.models.specs import ModelSpec, OptimizerSpec

BATCH = 32
OPTIMIZER = OptimizerSpec("sgd", learning_rate=0.05, momentum=0.9)
SIGNATURES = ("train", "infer", "parameters", "restore", "set_learning_rate")


def _native_logits(arch: str, w: Sequence[tf.Variable], x: tf.Tensor) -> tf.Tensor:
    if arch == "mlp":
        h = tf.nn.relu(tf.matmul(tf.reshape(x, [-1, 784]), w[0]) + w[1])
        return tf.matmul(h, w[2]) + w[3]
    h = tf.expand_dims(x, -1)
    for k, b in ((w[0], w[1]), (w[2], w[3])):
        h = tf.nn.relu(tf.nn.conv2d(h, k, strides=1, padding="VALID") + b)
        h = tf.nn.max_pool2d(h, ksize=2, strides=2, padding="VALID")
    h = tf.reshape(h, [-1, 256])
    h = tf.nn.relu(tf.matmul(h, w[4]) + w[5])
    h = tf.nn.relu(tf.matmul(h, w[6]) + w[7])
    return tf.matmul(h, w[8]) + w[9]


def _native_step(arch: str) -> Callable[[np.ndarray, np.ndarray], float]:
    """TensorFlow's step: native kernels and autodiff, momentum SGD as the `.tflite`.

    Raw `tf.nn` ops and a hand-written update: the fastest TensorFlow form
    (stock Keras layers and ``keras.optimizers.SGD`` measured ~10% slower).
    """
    w = [tf.Variable(a) for a in init_weights(ARCHITECTURES[arch], seed=0)]
    buf = [tf.Variable(tf.zeros_like(v)) for v in w]
    lr, momentum = OPTIMIZER.learning_rate, OPTIMIZER.momentum

    @tf.function(jit_compile=False)
    def step(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = _native_logits(arch, w, x)
            loss = tf.reduce_mean(
                tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits)
            )
        for v, b, g in zip(w, buf, tape.gradient(loss, w), strict=True):
            b.assign(momentum * b + g)
            v.assign_sub(lr * b)
        return loss

    return lambda x, y: float(step(x, y).numpy())


def _time_ms(fn: Callable[[], object], n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _measure(arch: str, rounds: int, steps: int, threads: int) -> dict[str, float]:
    model = build_model(ModelSpec(arch, OPTIMIZER))
    interpreter = Interpreter(model_content=model, num_threads=threads)
    train = interpreter.get_signature_runner("train")
    parameters = interpreter.get_signature_runner("parameters")
    restore = interpreter.get_signature_runner("restore")
    tf_step = _native_step(arch)

    rng = np.random.default_rng(0)
    x = rng.random((BATCH, 28, 28), dtype=np.float32)
    y = np.eye(10, dtype=np.float32)[rng.integers(0, 10, BATCH)]
    inputs = {"x": x, "y": y}
    if "mask" in train.get_input_details():
        inputs["mask"] = np.ones(BATCH, np.float32)

    def lite_step() -> None:
        train(**inputs)

    def round_trip() -> None:
        restore(**parameters())

    def create() -> None:
        fresh = Interpreter(model_content=model, num_threads=threads)
        for name in SIGNATURES:
            fresh.get_signature_runner(name)

    for _ in range(20):  # warm-up: tracing, allocation, caches
        lite_step()
        tf_step(x, y)
    lite: list[float] = []
    native: list[float] = []
    for _ in range(rounds):
        lite += _time_ms(lite_step, steps)
        native += _time_ms(lambda: tf_step(x, y), steps)
    return {
        "lite": float(np.median(lite)),
        "tf": float(np.median(native)),
        "create": float(np.median(_time_ms(create, 20))),
        "round_trip": float(np.median(_time_ms(round_trip, 200))),
        "kib": len(model) / 1024,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20, help="alternations")
    parser.add_argument("--steps", type=int, default=50, help="steps per round")
    parser.add_argument("--threads", type=int, default=1, help="LiteRT threads")
    args = parser.parse_args(argv)
    rows = {
        arch: _measure(arch, args.rounds, args.steps, args.threads)
        for arch in ("mlp", "cnn")
    }
    print(
        f"batch {BATCH}, SGD momentum, LiteRT num_threads={args.threads}, "
        f"median of {args.rounds}x{args.steps} steps\n"
    )
    print(
        "| model | LiteRT train step (ms) | TF tf.function step (ms) | LiteRT / TF "
        "| interpreter from bytes (ms) | parameters + restore (ms) | .tflite (KiB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for arch, r in rows.items():
        print(
            f"| {arch} | {r['lite']:.3f} | {r['tf']:.3f} | {r['lite'] / r['tf']:.2f} "
            f"| {r['create']:.2f} | {r['round_trip']:.3f} | {r['kib']:.0f} |"
        )


if __name__ == "__main__":
    main()
