"""Time one `train` step in LiteRT against the same Keras model's step in TensorFlow.

One row per supported layer type (a small Keras model featuring it) and per
named architecture, at a batch of 32, each model with its own compiled
optimizer (the named ones: SGD, lr 0.05, momentum 0.9):

* LiteRT: the `.tflite` from :func:`fedtflite.models.from_keras`, trained the
  way a client does (:meth:`fedtflite.runtime.ClientModel.fit`, one interpreter
  thread; per step: batch assembly, fresh dropout noise, one ``train`` call);
* Keras: ``model.train_on_batch`` on the same Keras model;
* ``tf.function``: the same model's forward pass, `tf.GradientTape` and its
  optimizer's ``apply`` in one `tf.function` (no XLA): TensorFlow's native step.

TensorFlow runs with one intra-op and one inter-op thread (``--tf-threads``), as
LiteRT does: a simulation runs one single-threaded client process per core.
The three are timed in alternating rounds, so all see the same machine state;
every figure is the median over all timed steps. Run::

    python benchmarks/train_step.py [--rounds 5] [--steps 20] [--only NAME,...]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BATCH = 32


def _models() -> dict[str, Callable[[], Any]]:
    """Row name -> a compiled Keras model featuring that layer type."""
    import keras

    from fedtflite.models.zoo import keras_definition

    layers = keras.layers

    def seq(*body: Any, shape: tuple[int, ...] = (28, 28, 1), opt: Any = None) -> Any:
        model = keras.Sequential([keras.Input(shape), *body])
        model.compile(
            optimizer=opt or keras.optimizers.SGD(0.05, momentum=0.9),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        return model

    def conv_then(*body: Any) -> Callable[[], Any]:
        return lambda: seq(
            layers.Conv2D(16, 3, activation="relu"),
            *body,
            layers.Flatten(),
            layers.Dense(10),
        )

    def dense_with(activation: str) -> Callable[[], Any]:
        return lambda: seq(
            layers.Dense(128, activation=activation), layers.Dense(10), shape=(784,)
        )

    def named(name: str) -> Callable[[], Any]:
        def make() -> Any:
            model = keras_definition(name)
            model.compile(
                optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                loss=keras.losses.CategoricalCrossentropy(from_logits=True),
            )
            return model

        return make

    return {
        "Dense 784-128-10 relu": dense_with("relu"),
        "Activation tanh": dense_with("tanh"),
        "Activation sigmoid": dense_with("sigmoid"),
        "Activation elu": dense_with("elu"),
        "Activation leaky_relu": dense_with("leaky_relu"),
        "Activation softmax (output; from probabilities)": lambda: _softmax_output(seq),
        "Conv2D 3x3 valid": conv_then(),
        "Conv2D 5x5 same stride 2": lambda: seq(
            layers.Conv2D(16, 5, strides=2, padding="same", activation="relu"),
            layers.Flatten(),
            layers.Dense(10),
        ),
        "MaxPooling2D 2x2": conv_then(layers.MaxPooling2D(2)),
        "MaxPooling2D 3x3 stride 2 (overlapping)": conv_then(
            layers.MaxPooling2D(3, strides=2)
        ),
        "AveragePooling2D 2x2": conv_then(layers.AveragePooling2D(2)),
        "GlobalAveragePooling2D": conv_then(layers.GlobalAveragePooling2D()),
        "Dropout 0.5": lambda: seq(
            layers.Dense(128, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(10),
            shape=(784,),
        ),
        "BatchNormalization (conv)": conv_then(layers.BatchNormalization()),
        "Reshape + Flatten (28x28 -> 28x28x1)": lambda: seq(
            layers.Reshape((28, 28, 1)),
            layers.Conv2D(16, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(10),
            shape=(28, 28),
        ),
        "Adam (Dense 784-128-10)": lambda: seq(
            layers.Dense(128, activation="relu"),
            layers.Dense(10),
            shape=(784,),
            opt=keras.optimizers.Adam(1e-3),
        ),
        "RMSprop (Dense 784-128-10)": lambda: seq(
            layers.Dense(128, activation="relu"),
            layers.Dense(10),
            shape=(784,),
            opt=keras.optimizers.RMSprop(1e-3),
        ),
        "mlp": named("mlp"),
        "cnn": named("cnn"),
        "2nn": named("2nn"),
        "fedavg-cnn": named("fedavg-cnn"),
    }


def _softmax_output(seq: Callable[..., Any]) -> Any:
    import keras

    model = seq(
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
        shape=(784,),
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss="sparse_categorical_crossentropy",
    )
    return model


def _tf_step(model: Any) -> Callable[[Any, Any], Any]:
    import tensorflow as tf

    loss_fn = model.loss
    if isinstance(loss_fn, str):
        import keras

        loss_fn = keras.losses.get(loss_fn)

    @tf.function(jit_compile=False)
    def step(x: Any, y: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(y, model(x, training=True)))
        grads = tape.gradient(loss, model.trainable_weights)
        model.optimizer.apply(grads, model.trainable_weights)
        return loss

    return step


def _time_ms(fn: Callable[[], object], n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def _measure(make: Callable[[], Any], rounds: int, steps: int) -> dict[str, float]:
    import tensorflow as tf

    from fedtflite.models import from_keras
    from fedtflite.runtime import ClientModel

    model = make()
    tflite = from_keras(model)
    client = ClientModel(tflite)
    rng = np.random.default_rng(0)
    images = rng.random((BATCH * steps, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, BATCH * steps)
    x = images[:BATCH].reshape((BATCH, *model.inputs[0].shape[1:]))
    y_ids = labels[:BATCH]
    y = (
        y_ids
        if not client.contract.one_hot_labels
        else np.eye(10, dtype=np.float32)[y_ids]
    )
    tf_step = _tf_step(model)
    tx, ty = tf.constant(x), tf.constant(y)

    def lite_steps() -> None:
        client.fit(images, labels, epochs=1, batch_size=BATCH, rng=rng)

    for _ in range(3):  # warm-up: tracing, allocation, caches
        lite_steps()
        model.train_on_batch(x, y)
        tf_step(tx, ty)
    lite: list[float] = []
    keras_times: list[float] = []
    native: list[float] = []
    for _ in range(rounds):
        lite += [t / steps for t in _time_ms(lite_steps, 1)]
        keras_times += _time_ms(lambda: model.train_on_batch(x, y), steps)
        native += _time_ms(lambda: tf_step(tx, ty), steps)
    return {
        "lite": float(np.median(lite)),
        "keras": float(np.median(keras_times)),
        "tf": float(np.median(native)),
        "kib": len(tflite) / 1024,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Print the markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="alternations")
    parser.add_argument("--steps", type=int, default=20, help="steps per round")
    parser.add_argument("--tf-threads", type=int, default=1, help="TensorFlow threads")
    parser.add_argument("--only", default="", help="comma-separated row names")
    args = parser.parse_args(argv)
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.tf_threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.tf_threads)
    models = _models()
    wanted = [n for n in args.only.split(",") if n] or list(models)
    print(
        f"batch {BATCH}, LiteRT num_threads=1, TensorFlow {args.tf_threads} thread(s), "
        f"median of {args.rounds}x{args.steps} steps\n"
    )
    print(
        "| model | LiteRT step (ms) | Keras train_on_batch (ms) | "
        "tf.function step (ms) | LiteRT / train_on_batch | LiteRT / tf.function "
        "| .tflite (KiB) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in wanted:
        r = _measure(models[name], args.rounds, args.steps)
        print(
            f"| {name} | {r['lite']:.3f} | {r['keras']:.3f} | {r['tf']:.3f} "
            f"| {r['lite'] / r['keras']:.2f} | **{r['lite'] / r['tf']:.2f}** "
            f"| {r['kib']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
