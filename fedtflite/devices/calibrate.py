"""The price of one ``train`` step: measured on this machine, in LiteRT.

A device's compute time is ``steps * step_seconds * compute_factor``;
``step_seconds`` is the median wall time of one step of *this* model's
``train`` signature at the run's batch size, on one LiteRT thread, as every
simulated client runs it (FedScale instead guesses 3 * a benchmark table's
inference latency). Timing does not depend on the pixel values, so the probe
trains on random inputs; the model's weights and optimizer state are restored
afterwards.

A measurement is kept on disk per machine, model (SHA-256) and batch size
(:func:`cached_step_seconds`), so that two runs of one config on one machine
price steps identically and repeat exactly; a run records the number it used
(``step-seconds`` in its ``config.toml`` and checkpoint) for resume and replay.
"""

from __future__ import annotations

import hashlib
import os
import platform
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np

from fedtflite.files import atomic_write_bytes
from fedtflite.runtime import ClientModel

__all__ = [
    "DEFAULT_CACHE_DIR",
    "cached_step_seconds",
    "machine_key",
    "measure_step_seconds",
]

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "fedtflite" / "step_seconds"


def measure_step_seconds(
    model: ClientModel,
    batch_size: int,
    *,
    repeats: int = 15,
    steps_per_repeat: int = 8,
    warmup: int = 2,
    seed: int = 0,
) -> float:
    """Median seconds of one ``train`` step of ``model`` at ``batch_size``.

    Each repeat is one :meth:`ClientModel.fit` epoch of ``steps_per_repeat``
    full batches (its per-step mean: batch assembly and the ``train`` call, as
    a client's local training runs it); the result is the median over
    ``repeats`` after ``warmup`` untimed ones. The model's weights are restored
    (and its optimizer state reset) afterwards.

    Raises
    ------
    DataShapeError
        ``batch_size`` does not fit a fixed-batch model.
    """
    if repeats < 1 or steps_per_repeat < 1 or warmup < 0:
        raise ValueError("repeats and steps_per_repeat must be >= 1, warmup >= 0")
    c = model.contract
    rng = np.random.default_rng(seed)
    n = batch_size * steps_per_repeat
    images = rng.random((n, *c.image_shape), dtype=np.float32)
    labels = rng.integers(0, c.num_classes, size=n)
    initial = model.parameters()
    per_step = []
    try:
        for r in range(warmup + repeats):
            fit = model.fit(images, labels, epochs=1, batch_size=batch_size, rng=rng)
            if r >= warmup:
                per_step.append(fit.seconds / fit.num_steps)
    finally:
        model.restore(initial)
    return float(np.median(per_step))


def machine_key() -> str:
    """Hex digest naming this machine's CPU and LiteRT build."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    try:
        litert = metadata.version("ai-edge-litert")
    except metadata.PackageNotFoundError:  # pragma: no cover - installed with us
        litert = "?"
    parts = (platform.node(), platform.machine(), cpu, str(os.cpu_count()), litert)
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def cached_step_seconds(
    model: ClientModel,
    batch_size: int,
    *,
    cache_dir: Path | None = None,
    measure: Callable[[ClientModel, int], float] = measure_step_seconds,
) -> float:
    """:func:`measure_step_seconds`, once per machine, model and batch size.

    The number is kept in ``cache_dir`` (default
    ``~/.cache/fedtflite/step_seconds``; delete a file to measure again). An
    unwritable cache only costs a measurement next time.
    """
    cache_dir = DEFAULT_CACHE_DIR if cache_dir is None else cache_dir
    path = cache_dir / f"{model.sha256[:24]}-b{batch_size}-{machine_key()}.txt"
    try:
        seconds = float(path.read_text())
        if seconds > 0 and np.isfinite(seconds):
            return seconds
    except (OSError, ValueError):
        pass
    seconds = measure(model, batch_size)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        # a concurrent reader never sees half a number
        atomic_write_bytes(path, repr(seconds).encode())
    except OSError:
        pass
    return seconds
