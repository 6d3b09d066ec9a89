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

# the module, not fedtflite.orchestrator's `simulate` function of the same name
run_module = importlib.import_module("fedtflite.orchestrator.simulate")

pytestmark = pytest.mark.integration


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
            r"^error: num-clients=60001 is invalid; it must be in 1\.\.60000 ",
        ),
        (
            ["num-clients=10000", "min-partition-size=0"],
            r"^error: client \d+ of num-clients=10000 got no example with "
            r"partitioner=dirichlet; use fewer num-clients",
        ),
        (
            ["num-clients=10000", "min-partition-size=10"],
            r"^error: min-partition-size=10 is invalid for num-clients=10000: "
            r"it must be in 0\.\.6",
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
            ["model=nowhere.tflite"],
            r"^error: model = 'nowhere\.tflite': no such file",
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
            r"^error: availability = 'bernoulli:1\.5' is not valid: probability",
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
