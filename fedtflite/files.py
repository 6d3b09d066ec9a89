"""Atomic file writes: a reader (or a crash) never sees half a file.

Every file that another process may read while it is written (the model cache,
the partition, a checkpoint, a client's state, the calibration) goes through
:func:`atomic_path`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes"]


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` that replaces it when the block succeeds.

    The temporary name ends in ``path``'s own suffix (``np.savez`` would append
    ``.npz`` otherwise) and is hidden; it is removed when the block raises.
    """
    writer = f"{os.getpid()}.{threading.get_ident()}"
    tmp = path.with_name(f".{path.name}.{writer}.tmp{path.suffix}")
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
