"""Settings that cannot work fail before Ray starts, in one line naming the key.

Each case runs ``fedtflite simulate --set ...`` as a user would (the CLI's
``main``); starting Ray is replaced by a trap, so a case that got as far as Ray
fails the test. The partition cases load the real Fashion-MNIST.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from fedtflite.cli import main

pytestmark = pytest.mark.integration
# The module (the package's ``simulate`` attribute is the function).
run_module = importlib.import_module("fedtflite.orchestrator.simulate")


@pytest.fixture(autouse=True)
def no_ray(monkeypatch: pytest.MonkeyPatch) -> None:
    def trap(*args: object, **kwargs: object) -> bool:
        raise AssertionError("Ray was started for a config that cannot work")

    monkeypatch.setattr(run_module, "start_ray", trap)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["alpha=0"], r"^error: alpha = 0\.0 is not valid: expected > 0$"),
        (["alpha=-1"], r"^error: alpha = -1\.0 is not valid: expected > 0$"),
        (
            ["partitioner=pathological", "classes-per-client=11"],
            r"^error: classes-per-client = 11 is not valid: expected 1\.\.10$",
        ),
        (
            ["classes-per-client=0"],
            r"^error: classes-per-client = 0 is not valid: expected 1\.\.10$",
        ),
        (
            ["num-clients=60001", "partitioner=iid"],
            r"^error: num-clients = 60001 is not valid: expected 1\.\.60000 ",
        ),
        (
            ["num-clients=10000", "min-partition-size=0"],
            r"^error: num-clients = 10000 is not valid: expected clients that each "
            r"get an example with partitioner = 'dirichlet', but client \d+ got "
            r"none; use fewer num-clients",
        ),
        (
            ["num-clients=10000", "min-partition-size=10"],
            r"^error: min-partition-size = 10 is not valid: expected 0\.\.6 for "
            r"num-clients = 10000",
        ),
        (
            ["num-client=5"],
            r"^error: unknown config key 'num-client'; did you mean num-clients",
        ),
        (
            ["learning-rate=fast"],
            r"^error: learning-rate = 'fast' is not valid: expected a number$",
        ),
        (
            ["strategy=fedsgd"],
            r"^error: strategy = 'fedsgd' is not valid: expected one of fedavg, ",
        ),
        (
            ["fraction-train=1.5"],
            r"^error: fraction-train = 1\.5 is not valid: expected a fraction",
        ),
        (
            ["client-test-fraction=0.0"],
            r"^error: fraction-evaluate = 0\.1 is not valid: expected 0 when "
            r"client-test-fraction = 0",
        ),
        (
            ["seed=-1"],
            r"^error: seed = -1 is not valid: expected 0\.\.4294967295$",
        ),
        (["q=-1"], r"^error: q = -1\.0 is not valid: expected >= 0"),
        (
            ["model=nowhere.tflite"],
            r"^error: model = 'nowhere\.tflite' is not valid: expected mlp, cnn, "
            r"2nn, fedavg-cnn or the path of a \.tflite or \.keras file \(there is "
            r"no such file\)$",
        ),
        (
            ["devices=fast"],
            r"^error: devices = 'fast' is not valid: expected none, lognormal, ",
        ),
        (
            ["availability=sometimes"],
            r"^error: availability = 'sometimes' is not valid: expected always, ",
        ),
        (
            ["availability='bernoulli:1.5'"],
            r"^error: availability = 'bernoulli:1\.5' is not valid: expected a "
            r"probability 0 < P <= 1, not 1\.5$",
        ),
        (
            ["over-commit=0.5"],
            r"^error: over-commit = 0\.5 is not valid: expected >= 1$",
        ),
        (
            ["round-deadline=-1"],
            r"^error: round-deadline = -1\.0 is not valid: expected seconds > 0",
        ),
        (
            ["straggler-policy=wait"],
            r"^error: straggler-policy = 'wait' is not valid: expected one of "
            r"drop, partial$",
        ),
        (
            ["step-seconds=-0.1"],
            r"^error: step-seconds = -0\.1 is not valid: expected seconds > 0",
        ),
    ],
)
def test_bad_setting_fails_in_one_line_before_ray(
    overrides: list[str],
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["simulate", "--no-progress", "--out", str(tmp_path / "run")]
    for o in overrides:
        args += ["--set", o]

    code = main(args)

    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert re.search(message, err), err


def test_a_config_file_that_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["simulate", str(tmp_path / "missing.toml")])

    assert code == 2
    assert capsys.readouterr().err.strip() == (
        f"error: {tmp_path / 'missing.toml'}: config file not found"
    )


def _one_line(code: int, err: str, message: str) -> None:
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert re.search(message, err.strip()), err


@pytest.fixture
def no_build(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolving the model (a TensorFlow build on a cache miss) fails the test."""
    import fedtflite.simulation.prepare as prepare_module

    def trap(*args: object, **kwargs: object) -> bytes:
        raise AssertionError("the model was resolved before the input was checked")

    monkeypatch.setattr(prepare_module, "resolve_model", trap)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, r"^error: .*: is a directory; expected a TOML config file$"),
        (b"num-rounds = 2\n\xff\xfe", r"^error: .*: not a text file \(byte 15 is "),
    ],
    ids=["directory", "not-utf8"],
)
def test_a_config_that_is_no_text_file(
    content: bytes | None,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "config.toml"
    if content is None:
        config.mkdir()
    else:
        config.write_bytes(content)

    code = main(["simulate", str(config), "--out", str(tmp_path / "run")])

    _one_line(code, capsys.readouterr().err, message)


@pytest.mark.usefixtures("no_build")
@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("file", r"^error: run directory .*/file: exists and is not a directory$"),
        (
            "/proc/nope/run",
            r"^error: run directory /proc/nope/run: cannot write there \(",
        ),
        (
            "other-run",
            r"^error: run directory .*/other-run already holds files \(config\.toml, "
            r"history\.csv\); go on from it with --resume, start it over with "
            r"--overwrite",
        ),
    ],
)
def test_an_out_that_cannot_take_the_run(
    out: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("a file")
    (tmp_path / "other-run").mkdir()
    (tmp_path / "other-run" / "config.toml").write_text("num-rounds = 2\n")
    (tmp_path / "other-run" / "history.csv").write_text("round\n0\n")

    code = main(["simulate", "--out", str(tmp_path / out)])

    _one_line(code, capsys.readouterr().err, message)
    assert (tmp_path / "other-run" / "history.csv").read_text() == "round\n0\n"


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "devices.csv",
            b"client_id,compute_factor,download_kbps,upload_kbps\n0,fast,1,1\n",
            r"^error: .*devices\.csv.*compute_factor",
        ),
        (
            # a pickle that would run os.system: refused, never executed
            "client_device_capacity",
            b"\x80\x02cposix\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03.",
            r"^error: .*client_device_capacity: refused: the pickle asks for ",
        ),
    ],
)
def test_a_bad_device_file_fails_in_one_line_before_ray(
    name: str,
    content: bytes,
    message: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    out = tmp_path / "run"
    code = main(
        [
            "simulate",
            "--no-progress",
            "--out",
            str(out),
            "--set",
            f"devices={str(path)!r}",
        ]
    )

    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert re.search(message, err, re.IGNORECASE), err


def test_a_step_that_cannot_be_measured_asks_to_pin_step_seconds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import fedtflite.simulation.prepare as prepare_module
    from fedtflite.errors import NonFiniteError

    def diverging(*args: object, **kwargs: object) -> float:
        raise NonFiniteError("the loss is nan")

    monkeypatch.setattr(prepare_module, "cached_step_seconds", diverging)

    code = main(
        ["simulate", "--out", str(tmp_path / "run"), "--set", "devices=lognormal"]
    )

    _one_line(
        code,
        capsys.readouterr().err,
        r"^error: step-seconds = 0\.0 is not valid: expected seconds > 0 here, e\.g\. "
        r"step-seconds = 0\.002: 0 measures a train step, which failed \(the loss "
        r"is nan\)$",
    )
