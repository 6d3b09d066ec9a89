"""The ``fedtflite`` command line: build, inspect, train, and its exit codes.

Most tests call :func:`fedtflite.cli.main` in-process; a few run the installed
console script to check exit codes and stderr at the process level.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fedtflite.cli import main

MLP_VALUES = 784 * 128 + 128 + 128 * 10 + 10
# kernel + bias per layer: conv 5x5x1x6, conv 5x5x6x16, dense 256-120, 120-84, 84-10
CNN_VALUES = 156 + 2_416 + 30_840 + 10_164 + 850


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``fedtflite build mlp`` and ``build cnn --optimizer adam``, once."""
    root = tmp_path_factory.mktemp("cli")
    paths = {"mlp": root / "mlp.tflite", "cnn": root / "cnn-adam.tflite"}
    assert main(["build", "mlp", "--out", str(paths["mlp"])]) == 0
    assert (
        main(["build", "cnn", "--optimizer", "adam", "--out", str(paths["cnn"])]) == 0
    )
    return paths


@pytest.fixture(scope="module")
def broken(
    built: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """A Flex model, a truncated model and a text file."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec([4], tf.float32)])
    def relu_grad(x: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.reduce_sum(tf.nn.relu(x))
        return tape.gradient(y, x)  # ReluGrad: a Select-TF op

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [relu_grad.get_concrete_function()], relu_grad
    )
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.TFLITE_BUILTINS,
        tf.lite.OpsSet.SELECT_TF_OPS,
    ]
    root = tmp_path_factory.mktemp("broken")
    paths = {
        "flex": root / "flex.tflite",
        "truncated": root / "truncated.tflite",
        "text": root / "readme.tflite",
    }
    paths["flex"].write_bytes(converter.convert())
    whole = built["mlp"].read_bytes()
    paths["truncated"].write_bytes(whole[: len(whole) // 2])
    paths["text"].write_text("not a model\n")
    return paths


def test_build_reports_what_it_wrote(
    built: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    # The fixture's output was captured before this test; build once more here.
    out = built["mlp"].with_name("again.tflite")
    assert main(["build", "mlp", "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {out} ({out.stat().st_size} bytes)")
    assert out.read_bytes() == built["mlp"].read_bytes()  # same spec, same bytes


def test_inspect_mlp(
    built: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(built["mlp"])]) == 0
    out = capsys.readouterr().out
    assert f"{built['mlp']}: valid client model" in out
    weights = (
        "a0: float32[784,128], a1: float32[128], a2: float32[128,10], a3: float32[10]"
    )
    assert (
        "train(x: float32[None,28,28], y: float32[None,10]) -> {loss: float32[]}" in out
    )
    assert "infer(x: float32[None,28,28]) -> {logits: float32[None,10]" in out
    assert f"parameters() -> {{{weights}}}" in out
    assert f"restore({weights})" in out
    assert "set_learning_rate(lr: float32[])" in out
    assert f"parameters: 4 tensors, {MLP_VALUES} values, {4 * MLP_VALUES} bytes" in out
    assert MLP_VALUES == 101_770
    assert "train batch: dynamic; labels: one-hot float32" in out
    ops = re.search(r"^ops \((\d+), all builtin\): (.*)$", out, re.MULTILINE)
    assert ops is not None
    assert "FULLY_CONNECTED" in ops[2].split(", ")
    assert int(ops[1]) == len(ops[2].split(", "))


def test_inspect_cnn_with_adam(
    built: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inspect", str(built["cnn"])]) == 0
    out = capsys.readouterr().out
    assert "valid client model" in out
    assert (
        "train(mask: float32[32], x: float32[32,28,28], y: float32[32,10])"
        " -> {loss: float32[]}" in out
    )
    assert f"parameters: 10 tensors, {CNN_VALUES} values" in out
    assert "train batch: fixed 32 with mask" in out
    ops = out.split("all builtin): ")[1].split(", ")
    assert {"CONV_2D", "MAX_POOL_2D", "SQRT"} <= {op.strip() for op in ops}


def test_console_script_exit_codes(
    built: dict[str, Path],
    broken: dict[str, Path],
    console: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    ok = console("inspect", str(built["mlp"]))
    assert ok.returncode == 0, ok.stderr
    assert f"{MLP_VALUES} values" in ok.stdout
    bad = console("inspect", str(broken["truncated"]))
    assert bad.returncode == 2
    assert bad.stdout == ""
    assert bad.stderr.count("\n") == 1 and "truncated or corrupt" in bad.stderr


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("flex", r"Select-TF \(Flex\) ops FlexReluGrad"),
        ("truncated", r"truncated or corrupt \.tflite"),
        ("text", r"not a \.tflite model"),
    ],
)
def test_inspect_rejects_a_bad_file_in_one_line(
    name: str,
    message: str,
    broken: dict[str, Path],
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert main(["inspect", str(broken[name])]) == 2
    out, err = capfd.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"invalid client model: {broken[name]}: ")
    assert re.search(message, err)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "resnet"], "model = 'resnet' is not valid: expected mlp, cnn"),
        (
            ["build", "mlp", "--optimizer", "rmsprop"],
            "optimizer = 'rmsprop' is not valid: expected sgd or adam",
        ),
    ],
    ids=["architecture", "optimizer"],
)
def test_build_rejects_a_bad_spec_in_one_line(
    args: list[str],
    message: str,
    tmp_path: Path,
    console: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    # A real process: a bad name must fail before TensorFlow is imported, whose
    # start-up logs would add lines to stderr.
    out = tmp_path / "model.tflite"
    proc = console(*args, "--out", str(out))
    assert proc.returncode == 2
    assert proc.stderr.startswith(f"error: {message}")
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not out.exists()


def test_train_one_epoch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    weights = tmp_path / "weights.npz"
    assert main(["train", "--epochs", "1", "--save", str(weights)]) == 0
    out = capsys.readouterr().out
    print(out)
    epoch = re.search(r"^epoch 1: .* test accuracy (\d\.\d+)$", out, re.MULTILINE)
    assert epoch is not None, out
    assert float(epoch[1]) > 0.78
    with np.load(weights) as saved:
        shapes = [saved[f"arr_{i}"].shape for i in range(len(saved.files))]
    assert shapes == [(784, 128), (128,), (128, 10), (10,)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["build", "mlp", "--out", "{dir}"],
            r"^error: --out {dir}: is a directory; expected a file path$",
        ),
        (
            ["build", "mlp", "--out", "/proc/nope/m.tflite"],
            r"^error: --out /proc/nope/m\.tflite: cannot write there ",
        ),
        (
            ["train", "--epochs", "0"],
            r"^error: --epochs = 0 is not valid: expected >= 1$",
        ),
        (
            ["train", "--save", "/proc/nope/w.npz"],
            r"^error: --save /proc/nope/w\.npz: cannot write there ",
        ),
        (
            ["train", "--seed", "-1"],
            r"^error: seed = -1 is not valid: expected 0\.\.4294967295$",
        ),
        (
            ["personalize", "{dir}", "--epochs", "0"],
            r"^error: --epochs = 0 is not valid: expected >= 1$",
        ),
        (
            ["personalize", "{dir}", "--epochs", "1", "--clients", "-2"],
            r"^error: --clients = -2 is not valid: expected >= 0 \(0: every client\)$",
        ),
        (
            ["export", "{dir}", "--out", "{dir}/m.tflite", "--report", "{dir}"],
            r"^error: --report {dir}: is a directory; expected a file path$",
        ),
    ],
    ids=[
        "build-out-dir",
        "build-out-unwritable",
        "epochs-0",
        "save",
        "seed",
        "personalize-epochs",
        "personalize-clients",
        "export-report-dir",
    ],
)
def test_outputs_and_settings_are_checked_before_any_work(
    args: list[str],
    message: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import fedtflite.centralized
    import fedtflite.models.build

    def trap(*a: object, **k: object) -> object:
        raise AssertionError("work started before the arguments were checked")

    monkeypatch.setattr(fedtflite.models.build, "build_model", trap)
    monkeypatch.setattr(fedtflite.centralized, "train_centralized", trap)
    args = [a.replace("{dir}", str(tmp_path)) for a in args]

    assert main(args) == 2

    out, err = capfd.readouterr()
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err
    assert re.search(message.replace("{dir}", re.escape(str(tmp_path))), err), err


def test_resume_without_a_run_directory_is_one_line(
    capfd: pytest.CaptureFixture[str],
) -> None:
    assert main(["simulate", "--resume", "--no-progress"]) == 2
    out, err = capfd.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--resume needs --out" in err


def test_partition_writes_the_split_without_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "split"
    code = main(
        [
            "partition",
            "--set",
            "partitioner=niid-bench-label",
            "--set",
            "classes-per-client=3",
            "--set",
            "num-clients=10",
            "--out",
            str(out),
        ]
    )

    assert code == 0
    assert "classes per client min 3, median 3, max 3" in capsys.readouterr().out
    with np.load(out / "partition.npz") as f:
        assert len(f["indices"]) == 60_000  # every class is held by some client
        assert len(f["offsets"]) == 11
    rows = (out / "partition.csv").read_text().splitlines()
    assert len(rows) == 11  # header + 10 clients
    assert (out / "partition.png").stat().st_size > 0


def test_partition_into_a_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "a_file"
    target.write_text("x")

    assert main(["partition", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is not a directory" in err
