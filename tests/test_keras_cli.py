"""A saved `.keras` file through the CLI, the cache and the LiteRT client runtime.

``fedtflite build --keras`` writes a file ``inspect`` validates; a bad model ends
the command with exit 2 and one line naming the layer; the client draws
dropout noise from its own seeded stream; a process without TensorFlow trains
the built file and learns.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras

from fedtflite.cli import main
from fedtflite.data import FashionMnist
from fedtflite.models.cache import cached_keras_model
from fedtflite.runtime import ClientModel

REPO = Path(__file__).resolve().parents[1]
L = keras.layers


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A supported model with dropout (saved and built) and an unsupported one."""
    root = tmp_path_factory.mktemp("keras")
    keras.utils.set_random_seed(3)
    good = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            L.Conv2D(8, 3, activation="relu", name="conv"),
            L.MaxPooling2D(2, name="pool"),
            L.Flatten(name="flat"),
            L.Dropout(0.25, name="drop"),
            L.Dense(10, activation="softmax", name="out"),
        ]
    )
    good.compile(
        optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy"
    )
    bad = keras.Sequential(
        [keras.Input((28, 28)), L.GRU(8, name="recurrent"), L.Dense(10)]
    )
    bad.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    paths = {
        "good": root / "good.keras",
        "bad": root / "bad.keras",
        "tflite": root / "good.tflite",
    }
    good.save(paths["good"])
    bad.save(paths["bad"])
    assert (
        main(["build", "--keras", str(paths["good"]), "--out", str(paths["tflite"])])
        == 0
    )
    return paths


def test_build_keras_writes_a_valid_client_model(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(files["tflite"])]) == 0
    out = capsys.readouterr().out
    assert "valid client model" in out
    assert (
        "train(mask: float32[32], noise0: float32[32,1352], x: float32[32,28,28,1], "
        "y: int32[32]) -> {loss: float32[]}" in out
    )
    assert "train noise (uniform draws per step, e.g. dropout): noise0" in out
    assert "parameters: 4 tensors, 13610 values" in out  # 3*3*8+8 + 1352*10+10
    keras_model = keras.saving.load_model(files["good"])
    lite = ClientModel(files["tflite"])
    for a, b in zip(lite.parameters(), keras_model.trainable_weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())


def test_unsupported_layer_is_one_line_and_exit_2(
    files: dict[str, Path],
    tmp_path: Path,
    console: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    out = tmp_path / "bad.tflite"
    proc = console("build", "--keras", str(files["bad"]), "--out", str(out))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith(
        f"error: {files['bad']}: layer GRU 'recurrent' is not supported; "
        "supported layers: InputLayer, Dense, Conv2D"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--optimizer", "adam"], "--optimizer cannot be used with --keras"),
        (["--seed", "3"], "--seed cannot be used with --keras"),
        (["mlp"], "build needs an architecture"),
    ],
)
def test_build_keras_rejects_named_model_options(
    args: list[str],
    message: str,
    files: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["build", "--keras", str(files["good"]), "--out", str(tmp_path / "x"), *args]
    assert main(argv) == 2
    assert capsys.readouterr().err.startswith(f"error: {message}")


def test_cache_keys_on_the_file_content(files: dict[str, Path], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = cached_keras_model(files["good"], batch_size=32, cache_dir=cache)
    assert first == files["tflite"].read_bytes()  # the same build
    moved = tmp_path / "renamed.keras"
    shutil.copy(files["good"], moved)
    assert cached_keras_model(moved, batch_size=32, cache_dir=cache) == first
    assert len(list(cache.glob("*.tflite"))) == 1  # no rebuild for a moved copy


def test_client_draws_dropout_noise_from_its_own_stream(
    files: dict[str, Path], data: FashionMnist
) -> None:
    train = data.train
    x, y = train.images[:64], train.labels[:64]

    def trained(seed: int) -> list[np.ndarray]:
        model = ClientModel(files["tflite"])
        model.fit(x, y, epochs=1, batch_size=32, rng=np.random.default_rng(seed))
        return model.parameters()

    same = [np.array_equal(a, b) for a, b in zip(trained(1), trained(1), strict=True)]
    other = [np.array_equal(a, b) for a, b in zip(trained(1), trained(2), strict=True)]
    assert all(same)
    assert not all(other)


_NO_TF = """
import sys
import numpy as np
from fedtflite.data import load_fashion_mnist
from fedtflite.runtime import ClientModel

data = load_fashion_mnist()
model = ClientModel(sys.argv[1])
before = model.evaluate(data.test.images[:2000], data.test.labels[:2000])
rng = np.random.default_rng(0)
model.fit(data.train.images[:6400], data.train.labels[:6400], epochs=1,
          batch_size=32, rng=rng)
after = model.evaluate(data.test.images[:2000], data.test.labels[:2000])
print(f"accuracy {before.accuracy:.3f} -> {after.accuracy:.3f}")
assert after.accuracy > 0.7 and after.accuracy > before.accuracy + 0.4, (before, after)
tf = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
assert not tf, tf[:5]
"""


def test_learns_in_litert_alone(files: dict[str, Path], tmp_path: Path) -> None:
    script = tmp_path / "no_tf.py"
    script.write_text(_NO_TF)
    proc = subprocess.run(
        [sys.executable, str(script), str(files["tflite"])],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "accuracy" in proc.stdout
