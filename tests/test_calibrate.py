"""The step price: measured on the real model in LiteRT, cached per machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedtflite.devices import cached_step_seconds, machine_key, measure_step_seconds
from fedtflite.errors import DataShapeError
from fedtflite.runtime import ClientModel


@pytest.fixture(scope="module")
def mlp(mlp_bytes: bytes) -> ClientModel:
    return ClientModel(mlp_bytes)


@pytest.fixture(scope="module")
def cnn(cnn_bytes: bytes) -> ClientModel:
    return ClientModel(cnn_bytes)


def test_measures_the_models_own_step(mlp: ClientModel, cnn: ClientModel) -> None:
    before = mlp.parameters()
    mlp_step = measure_step_seconds(mlp, 32)
    cnn_step = measure_step_seconds(cnn, 32)
    # The weights are put back; the probe trained on them.
    for a, b in zip(mlp.parameters(), before, strict=True):
        np.testing.assert_array_equal(a, b)
    assert 1e-5 < mlp_step < 0.05
    # BENCHMARKS.md: mlp 0.28 ms, cnn 3.6 ms a step; a noisy shared machine
    # still keeps them several times apart.
    assert cnn_step > 3 * mlp_step


def test_a_fixed_batch_model_needs_its_batch(cnn: ClientModel) -> None:
    with pytest.raises(DataShapeError, match="train takes fixed batches of 32"):
        measure_step_seconds(cnn, 16)


def test_measured_once_per_machine_model_and_batch(
    mlp: ClientModel, tmp_path: Path
) -> None:
    calls: list[int] = []

    def fake(model: ClientModel, batch_size: int) -> float:
        calls.append(batch_size)
        return 0.001 * batch_size

    assert cached_step_seconds(mlp, 32, cache_dir=tmp_path, measure=fake) == 0.032
    assert cached_step_seconds(mlp, 32, cache_dir=tmp_path, measure=fake) == 0.032
    assert cached_step_seconds(mlp, 8, cache_dir=tmp_path, measure=fake) == 0.008
    assert calls == [32, 8]
    (cached,) = tmp_path.glob(f"{mlp.sha256[:24]}-b32-{machine_key()}.txt")
    cached.write_text("garbage")  # a damaged file is measured again
    assert cached_step_seconds(mlp, 32, cache_dir=tmp_path, measure=fake) == 0.032
    assert calls == [32, 8, 32]
    blocked = tmp_path / "file"
    blocked.write_text("")  # an unusable cache directory only costs a measurement
    assert cached_step_seconds(mlp, 32, cache_dir=blocked, measure=fake) == 0.032
