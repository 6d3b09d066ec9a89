"""Built models, cached on disk so a run needs TensorFlow only the first time.

Building imports TensorFlow (~2.6 s) and converts (~1 s); a simulation's start-up
should cost neither. The cache key is the :class:`ModelSpec` plus the source of
the model-building code, so editing an op or an architecture rebuilds.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from fedtflite.models.specs import ModelSpec

__all__ = ["DEFAULT_CACHE_DIR", "cached_model", "spec_key"]

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "fedtflite" / "models"
_SOURCES = (
    "architectures.py",
    "build.py",
    "keras_reader.py",
    "layers.py",
    "network.py",
    "ops.py",
    "optimizers.py",
    "specs.py",
    "trainable.py",
    "zoo.py",
)


def spec_key(spec: ModelSpec) -> str:
    """Hex digest identifying the bytes ``spec`` builds to."""
    h = hashlib.sha256(repr(spec).encode())
    here = Path(__file__).parent
    for name in _SOURCES:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:24]


def cached_model(spec: ModelSpec, cache_dir: Path | None = None) -> bytes:
    """The `.tflite` bytes of ``spec``, built (with TensorFlow) only on a cache miss.

    Parameters
    ----------
    spec : ModelSpec
        What to build.
    cache_dir : Path, optional
        Where built files are kept (default ``~/.cache/fedtflite/models``). An
        unwritable cache only costs a rebuild next time.
    """
    cache_dir = DEFAULT_CACHE_DIR if cache_dir is None else cache_dir
    path = cache_dir / f"{spec.architecture}-{spec_key(spec)}.tflite"
    if path.is_file():
        return path.read_bytes()
    from fedtflite.models.build import build_model

    data = build_model(spec)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: concurrent builders never see half a file
    except OSError:
        pass
    return data
