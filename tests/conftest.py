"""Fixtures shared by the unit tests: the real data set and batches drawn from
it, the built models, and the installed console script.

Session-scoped because they are read-only: Fashion-MNIST's arrays come from one
memoised load, and a model's bytes are immutable (each test wraps them in its own
:class:`~fedtflite.runtime.ClientModel`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fedtflite.data import FashionMnist, load_fashion_mnist
from fedtflite.errors import DataMissingError
from fedtflite.models.cache import cached_model
from fedtflite.models.specs import ModelSpec

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data() -> FashionMnist:
    """Fashion-MNIST from the data directory; the test is skipped without it."""
    try:
        return load_fashion_mnist()
    except DataMissingError as e:
        pytest.skip(str(e))


Batch = tuple[np.ndarray, np.ndarray]


@pytest.fixture(scope="session")
def train_batches(data: FashionMnist) -> Callable[[int, int, int], list[Batch]]:
    """``train_batches(count, size, seed)``: ``count`` batches of ``size`` training
    rows (images, class ids), no row twice, drawn with ``seed``."""

    def draw(count: int, size: int, seed: int) -> list[Batch]:
        rng = np.random.default_rng(seed)
        rows = rng.choice(len(data.train.labels), (count, size), replace=False)
        return [(data.train.images[r], data.train.labels[r]) for r in rows]

    return draw


@pytest.fixture(scope="session")
def mlp_bytes() -> bytes:
    """The default ``mlp`` (plain SGD), from the on-disk model cache."""
    return cached_model(ModelSpec("mlp"))


@pytest.fixture(scope="session")
def cnn_bytes() -> bytes:
    """The default ``cnn`` (plain SGD), from the on-disk model cache."""
    return cached_model(ModelSpec("cnn"))


@pytest.fixture(scope="session")
def console() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``console(*args)``: run the installed ``fedtflite`` script (or ``python -m
    fedtflite.cli``) in the repository root, capturing its text output."""
    exe = shutil.which("fedtflite")
    command = [exe] if exe else [sys.executable, "-m", "fedtflite.cli"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, cwd=REPO, timeout=300
        )

    return run
