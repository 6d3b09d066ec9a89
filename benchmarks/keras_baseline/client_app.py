"""The baseline's ClientApp: Flower's quickstart-tensorflow on fedtflite's data.

This is what a user would write instead of fedtflite: every simulated client runs
``model.fit`` on a Keras 3 model inside a Ray worker that imports TensorFlow. The
model equals fedtflite's ``mlp``; the data is the partition fedtflite would give
the client (same :class:`~fedtflite.data.PartitionSpec`) minus its local test
split. As a careful user would, each worker process builds and compiles the model
once and only ``set_weights`` per message (the quickstart rebuilds it per message).

Train reply: one ArrayRecord (``model.get_weights()``) and one MetricRecord
(``num-examples``, ``train-loss``). Evaluate reply: a MetricRecord (``num-examples``,
``eval-loss``, ``eval-accuracy``) on the client's local test split.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np

# Before TensorFlow loads (here and in Ray workers), as the quickstart does.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedtflite.data import (
    PartitionSpec,
    load_fashion_mnist,
    partition_indices,
    split_local_test,
)

__all__ = ["ClientConfig", "build_model", "make_client_app"]


@dataclass(frozen=True)
class ClientConfig:
    """What every client needs; reaches the Ray workers inside the ClientApp.

    Attributes
    ----------
    partition : PartitionSpec
        The partition fedtflite would use for the same run.
    client_test_fraction : float
        Share of a client's examples held out as its local test split.
    seed : int
        Seeds the local test split (as fedtflite does).
    local_epochs, batch_size : int
        ``model.fit`` arguments.
    learning_rate : float
        Plain SGD (no momentum).
    """

    partition: PartitionSpec
    client_test_fraction: float
    seed: int
    local_epochs: int
    batch_size: int
    learning_rate: float


def build_model(learning_rate: float) -> keras.Model:
    """fedtflite's ``mlp`` in Keras: 784-128 ReLU-10 logits, SGD, cross-entropy.

    The weights, ``[W1 (784,128), b1, W2 (128,10), b2]``, are in fedtflite's
    export order, so ``set_weights(init_weights(ARCHITECTURES["mlp"], seed))`` fits.
    """
    model = keras.Sequential(
        [
            keras.Input(shape=(28, 28)),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


@functools.lru_cache(maxsize=1)
def _cached_model(learning_rate: float) -> keras.Model:
    return build_model(learning_rate)


@functools.lru_cache(maxsize=1)
def _partition(spec: PartitionSpec) -> list[np.ndarray]:
    return partition_indices(load_fashion_mnist().train.labels, spec)


def _local_data(
    config: ClientConfig, cid: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The client's ``(x_train, y_train, x_test, y_test)``."""
    train = load_fashion_mnist().train
    train_idx, test_idx = split_local_test(
        _partition(config.partition)[cid],
        config.client_test_fraction,
        config.seed,
        client_id=cid,
    )
    return (
        train.images[train_idx],
        train.labels[train_idx],
        train.images[test_idx],
        train.labels[test_idx],
    )


def _model_with(msg: Message, config: ClientConfig) -> keras.Model:
    model = _cached_model(config.learning_rate)
    model.set_weights(msg.content.array_records["arrays"].to_numpy_ndarrays())
    return model


def make_client_app(config: ClientConfig) -> ClientApp:
    """A ClientApp whose clients train and evaluate as :class:`ClientConfig` says."""
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        """``model.fit`` on the client's partition."""
        cid = int(context.node_config["partition-id"])
        x_train, y_train, _, _ = _local_data(config, cid)
        model = _model_with(msg, config)
        history = model.fit(
            x_train,
            y_train,
            epochs=config.local_epochs,
            batch_size=config.batch_size,
            verbose=0,
            shuffle=True,
        )
        metrics = MetricRecord(
            {
                "num-examples": len(x_train),
                # Mean over all epochs, as fedtflite reports it.
                "train-loss": float(np.mean(history.history["loss"])),
            }
        )
        content = RecordDict(
            {"arrays": ArrayRecord(model.get_weights()), "metrics": metrics}
        )
        return Message(content=content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg: Message, context: Context) -> Message:
        """``model.evaluate`` on the client's local test split."""
        cid = int(context.node_config["partition-id"])
        _, _, x_test, y_test = _local_data(config, cid)
        loss, accuracy = 0.0, 0.0  # weight 0 in the mean when the split is empty
        if len(y_test):
            model = _model_with(msg, config)
            loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
        metrics = MetricRecord(
            {
                "num-examples": len(y_test),
                "eval-loss": float(loss),
                "eval-accuracy": float(accuracy),
            }
        )
        return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)

    return app
