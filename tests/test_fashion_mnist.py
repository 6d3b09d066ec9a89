"""Tests of fedtflite.data.fashion_mnist: IDX parsing, look-up, cache, real data."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedtflite.data import (
    CLASS_NAMES,
    DATA_DIR_ENV,
    DEBIAN_DATA_DIR,
    find_data_dir,
    load_fashion_mnist,
    read_idx,
    read_idx_images,
    read_idx_labels,
)
from fedtflite.data import fashion_mnist as fm
from fedtflite.errors import DataFormatError, DataMissingError

REPO = Path(__file__).resolve().parents[1]
FILES = {
    "train-images-idx3-ubyte": (2051, 3),
    "train-labels-idx1-ubyte": (2049, 3),
    "t10k-images-idx3-ubyte": (2051, 2),
    "t10k-labels-idx1-ubyte": (2049, 2),
}
needs_real_data = pytest.mark.skipif(
    not (DEBIAN_DATA_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"real Fashion-MNIST not in {DEBIAN_DATA_DIR} (apt-get install -y "
    "dataset-fashion-mnist)",
)


def idx_bytes(magic: int, shape: tuple[int, ...], data: bytes) -> bytes:
    """An IDX file: big-endian magic, one big-endian uint32 per dim, then data."""
    dims = b"".join(d.to_bytes(4, "big") for d in shape)
    return magic.to_bytes(4, "big") + dims + data


def write(path: Path, content: bytes, gz: bool = False) -> Path:
    path.write_bytes(gzip.compress(content) if gz else content)
    return path


def tiny_data_dir(root: Path) -> Path:
    """The four files, tiny (3 train, 2 test examples); train images gzipped."""
    root.mkdir(parents=True, exist_ok=True)
    for name, (magic, n) in FILES.items():
        if magic == 2051:
            content = idx_bytes(magic, (n, 28, 28), bytes(n * 784))
        else:
            content = idx_bytes(magic, (n,), bytes(range(n)))
        gz = name.startswith("train-images")
        write(root / (name + ".gz" if gz else name), content, gz=gz)
    return root


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_images_and_labels(tmp_path: Path, gz: bool) -> None:
    pixels = np.arange(2 * 28 * 28, dtype=np.int64).astype(np.uint8)
    images_path = write(
        tmp_path / "img", idx_bytes(2051, (2, 28, 28), pixels.tobytes()), gz
    )
    labels_path = write(tmp_path / "lab", idx_bytes(2049, (3,), bytes([3, 0, 9])), gz)

    images = read_idx_images(images_path, expected_count=2)
    labels = read_idx_labels(labels_path, expected_count=3)

    assert images.dtype == np.uint8
    assert images.shape == (2, 28, 28)
    np.testing.assert_array_equal(images.ravel(), pixels)
    assert images[1, 0, 0] == 784 % 256
    np.testing.assert_array_equal(labels, [3, 0, 9])


@pytest.mark.parametrize(
    ("content", "magic", "message"),
    [
        (idx_bytes(2049, (3,), b"\0\1\2"), 2051, r"magic number 2049, expected 2051"),
        (
            idx_bytes(2049, (5,), b"\0\1\2"),
            2049,
            r"truncated: 3 data bytes, expected 5",
        ),
        (idx_bytes(2049, (2,), b"\0\1\2"), 2049, r"has trailing bytes: 3 data bytes"),
        (b"\0\0\x08", 2049, r"3 bytes is too short for an IDX header"),
        (b"\0\0\x08\x03\0\0", 2051, r"truncated header of 6 bytes, expected 16"),
        (gzip.compress(b"\0\0\x08\x01" + bytes(50))[:-9], 2049, r"cannot read"),
    ],
    ids=["bad-magic", "truncated", "trailing", "short", "short-header", "broken-gz"],
)
def test_read_idx_rejects_broken_files(
    tmp_path: Path, content: bytes, magic: int, message: str
) -> None:
    path = write(tmp_path / "bad-idx", content)
    with pytest.raises(DataFormatError, match=message) as err:
        read_idx(path, magic)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_read_idx_labels_rejects_wrong_count(tmp_path: Path) -> None:
    path = write(tmp_path / "lab", idx_bytes(2049, (3,), b"\0\1\2"))
    with pytest.raises(DataFormatError, match=r"lab: holds 3 labels, expected 60000"):
        read_idx_labels(path, expected_count=60_000)


def test_read_idx_labels_rejects_label_out_of_range(tmp_path: Path) -> None:
    path = write(tmp_path / "lab", idx_bytes(2049, (3,), bytes([1, 10, 2])))
    with pytest.raises(DataFormatError, match=r"label 10 at index 1 is outside 0\.\.9"):
        read_idx_labels(path, expected_count=3)


def test_read_idx_images_rejects_wrong_image_shape(tmp_path: Path) -> None:
    path = write(tmp_path / "img", idx_bytes(2051, (2, 27, 28), bytes(2 * 27 * 28)))
    with pytest.raises(DataFormatError, match=r"images are 27x28, expected 28x28"):
        read_idx_images(path, expected_count=2)


def test_find_data_dir_accepts_raw_and_gz_files(tmp_path: Path) -> None:
    directory = tiny_data_dir(tmp_path / "fm")
    assert find_data_dir(directory) == directory
    assert find_data_dir(str(directory)) == directory


def test_explicit_dir_lacking_files_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "train-images-idx3-ubyte.gz").write_bytes(b"")
    with pytest.raises(DataMissingError) as err:
        find_data_dir(tmp_path)
    message = str(err.value)
    assert f"data_dir {tmp_path} lacks Fashion-MNIST" in message
    assert "t10k-labels-idx1-ubyte" in message
    assert "apt-get install -y dataset-fashion-mnist" in message


def test_env_dir_lacking_files_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(DataMissingError, match=f"{DATA_DIR_ENV} {tmp_path} lacks"):
        find_data_dir()


def test_env_dir_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DATA_DIR_ENV, str(tiny_data_dir(tmp_path)))
    assert find_data_dir() == tmp_path


def test_missing_data_says_where_it_looked_and_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    monkeypatch.setattr(fm, "DEBIAN_DATA_DIR", tmp_path / "debian")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DataMissingError) as err:
        find_data_dir()
    message = str(err.value)
    assert str(tmp_path / "debian") in message
    assert str(tmp_path / "home" / ".keras" / "datasets" / "fashion-mnist") in message
    assert "apt-get install -y dataset-fashion-mnist" in message
    assert "fedtflite data download" in message
    assert "\n" not in message


def test_load_rejects_files_of_the_wrong_size(tmp_path: Path) -> None:
    directory = tiny_data_dir(tmp_path / "fm")
    with pytest.raises(DataFormatError, match=r"holds 3 labels, expected 60000"):
        load_fashion_mnist(directory, cache_dir=tmp_path / "cache")


def test_import_does_not_load_tensorflow() -> None:
    code = (
        "import sys, fedtflite.data; "
        "bad = [m for m in ('tensorflow', 'keras') if m in sys.modules]; "
        "sys.exit(', '.join(bad) or None)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), *sys.path])}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def cache_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


@needs_real_data
def test_real_data_shapes_dtypes_and_balance(cache_root: Path) -> None:
    data = load_fashion_mnist(DEBIAN_DATA_DIR, cache_dir=cache_root)

    assert data.source == DEBIAN_DATA_DIR.resolve()
    assert len(CLASS_NAMES) == 10
    for split, n in ((data.train, 60_000), (data.test, 10_000)):
        assert split.images.shape == (n, 28, 28)
        assert split.images.dtype == np.float32
        assert split.labels.shape == (n,)
        assert split.labels.dtype == np.int64
        assert float(split.images.min()) == 0.0
        assert float(split.images.max()) == 1.0
        assert not split.images.flags.writeable
        np.testing.assert_array_equal(np.bincount(split.labels), [n // 10] * 10)
    # Memoised per process: the same object again.
    assert load_fashion_mnist(DEBIAN_DATA_DIR, cache_dir=cache_root) is data


@needs_real_data
def test_real_data_cache_is_read(cache_root: Path, tmp_path: Path) -> None:
    first = load_fashion_mnist(DEBIAN_DATA_DIR, cache_dir=cache_root)
    (entry,) = (cache_root / "fashion-mnist").iterdir()
    # Tamper with the cached test labels (still valid) and load through another
    # path to the same cache, which misses the in-process memo: the tampered
    # labels come back, so the cache, not the IDX files, was read.
    np.save(entry / "test_labels.npy", np.roll(first.test.labels.astype(np.uint8), 1))
    alias = tmp_path / "alias"
    alias.symlink_to(cache_root)

    second = load_fashion_mnist(DEBIAN_DATA_DIR, cache_dir=alias)

    np.testing.assert_array_equal(second.test.labels, np.roll(first.test.labels, 1))
    assert np.array_equal(second.train.images, first.train.images)


@needs_real_data
def test_real_data_survives_a_corrupt_cache(tmp_path: Path) -> None:
    first = load_fashion_mnist(DEBIAN_DATA_DIR, cache_dir=tmp_path / "cache")
    (entry,) = (tmp_path / "cache" / "fashion-mnist").iterdir()
    (entry / "train_images.npy").write_bytes(b"not a numpy file")
    alias = tmp_path / "alias"
    alias.symlink_to(tmp_path / "cache")

    second = load_fashion_mnist(DEBIAN_DATA_DIR, cache_dir=alias)

    assert np.array_equal(second.train.images, first.train.images)


@needs_real_data
def test_real_data_survives_an_unwritable_cache(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")

    data = load_fashion_mnist(DEBIAN_DATA_DIR, cache_dir=not_a_dir)

    assert data.train.images.shape == (60_000, 28, 28)


@needs_real_data
def test_uint8_train_split_converts_to_the_float_one_exactly(cache_root: Path) -> None:
    data = load_fashion_mnist(DEBIAN_DATA_DIR, cache_dir=cache_root)
    images, labels = fm.load_train_uint8(DEBIAN_DATA_DIR, cache_dir=cache_root)

    assert images.dtype == np.uint8 and images.shape == (60_000, 28, 28)
    np.testing.assert_array_equal(labels, data.train.labels)
    np.testing.assert_array_equal(fm.to_float(images[:500]), data.train.images[:500])
    assert fm.to_float(images[7:9]).dtype == np.float32
