"""The named architectures are Keras definitions built through from_keras.

Their weight shapes and static-batch needs (kept TensorFlow-free in
:mod:`fedtflite.models.architectures`) match the Keras definitions, and the
FedAvg paper's two models (McMahan et al. 2017) build, have the paper's weight
counts, and train like Keras.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

from fedtflite.data import FashionMnist
from fedtflite.models.architectures import ARCHITECTURES, init_weights
from fedtflite.models.build import build_model
from fedtflite.models.keras_reader import read_keras
from fedtflite.models.specs import ModelSpec, OptimizerSpec
from fedtflite.models.zoo import keras_definition
from fedtflite.runtime import ClientModel

STEPS = 10


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_architecture_table_matches_the_keras_definition(name: str) -> None:
    arch = ARCHITECTURES[name]
    model = keras_definition(name)
    assert [tuple(v.shape) for v in model.trainable_weights] == list(arch.shapes)
    network = read_keras(model, name).network
    assert network.needs_static_batch == arch.needs_static_batch
    assert network.input_shape == (28, 28) and not network.loss.sparse


@pytest.mark.parametrize(
    ("name", "values"), [("2nn", 199_210), ("fedavg-cnn", 1_663_370)]
)
def test_fedavg_paper_models_train_like_keras(
    name: str, values: int, data: FashionMnist
) -> None:
    """Adam's update is the same in both (no momentum form to differ)."""
    spec = ModelSpec(name, OptimizerSpec("adam", 1e-3), seed=5)
    lite = ClientModel(build_model(spec))
    c = lite.contract
    assert c.num_parameters == values
    assert c.train_batch == (32 if ARCHITECTURES[name].needs_static_batch else None)
    assert c.one_hot_labels and c.infer_output == "logits"
    reference = keras_definition(name)
    reference.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.CategoricalCrossentropy(from_logits=True),
    )
    initial = init_weights(ARCHITECTURES[name], 5)
    reference.set_weights(initial)
    for a, b in zip(lite.parameters(), initial, strict=True):
        np.testing.assert_array_equal(a, b)
    train = data.train
    for step in range(STEPS):
        rows = slice(32 * step, 32 * (step + 1))
        x, y = train.images[rows], train.labels[rows]
        lite.fit(x, y, epochs=1, batch_size=32, rng=np.random.default_rng(step))
        reference.train_on_batch(x, np.eye(10, dtype=np.float32)[y])
    diff = max(
        float(np.abs(a - b.numpy()).max())
        for a, b in zip(lite.parameters(), reference.trainable_weights, strict=True)
    )
    assert diff <= 1e-4
