"""The run's partition on disk: computed once by the server, read by every worker.

Partitioning 60 000 labels with flwr-datasets takes 1-3 s (importing ``datasets``
included); :func:`cached_partition` keeps each spec's result under
``~/.cache/fedtflite/partitions`` so a rerun of a config starts without it.
"""

from __future__ import annotations

import hashlib
from dataclasses import astuple
from importlib.metadata import version
from itertools import pairwise
from pathlib import Path

import numpy as np

from fedtflite.data import PartitionSpec, partition_indices
from fedtflite.errors import ConfigError
from fedtflite.files import atomic_path

__all__ = ["DEFAULT_CACHE_DIR", "cached_partition", "load_partition", "save_partition"]

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "fedtflite" / "partitions"


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


def cached_partition(
    labels: np.ndarray, spec: PartitionSpec, cache_dir: Path | None = None
) -> list[np.ndarray]:
    """:func:`fedtflite.data.partition_indices`, memoised on disk.

    The key is the spec, the labels' bytes and the flwr-datasets version; a cache
    that cannot be read or written only costs a recomputation.

    Raises
    ------
    PartitionError
        As :func:`~fedtflite.data.partition_indices`.
    """
    cache_dir = DEFAULT_CACHE_DIR if cache_dir is None else cache_dir
    h = hashlib.sha256(repr(astuple(spec)).encode())
    h.update(np.ascontiguousarray(labels).tobytes())
    h.update(version("flwr-datasets").encode())
    path = cache_dir / f"{spec.kind}-{h.hexdigest()[:24]}.npz"
    try:
        return load_partition(path, spec)
    except (OSError, ValueError, KeyError, ConfigError):
        pass
    parts = partition_indices(labels, spec)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:  # concurrent runs never read half a file
            save_partition(tmp, parts, spec)
    except OSError:
        pass
    return parts
