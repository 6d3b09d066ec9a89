"""Built models, cached on disk so a run needs TensorFlow only the first time.

Building imports TensorFlow (~2.6 s) and converts (~1 s); a simulation's start-up
should cost neither. The cache key is the :class:`ModelSpec` (or a Keras file's
content hash and the build options) plus the source of the model-building code,
so editing an op or an architecture rebuilds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from fedtflite.files import atomic_write_bytes
from fedtflite.models.specs import ModelSpec
from fedtflite.native_logs import TENSORFLOW_START, dropping

__all__ = ["DEFAULT_CACHE_DIR", "cached_keras_model", "cached_model", "spec_key"]

DEFAULT_CACHE_DIR = Path.home() / ".cache" / "fedtflite" / "models"
_SOURCES = (
    "architectures.py",
    "build.py",
    "keras_compile.py",
    "keras_layers.py",
    "keras_reader.py",
    "layers.py",
    "network.py",
    "ops.py",
    "spatial_ops.py",
    "optimizers.py",
    "specs.py",
    "trainable.py",
    "zoo.py",
)


def _key(description: bytes) -> str:
    h = hashlib.sha256(description)
    here = Path(__file__).parent
    for name in _SOURCES:
        h.update((here / name).read_bytes())
    return h.hexdigest()[:24]


def spec_key(spec: ModelSpec) -> str:
    """Hex digest identifying the bytes ``spec`` builds to."""
    return _key(repr(spec).encode())


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

    def build() -> bytes:
        from fedtflite.models.build import build_model

        with dropping(TENSORFLOW_START):  # TensorFlow's start-up lines only
            return build_model(spec)

    return _cached(f"{spec.architecture}-{spec_key(spec)}", build, cache_dir)


def cached_keras_model(
    path: Path,
    *,
    batch_size: int | None,
    proximal: bool = False,
    scaffold: bool = False,
    cache_dir: Path | None = None,
) -> bytes:
    """The `.tflite` of a saved Keras model (:func:`fedtflite.models.from_keras`).

    Keyed by the file's content hash and the options, so a changed model
    rebuilds and an unchanged one, wherever it lies, does not.

    Parameters
    ----------
    path : Path
        A Keras model file (``model.save("model.keras")``).
    batch_size : int or None
        Fixed `train` batch (None: from_keras' default).
    proximal, scaffold : bool
        FedProx / SCAFFOLD signatures.
    cache_dir : Path, optional
        As :func:`cached_model`.
    """
    options = repr((batch_size, proximal, scaffold)).encode()
    key = _key(hashlib.sha256(path.read_bytes()).digest() + options)

    def build() -> bytes:
        from fedtflite.models.build import from_keras, quiet_stderr

        with quiet_stderr():  # a bad model fails in one line, not under TF's logs
            return from_keras(
                path, batch_size=batch_size, proximal=proximal, scaffold=scaffold
            )

    return _cached(f"keras-{key}", build, cache_dir)


def _cached(name: str, build: Callable[[], bytes], cache_dir: Path | None) -> bytes:
    cache_dir = DEFAULT_CACHE_DIR if cache_dir is None else cache_dir
    path = cache_dir / f"{name}.tflite"
    if path.is_file():
        return path.read_bytes()
    data = build()
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)  # concurrent builders never see half a file
    except OSError:
        pass
    return data
