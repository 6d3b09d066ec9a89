"""Shared set-up of the end-to-end tests: a small federation on real Fashion-MNIST.

Every simulation here is real: Flower's simulation engine on Ray, LiteRT clients,
the Fashion-MNIST files. Runs stay small (6 clients, 2 rounds) because each one
starts Ray (about 5 s) and, on a model-cache miss, builds its model with TensorFlow.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest

from fedtflite.data import find_data_dir
from fedtflite.errors import DataMissingError
from fedtflite.simulation import SimulationConfig, load_config

SMALL = (
    "num-clients=6",
    "num-rounds=2",
    "fraction-train=0.5",
    "fraction-evaluate=0.5",
    "seed=3",
)
"""A run that finishes in seconds: 3 of 6 clients train and 3 evaluate per round."""


@pytest.fixture(scope="session", autouse=True)
def _fashion_mnist() -> None:
    try:
        find_data_dir(None)
    except DataMissingError as e:
        pytest.skip(f"integration tests need Fashion-MNIST: {e}")


@pytest.fixture(scope="session")
def small_config() -> Callable[..., SimulationConfig]:
    """``small_config("key=value", ...)``: :data:`SMALL` with overrides on top."""

    def make(*overrides: str) -> SimulationConfig:
        return load_config(None, [*SMALL, *overrides])

    return make


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """``free_port()``: a loopback TCP port that nothing listens on right now."""

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    return pick
