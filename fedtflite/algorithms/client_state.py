"""What a client keeps between rounds, as a phone would: one file per client.

A run's ``client_state/`` directory holds ``client_<id>.npz`` (the arrays and
the round that wrote them) and the versions before it, ``client_<id>.prev.npz``
and ``client_<id>.prev2.npz``.
SCAFFOLD keeps its control variate ``c_i`` here. :class:`ClientStateStore` is
the only code that knows this layout.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fedtflite.files import atomic_path

__all__ = ["STATE_DIR", "VERSIONS", "ClientStateStore", "load_state", "save_state"]

STATE_DIR = "client_state"
"""The store's directory inside a run directory."""


def load_state(
    path: Path, like: Sequence[np.ndarray], server_round: int
) -> list[np.ndarray]:
    """A client's arrays as stored by its latest round before ``server_round``.

    Zeros like ``like`` before its first round. The :data:`VERSIONS` latest
    versions are kept, so a round that is run again (a run resumed from the
    server's checkpoint after a crash) starts from the state the client had
    before that round, not one it wrote in the rounds that were cut off: the
    server records a round while the next one trains, so up to two rounds can
    run past the last checkpoint.
    """
    for candidate in _versions(path):
        if candidate.is_file():
            with np.load(candidate) as f:
                if int(f["round"]) < server_round:
                    return [f[f"arr_{i}"] for i in range(len(like))]
    return [np.zeros_like(a) for a in like]


def save_state(path: Path, arrays: Sequence[np.ndarray], server_round: int) -> None:
    """Store a client's arrays after ``server_round`` (see :func:`load_state`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        with np.load(path) as f:
            stored = int(f["round"])
        if stored < server_round:  # shift the versions: the oldest goes
            versions = _versions(path)
            for newer, older in reversed(list(itertools.pairwise(versions))):
                if newer.is_file():
                    newer.replace(older)
    with atomic_path(path) as tmp:  # a crashed write never leaves half a file
        np.savez(tmp, *arrays, round=np.int64(server_round))


VERSIONS = 3
"""Versions of a client's state kept: the latest and the two before it."""


def _versions(path: Path) -> list[Path]:
    """``path``, then its older versions (``.prev.npz``, ``.prev2.npz``)."""
    suffixes = [f".prev{k if k > 1 else ''}.npz" for k in range(1, VERSIONS)]
    return [path, *(path.with_suffix(s) for s in suffixes)]


class ClientStateStore:
    """The clients' stored state under ``directory`` (a run's ``client_state/``).

    Parameters
    ----------
    directory : Path
        Created on the first :meth:`save`.
    """

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    @classmethod
    def of_run(cls, run_dir: Path) -> ClientStateStore:
        """The store of the run directory ``run_dir``."""
        return cls(run_dir / STATE_DIR)

    def path(self, client_id: int) -> Path:
        """The file of client ``client_id``."""
        return self.directory / f"client_{client_id}.npz"

    def load(
        self, client_id: int, like: Sequence[np.ndarray], server_round: int
    ) -> list[np.ndarray]:
        """Client ``client_id``'s arrays before ``server_round`` (zeros at first)."""
        return load_state(self.path(client_id), like, server_round)

    def save(
        self, client_id: int, arrays: Sequence[np.ndarray], server_round: int
    ) -> None:
        """Store client ``client_id``'s arrays after ``server_round``."""
        save_state(self.path(client_id), arrays, server_round)

    def is_empty(self) -> bool:
        """No client has stored anything."""
        return not any(self.directory.glob("client_*.npz"))

    def clear(self) -> None:
        """Forget every client's state (a run that starts over)."""
        shutil.rmtree(self.directory, ignore_errors=True)
