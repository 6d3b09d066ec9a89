"""Native libraries' start-up lines, dropped where they are written.

TensorFlow's C++ start-up lines (the absl pre-initialisation banner, oneDNN,
the CUDA probes) are logged before absl is initialised, so neither
``TF_CPP_MIN_LOG_LEVEL`` nor absl's verbosity reaches them (TensorFlow issues
#79029, #100442), and LiteRT logs its XNNPACK delegate at INFO with no switch.
:func:`dropping` captures file descriptor 2 around the one call that writes
them and writes every other line back, so real warnings and errors still show.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = [
    "LITERT_START",
    "RAY_WORKER_NOISE",
    "TENSORFLOW_START",
    "drop_forwarded_lines",
    "dropping",
]

TENSORFLOW_START = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|\] oneDNN custom operations are on"
    r"|cudart_stub\.cc:\d+\] Could not find cuda drivers"
    r"|cuda_platform\.cc:\d+\] failed call to cuInit"
    r"|Unable to register cu(DNN|FFT|BLAS) factory"
)
"""TensorFlow's start-up lines on a machine without a GPU."""

LITERT_START = re.compile(r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.")
"""LiteRT's line when an interpreter applies its default CPU delegate."""

RAY_WORKER_NOISE = re.compile(
    r"Created TensorFlow Lite XNNPACK delegate for CPU"
    r"|Manually terminating ClientAppActor"
    r"|Task ClientAppActor\.terminate failed\. There are \d+ retries remaining"
)
"""Lines Ray forwards from client workers that say nothing to the user: LiteRT's
delegate line, Flower's notice when it ends its actors, and Ray's note that the
ending call of a restartable actor (``max_task_retries``) "failed"."""


def drop_forwarded_lines(pattern: re.Pattern[str]) -> bool:
    """Drop the lines Ray forwards to this driver that match ``pattern``.

    Ray prints what it forwards in two places: the handler ``ray.init``
    installs on its log dispatcher (``ray_print_logs``: workers' output) and
    its error listener, which calls ``print_to_stdstream`` for errors pushed to
    the driver (the "(raylet)" lines, e.g. a restartable actor's ending call
    that "failed"). Both are wrapped in this process; every other line still
    prints as Ray prints it. Ray exposes no public hook for this, so where its
    private names are not found the lines simply stay. Returns True when the
    dispatcher's handler is filtered.
    """
    try:
        from ray._private import worker as ray_worker
    except ImportError:  # pragma: no cover - Ray is a dependency
        return False
    printer = getattr(ray_worker, "print_to_stdstream", None)
    if callable(printer) and not getattr(printer, "_fedtflite", False):
        ray_worker.print_to_stdstream = _filtered(printer, pattern)
    dispatcher = getattr(ray_worker, "global_worker_stdstream_dispatcher", None)
    handlers = getattr(dispatcher, "handlers", None)
    if not isinstance(handlers, list):
        return False
    for i, (name, handler) in enumerate(handlers):
        if name != "ray_print_logs":
            continue
        if not getattr(handler, "_fedtflite", False):  # not yet (a second run)
            handlers[i] = (name, _filtered(handler, pattern))
        return True
    return False


def _filtered(printer: Any, pattern: re.Pattern[str]) -> Any:
    """``printer`` (called with Ray's ``{"lines": [...], ...}`` and maybe more
    arguments) without the lines that match ``pattern``."""

    def filtered(data: dict[str, object], *args: object, **kwargs: object) -> None:
        lines = data.get("lines")
        if isinstance(lines, list):
            kept = [s for s in lines if not pattern.search(str(s))]
            if not kept:
                return
            data = {**data, "lines": kept}
        printer(data, *args, **kwargs)

    filtered._fedtflite = True  # type: ignore[attr-defined]
    return filtered


@contextmanager
def dropping(pattern: re.Pattern[str]) -> Iterator[None]:
    """Drop the stderr lines that match ``pattern`` while the block runs.

    Every other line is written to stderr when the block ends (also when it
    raises). Lines written by other threads meanwhile are kept, only delayed.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode(errors="replace")
            kept = [
                line
                for line in text.splitlines(keepends=True)
                if not pattern.search(line)
            ]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()
