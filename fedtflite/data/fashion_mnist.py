"""Fashion-MNIST from the official IDX files, validated and cached.

The four files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally gzipped) are
looked up by :func:`find_data_dir`, parsed and validated once, and kept as a uint8
``.npy`` cache so that later processes load all 70 000 images in a fraction of a
second. TensorFlow is imported only by the opt-in :func:`download_fashion_mnist`.

Reference: Xiao, Rasul and Vollgraf, "Fashion-MNIST: a Novel Image Dataset for
Benchmarking Machine Learning Algorithms", arXiv:1708.07747, 2017.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import numpy as np
from numpy.typing import NDArray

from fedtflite.errors import DataFormatError, DataMissingError
from fedtflite.files import atomic_path

__all__ = [
    "CLASS_NAMES",
    "DATA_DIR_ENV",
    "DEBIAN_DATA_DIR",
    "FashionMnist",
    "Split",
    "download_fashion_mnist",
    "find_data_dir",
    "load_fashion_mnist",
    "load_train_uint8",
    "read_idx",
    "read_idx_images",
    "read_idx_labels",
    "to_float",
]

_log = logging.getLogger(__name__)
_Array = TypeVar("_Array", bound=np.ndarray[Any, Any])

CLASS_NAMES: Final = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
"""The 10 class names; label ``i`` is ``CLASS_NAMES[i]``."""

DATA_DIR_ENV: Final = "FEDTFLITE_DATA_DIR"
"""The one environment variable the library reads: a directory with the IDX files."""

DEBIAN_DATA_DIR: Final = Path("/usr/share/datasets/fashion-mnist")
"""Where ``apt-get install dataset-fashion-mnist`` puts the files."""

_IMAGES_MAGIC: Final = 2051  # 0x0803: unsigned bytes, 3 dimensions
_LABELS_MAGIC: Final = 2049  # 0x0801: unsigned bytes, 1 dimension
_GZIP_MAGIC: Final = b"\x1f\x8b"
_IMAGE_SHAPE: Final = (28, 28)
_NUM_CLASSES: Final = len(CLASS_NAMES)
# split -> (images file, labels file, number of examples)
_SPLITS: Final = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", 60_000),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", 10_000),
}
_FILE_NAMES: Final = tuple(name for s in _SPLITS.values() for name in s[:2])
_HOW_TO_GET: Final = (
    "install it with `apt-get install -y dataset-fashion-mnist` (offline), or "
    "where a network exists run `fedtflite data download` "
    "(stores it in ~/.keras/datasets/fashion-mnist)"
)


@dataclass(frozen=True)
class Split:
    """One split (train or test) of Fashion-MNIST; both arrays are read-only.

    Attributes
    ----------
    images : numpy.ndarray
        float32 ``[n, 28, 28]``, pixel values scaled to ``[0, 1]`` (``uint8 / 255``).
    labels : numpy.ndarray
        int64 ``[n]``, class ids in ``0..9`` (names in :data:`CLASS_NAMES`).
    """

    images: NDArray[np.float32]
    labels: NDArray[np.int64]


@dataclass(frozen=True)
class FashionMnist:
    """The whole data set.

    Attributes
    ----------
    train : Split
        The 60 000 training examples, in the order of the IDX file.
    test : Split
        The 10 000 test examples, in the order of the IDX file.
    source : pathlib.Path
        The directory the IDX files were read from.
    """

    train: Split
    test: Split
    source: Path


def read_idx(path: Path, magic: int) -> NDArray[np.uint8]:
    """Parse one unsigned-byte IDX file, gzipped or not.

    Parameters
    ----------
    path : pathlib.Path
        The file; gzip is recognised by its content, not its name.
    magic : int
        The expected magic number (2051 for images, 2049 for labels); its low byte
        is the number of dimensions.

    Returns
    -------
    numpy.ndarray
        uint8, read-only, with the shape written in the header.

    Raises
    ------
    DataFormatError
        Unreadable or broken gzip, wrong magic number, truncated header or data, or
        bytes after the data.
    """
    try:
        raw = path.read_bytes()
        if raw[:2] == _GZIP_MAGIC:
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataFormatError(
            f"{path}: cannot read or decompress ({err}); expected an IDX file, "
            "raw or gzipped"
        ) from err
    if len(raw) < 4:
        raise DataFormatError(
            f"{path}: {len(raw)} bytes is too short for an IDX header; "
            f"expected magic number {magic}"
        )
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataFormatError(
            f"{path}: magic number {found}, expected {magic} "
            f"(IDX of unsigned bytes with {magic & 0xFF} dimensions)"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataFormatError(
            f"{path}: truncated header of {len(raw)} bytes, expected {header}"
        )
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4))
    size = int(np.prod(shape))
    if len(raw) - header != size:
        what = "truncated" if len(raw) - header < size else "has trailing bytes"
        raise DataFormatError(
            f"{path}: {what}: {len(raw) - header} data bytes, expected {size} "
            f"for shape {shape}"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def read_idx_images(path: Path, expected_count: int) -> NDArray[np.uint8]:
    """Parse and validate an IDX image file (magic 2051, 28x28 images).

    Parameters
    ----------
    path : pathlib.Path
        The images file.
    expected_count : int
        How many images it must hold.

    Returns
    -------
    numpy.ndarray
        uint8 ``[expected_count, 28, 28]``, read-only.

    Raises
    ------
    DataFormatError
        As :func:`read_idx`, or images that are not 28x28, or a wrong count.
    """
    images = read_idx(path, _IMAGES_MAGIC)
    if images.shape[1:] != _IMAGE_SHAPE:
        raise DataFormatError(
            f"{path}: images are {images.shape[1]}x{images.shape[2]}, expected 28x28"
        )
    _check_count(path, len(images), expected_count, "images")
    return images


def read_idx_labels(path: Path, expected_count: int) -> NDArray[np.uint8]:
    """Parse and validate an IDX label file (magic 2049, labels ``0..9``).

    Parameters
    ----------
    path : pathlib.Path
        The labels file.
    expected_count : int
        How many labels it must hold.

    Returns
    -------
    numpy.ndarray
        uint8 ``[expected_count]``, read-only.

    Raises
    ------
    DataFormatError
        As :func:`read_idx`, or a wrong count, or a label outside ``0..9``.
    """
    labels = read_idx(path, _LABELS_MAGIC)
    _check_count(path, len(labels), expected_count, "labels")
    bad = np.flatnonzero(labels >= _NUM_CLASSES)
    if bad.size:
        raise DataFormatError(
            f"{path}: label {labels[bad[0]]} at index {bad[0]} is outside "
            f"0..{_NUM_CLASSES - 1}"
        )
    return labels


def _check_count(path: Path, count: int, expected: int, what: str) -> None:
    if count != expected:
        raise DataFormatError(f"{path}: holds {count} {what}, expected {expected}")


def _locate(directory: Path) -> dict[str, Path] | None:
    """Map each IDX file name to its path in ``directory`` (raw or .gz), or None."""
    found: dict[str, Path] = {}
    for name in _FILE_NAMES:
        for candidate in (directory / name, directory / f"{name}.gz"):
            if candidate.is_file():
                found[name] = candidate
                break
        else:
            return None
    return found


def _require(directory: Path, origin: str) -> dict[str, Path]:
    files = _locate(directory)
    if files is None:
        raise DataMissingError(
            f"{origin} {directory} lacks Fashion-MNIST: it must hold "
            f"{', '.join(_FILE_NAMES)} (each raw or .gz); {_HOW_TO_GET}"
        )
    return files


def find_data_dir(data_dir: str | Path | None = None) -> Path:
    """Find the directory that holds the four Fashion-MNIST IDX files.

    Look-up order: ``data_dir``; the environment variable ``FEDTFLITE_DATA_DIR``
    (the only environment variable the library reads); Debian's
    ``/usr/share/datasets/fashion-mnist``; Keras' cache
    ``~/.keras/datasets/fashion-mnist``. A directory counts if it holds all four
    files, each raw or gzipped.

    Parameters
    ----------
    data_dir : str or pathlib.Path, optional
        An explicit directory; it must hold the files (no fall-through).

    Returns
    -------
    pathlib.Path
        The directory.

    Raises
    ------
    DataMissingError
        ``data_dir`` or ``FEDTFLITE_DATA_DIR`` is given but lacks the files, or no
        default place holds them; the message says how to get them.
    """
    explicit = [(data_dir, "data_dir"), (os.environ.get(DATA_DIR_ENV), DATA_DIR_ENV)]
    for given, origin in explicit:
        if given:
            directory = Path(given).expanduser()
            _require(directory, origin)
            return directory
    defaults = (DEBIAN_DATA_DIR, _keras_data_dir())
    for directory in defaults:
        if _locate(directory) is not None:
            return directory
    raise DataMissingError(
        f"Fashion-MNIST not found in {' or '.join(map(str, defaults))} "
        f"({DATA_DIR_ENV} unset); {_HOW_TO_GET}, or set {DATA_DIR_ENV}"
    )


def _keras_data_dir() -> Path:
    return Path.home() / ".keras" / "datasets" / "fashion-mnist"


def load_fashion_mnist(
    data_dir: str | Path | None = None, *, cache_dir: str | Path | None = None
) -> FashionMnist:
    """Load and validate Fashion-MNIST, fast after the first time.

    The first load parses the IDX files and writes a validated uint8 ``.npy`` copy
    under ``cache_dir``, keyed by the files' resolved paths, sizes and mtimes; later
    loads read that copy. A cache that cannot be written or read is skipped (logged,
    never fatal). Within one process the result is memoised per directory, so it is
    shared: its arrays are read-only.

    Parameters
    ----------
    data_dir : str or pathlib.Path, optional
        Where the IDX files are; default: see :func:`find_data_dir`.
    cache_dir : str or pathlib.Path, optional
        Where to keep the uint8 copy; default ``~/.cache/fedtflite``.

    Returns
    -------
    FashionMnist
        Train (60 000) and test (10 000) splits, images float32 in ``[0, 1]``.

    Raises
    ------
    DataMissingError
        The files are not found (see :func:`find_data_dir`).
    DataFormatError
        A file is not the expected IDX file (magic, shape, count, label range,
        truncation).
    """
    directory = find_data_dir(data_dir).resolve()
    cache = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    return _load_memoised(directory, cache.expanduser())


def load_train_uint8(
    data_dir: str | Path | None = None, *, cache_dir: str | Path | None = None
) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """The 60 000 training images as stored (uint8) and their labels (int64).

    A quarter of the memory of :func:`load_fashion_mnist`'s float32 images: what a
    client worker keeps, converting one client's images at a time with
    :func:`to_float`. Same look-up, validation, cache and errors.
    """
    directory = find_data_dir(data_dir).resolve()
    cache = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    raw = _load_raw(directory, cache.expanduser())
    return raw["train_images"], _read_only(raw["train_labels"].astype(np.int64))


def to_float(images: NDArray[np.uint8]) -> NDArray[np.float32]:
    """uint8 pixels to float32 in ``[0, 1]``, exactly as :func:`load_fashion_mnist`."""
    return np.divide(images, np.float32(255))


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "fedtflite"


@functools.lru_cache(maxsize=4)
def _load_raw(directory: Path, cache_root: Path) -> dict[str, NDArray[np.uint8]]:
    files = _require(directory, "data_dir")
    cache = cache_root / "fashion-mnist" / _cache_key(files)
    raw = _read_cache(cache)
    if raw is None:
        raw = _parse(files)
        _write_cache(cache, raw)
    return {name: _read_only(array) for name, array in raw.items()}


@functools.lru_cache(maxsize=4)
def _load_memoised(directory: Path, cache_root: Path) -> FashionMnist:
    raw = _load_raw(directory, cache_root)
    splits = {
        name: Split(
            images=_read_only(to_float(raw[f"{name}_images"])),
            labels=_read_only(raw[f"{name}_labels"].astype(np.int64)),
        )
        for name in _SPLITS
    }
    return FashionMnist(train=splits["train"], test=splits["test"], source=directory)


def _read_only(array: _Array) -> _Array:
    array.flags.writeable = False
    return array


def _parse(files: dict[str, Path]) -> dict[str, NDArray[np.uint8]]:
    arrays: dict[str, NDArray[np.uint8]] = {}
    for split, (images_name, labels_name, count) in _SPLITS.items():
        labels = read_idx_labels(files[labels_name], count)
        arrays[f"{split}_labels"] = labels
        arrays[f"{split}_images"] = read_idx_images(files[images_name], len(labels))
    return arrays


def _cache_key(files: dict[str, Path]) -> str:
    parts = []
    for name in _FILE_NAMES:
        stat = files[name].stat()
        parts.append(f"{files[name].resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def _read_cache(cache: Path) -> dict[str, NDArray[np.uint8]] | None:
    arrays: dict[str, NDArray[np.uint8]] = {}
    try:
        for split, (_, _, count) in _SPLITS.items():
            images = np.load(cache / f"{split}_images.npy", allow_pickle=False)
            labels = np.load(cache / f"{split}_labels.npy", allow_pickle=False)
            if (
                images.dtype != np.uint8
                or labels.dtype != np.uint8
                or images.shape != (count, *_IMAGE_SHAPE)
                or labels.shape != (count,)
                or labels.max() >= _NUM_CLASSES
            ):
                _log.warning("ignoring malformed Fashion-MNIST cache %s", cache)
                return None
            arrays[f"{split}_images"] = images
            arrays[f"{split}_labels"] = labels
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        _log.warning("ignoring unreadable Fashion-MNIST cache %s: %s", cache, err)
        return None
    return arrays


def _write_cache(cache: Path, arrays: dict[str, NDArray[np.uint8]]) -> None:
    try:
        cache.mkdir(parents=True, exist_ok=True)
        for name, array in arrays.items():
            with atomic_path(cache / f"{name}.npy") as tmp:
                np.save(tmp, array, allow_pickle=False)
    except OSError as err:
        _log.warning("could not write Fashion-MNIST cache %s: %s", cache, err)


def download_fashion_mnist() -> Path:
    """Download Fashion-MNIST with Keras into ``~/.keras/datasets/fashion-mnist``.

    Opt-in and only where a network exists; imports TensorFlow, which nothing else
    in :mod:`fedtflite.data` does. Keras keeps the original gzipped IDX files, which
    :func:`find_data_dir` then finds.

    Returns
    -------
    pathlib.Path
        The directory holding the four ``.gz`` files.

    Raises
    ------
    DataMissingError
        The download failed, or Keras stored the files elsewhere (``KERAS_HOME``).
    """
    import tensorflow as tf  # lazy: only this opt-in download needs TensorFlow

    try:
        tf.keras.datasets.fashion_mnist.load_data()
    except Exception as err:  # Keras raises bare Exception on network errors
        reason = " ".join(str(err).split())
        raise DataMissingError(
            f"downloading Fashion-MNIST with Keras failed ({reason}); offline, "
            "install it with `apt-get install -y dataset-fashion-mnist`"
        ) from err
    directory = _keras_data_dir()
    _require(directory, "Keras cache")
    return directory
