"""The run's partition on disk: computed once by the server, read by every worker."""

from __future__ import annotations

from dataclasses import astuple
from itertools import pairwise
from pathlib import Path

import numpy as np

from fedtflite.data import PartitionSpec
from fedtflite.errors import ConfigError

__all__ = ["load_partition", "save_partition"]


def save_partition(path: Path, parts: list[np.ndarray], spec: PartitionSpec) -> None:
    """Write client index arrays (concatenated, with offsets) and their spec."""
    sizes = np.array([len(p) for p in parts], np.int64)
    np.savez(
        path,
        indices=np.concatenate(parts).astype(np.int64)
        if parts
        else np.empty(0, np.int64),
        offsets=np.concatenate([[0], np.cumsum(sizes)]),
        spec=np.array(repr(astuple(spec))),
    )


def load_partition(path: Path, spec: PartitionSpec) -> list[np.ndarray]:
    """Read a partition written by :func:`save_partition`.

    Raises
    ------
    OSError
        The file cannot be read.
    ConfigError
        It holds the partition of another spec.
    """
    with np.load(path) as f:
        if str(f["spec"]) != repr(astuple(spec)):
            raise ConfigError(f"{path}: partition of another spec ({f['spec']})")
        indices, offsets = f["indices"], f["offsets"]
    return [indices[a:b] for a, b in pairwise(offsets)]
