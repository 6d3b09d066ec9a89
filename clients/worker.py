"""Per-process state of a Flower worker: one interpreter, the data, the partition.

Built on the first message a process handles and reused by every later one
(keyed by the model's digest and the partition), never rebuilt per message.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedtflite.data import load_fashion_mnist, partition_indices, split_local_test
from fedtflite.errors import ConfigError, ModelFileError
from fedtflite.runtime import ClientModel
from fedtflite.simulation.partition_file import load_partition
from fedtflite.simulation.settings import ClientSettings

__all__ = ["ClientData", "Worker", "get_worker"]


@dataclass(frozen=True)
class ClientData:
    """One simulated client's local data (views into the shared arrays)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


class Worker:
    """The model and data every simulated client of this process shares."""

    def __init__(self, settings: ClientSettings):
        path = Path(settings.model_path)
        try:
            data = path.read_bytes()
        except OSError:
            raise ModelFileError(
                f"{path}: model file not readable on this node; every Ray node needs "
                "the run directory (shared filesystem) or the same path"
            ) from None
        digest = hashlib.sha256(data).hexdigest()
        if digest != settings.model_sha256:
            raise ModelFileError(
                f"{path}: sha256 {digest[:12]} differs from the server's "
                f"{settings.model_sha256[:12]}; the file changed during the run"
            )
        self.model = ClientModel(data)
        self.settings = settings
        fm = load_fashion_mnist(settings.data_dir or None)
        self._images, self._labels = fm.train.images, fm.train.labels
        spec = settings.partition_spec()
        try:
            self._parts = load_partition(Path(settings.partition_path), spec)
        except (OSError, ConfigError):
            self._parts = partition_indices(self._labels, spec)

    def client_data(self, client_id: int) -> ClientData:
        """The local train/test split of ``client_id``."""
        if not 0 <= client_id < len(self._parts):
            raise ConfigError(
                f"client-id {client_id} out of range 0..{len(self._parts) - 1}"
            )
        s = self.settings
        train, test = split_local_test(
            self._parts[client_id], s.client_test_fraction, s.seed, client_id=client_id
        )
        return ClientData(
            self._images[train],
            self._labels[train],
            self._images[test],
            self._labels[test],
        )

    def rng(self, client_id: int, server_round: int) -> np.random.Generator:
        """A client's shuffling stream in a round, from ``(seed, round, client)``."""
        return np.random.default_rng([self.settings.seed, server_round, client_id])


@functools.lru_cache(maxsize=2)
def get_worker(settings: ClientSettings) -> Worker:
    """This process's :class:`Worker` for ``settings`` (built once, then cached)."""
    return Worker(settings)
