"""A user's Keras model, named in the config, learns in a real federated run.

``model = "path/model.keras"``: the driver builds it once (cached by content)
and every client trains the `.tflite` through LiteRT, with the dropout masks
drawn from its own stream, in Flower's simulation engine on Ray.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from fedtflite.orchestrator import simulate
from fedtflite.runtime import ClientModel
from fedtflite.simulation import SimulationConfig

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def keras_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    layers = keras.layers
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            layers.Conv2D(8, 5, strides=2, padding="same", activation="relu"),
            layers.AveragePooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.2),
            layers.Dense(32, activation="tanh"),
            layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
        loss="sparse_categorical_crossentropy",
    )
    path = tmp_path_factory.mktemp("keras") / "mine.keras"
    model.save(path)
    return path


def test_keras_model_learns_in_a_federated_run(
    keras_file: Path,
    small_config: Callable[..., SimulationConfig],
    tmp_path: Path,
) -> None:
    config = small_config(
        f"model={json.dumps(str(keras_file))}",
        "num-rounds=5",
        "num-clients=10",
        "partitioner=iid",
        "fraction-train=0.3",
        "learning-rate=0.05",
        "batch-size=32",
    )
    history = simulate(config, tmp_path / "run", progress=False)
    model = ClientModel(history.run_dir / "model.tflite")
    assert model.contract.noise and model.contract.train_batch == 32
    assert not model.contract.one_hot_labels
    first, last = history.rounds[0], history.rounds[-1]
    assert last.round == 5 and all(r.clients_ok == 3 for r in history.rounds[1:])
    assert first.test_accuracy < 0.3
    assert last.test_accuracy >= 0.6, [r.test_accuracy for r in history.rounds]
