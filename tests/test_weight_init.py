"""Initial-weight schemes: Keras' Glorot and PyTorch's defaults, by hand."""

from __future__ import annotations

import numpy as np
import pytest

from fedtflite.errors import ConfigError
from fedtflite.models.architectures import ARCHITECTURES, init_weights
from fedtflite.models.specs import ModelSpec
from fedtflite.runtime import ClientModel
from fedtflite.simulation import SimulationConfig
from fedtflite.simulation.prepare import resolve_model

# (fan_in of each kernel, which the bias after it shares), by hand from the shapes.
CNN_FAN_IN = [1 * 5 * 5, 1 * 5 * 5, 6 * 5 * 5, 6 * 5 * 5, 256, 256, 120, 120, 84, 84]
MLP_FAN_IN = [784, 784, 128, 128]


@pytest.mark.parametrize(("arch", "fan_in"), [("cnn", CNN_FAN_IN), ("mlp", MLP_FAN_IN)])
def test_torch_init_is_uniform_within_one_over_sqrt_fan_in(
    arch: str, fan_in: list[int]
) -> None:
    weights = init_weights(ARCHITECTURES[arch], 0, "torch")

    for w, n in zip(weights, fan_in, strict=True):
        bound = 1 / np.sqrt(n)
        assert w.dtype == np.float32
        assert np.abs(w).max() <= bound
        assert np.all(w != 0)  # biases too: PyTorch draws them, Keras zeroes them
        if w.size >= 100:  # U(-b, b): the extremes near b, std b / sqrt(3)
            assert np.abs(w).max() > 0.95 * bound
            assert float(w.std()) == pytest.approx(bound / np.sqrt(3), rel=0.1)


def test_glorot_init_has_zero_biases_and_glorot_limits() -> None:
    weights = init_weights(ARCHITECTURES["mlp"], 0)

    assert not weights[1].any() and not weights[3].any()
    assert np.abs(weights[0]).max() <= np.sqrt(6 / (784 + 128))
    assert np.abs(weights[2]).max() <= np.sqrt(6 / (128 + 10))


def test_schemes_and_seeds_differ() -> None:
    arch = ARCHITECTURES["cnn"]
    torch0, torch1 = init_weights(arch, 0, "torch"), init_weights(arch, 1, "torch")
    again = init_weights(arch, 0, "torch")

    assert all(np.array_equal(a, b) for a, b in zip(torch0, again, strict=True))
    assert not np.array_equal(torch0[0], torch1[0])
    assert not np.array_equal(torch0[0], init_weights(arch, 0)[0])


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^weight-init = 'he' is not valid: "):
        ModelSpec(architecture="mlp", weight_init="he")
    with pytest.raises(ConfigError, match="weight-init = 'he' is not valid"):
        SimulationConfig(weight_init="he")


def test_built_model_starts_from_the_torch_init() -> None:
    config = SimulationConfig(model="cnn", weight_init="torch", seed=3)

    model = ClientModel(resolve_model(config))

    expected = init_weights(ARCHITECTURES["cnn"], 3, "torch")
    for got, want in zip(model.parameters(), expected, strict=True):
        np.testing.assert_array_equal(got, want)
