"""One writer per run directory: an exclusive lock, and no silent overwrite.

A run (``fedtflite simulate``, a sweep cell, ``flwr run``) holds an exclusive
``flock`` on ``<run dir>/.lock`` from before it writes anything until it ends;
the file records the holder's pid so that a second writer is refused in one
line naming it. The kernel drops the lock when its process dies, however it
dies, so the lock of a killed run (a stale ``.lock`` whose pid is gone) is
simply taken over. A released lock can stay held for a moment by a child
process forked while it was held (until the child's ``exec`` closes the
descriptor): a lock whose file names no holder is waited for, up to
:data:`RELEASED_WAIT_S`, before a second writer is refused. ``flock`` is
what the standard library offers (``fcntl``); no dependency is needed for one
advisory lock on a local or shared directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from fedtflite.errors import ConfigError, RunDirBusyError

__all__ = ["LOCK_FILE", "RUN_OUTPUTS", "RunDirLock", "lock_run_dir"]

LOCK_FILE = ".lock"
"""The lock's name inside a run directory (holds the holder's pid)."""

RUN_OUTPUTS = (
    "history.csv",
    "accuracy.png",
    "workers.csv",
    "final_weights.npz",
    "checkpoint.npz",
    "client_state",
)
"""What a run writes as it goes; ``overwrite`` removes them before it starts."""

RELEASED_WAIT_S = 2.0
"""How long a held lock whose file names no holder (released, or not yet
written) is waited for before the run directory is refused as busy."""


@dataclass
class RunDirLock:
    """A held run-directory lock (see :func:`lock_run_dir`).

    Attributes
    ----------
    run_dir : Path
        The (resolved) directory.
    created : bool
        True when :func:`lock_run_dir` created the directory; :meth:`abandon`
        removes it again.
    """

    run_dir: Path
    created: bool
    _fd: int | None

    def release(self) -> None:
        """Clear the recorded pid and drop the lock (idempotent)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
        os.close(self._fd)  # closing the only descriptor drops the flock
        self._fd = None

    def abandon(self) -> None:
        """Release, and remove the directory if this lock created it and the run
        wrote nothing else into it (a run refused before it started)."""
        self.release()
        if self.created:
            with contextlib.suppress(OSError):
                (self.run_dir / LOCK_FILE).unlink()
                self.run_dir.rmdir()


def _holder(path: Path) -> str | None:
    """The pid the lock file records (None: none, as after a release)."""
    try:
        return path.read_text().split()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return None


def _flock(fd: int, path: Path) -> str | None:
    """Take the exclusive lock on ``fd``; None, or the holder's pid when busy.

    A busy lock whose file names no holder is tried again for up to
    :data:`RELEASED_WAIT_S`: its holder is a child forked while the lock was
    held and is about to close it, or a writer about to record its pid.
    """
    deadline = time.monotonic() + RELEASED_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return None
        except OSError:
            pid = _holder(path)
            if pid is not None or time.monotonic() >= deadline:
                return pid or "unknown"
        time.sleep(0.01)


def lock_run_dir(
    run_dir: str | Path, *, resume: bool = False, overwrite: bool = False
) -> RunDirLock:
    """Create ``run_dir`` if needed and take its exclusive lock.

    Parameters
    ----------
    run_dir : path
        The run directory.
    resume : bool
        The run goes on from the directory's checkpoint: its files stay.
    overwrite : bool
        Start over in a directory that holds another run: its outputs
        (:data:`RUN_OUTPUTS`) are removed once the lock is held.

    Returns
    -------
    RunDirLock
        Held until :meth:`RunDirLock.release` (or the process ends).

    Raises
    ------
    ConfigError
        ``run_dir`` is a file, cannot be created or written, or (without
        ``resume`` or ``overwrite``) already holds files.
    RunDirBusyError
        Another live process holds the lock (its pid is named).
    """
    path = Path(run_dir)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"run directory {path}: exists and is not a directory")
    created = not path.exists()
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd = os.open(path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise ConfigError(
            f"run directory {path}: cannot write there ({e.strerror}); choose "
            "another --out"
        ) from None
    busy = _flock(fd, path / LOCK_FILE)
    if busy is not None:
        os.close(fd)
        raise RunDirBusyError(
            f"run directory {path} is in use by another run (pid {busy}); wait "
            "for it to end or use another --out"
        )
    lock = RunDirLock(path.resolve(), created, fd)
    try:
        others = sorted(p.name for p in path.iterdir() if p.name != LOCK_FILE)
        if others and not resume and not overwrite:
            shown = ", ".join(others[:4]) + (", ..." if len(others) > 4 else "")
            raise ConfigError(
                f"run directory {path} already holds files ({shown}); go on from it "
                "with --resume, start it over with --overwrite, or use another --out"
            )
        if overwrite and not resume:
            for name in RUN_OUTPUTS:
                target = path / name
                if target.is_dir():
                    shutil.rmtree(target)
                else:
                    target.unlink(missing_ok=True)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()} {os.uname().nodename}\n".encode())
    except BaseException:
        lock.abandon()
        raise
    return lock
