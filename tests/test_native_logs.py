"""Native start-up lines are dropped; every other stderr line is kept."""

from __future__ import annotations

import os

import pytest

from fedtflite.native_logs import LITERT_START, TENSORFLOW_START, dropping

TF_LINES = [
    "WARNING: All log messages before absl::InitializeLog() is called are written "
    "to STDERR",
    "I0000 00:00:1796208197.387809   30329 port.cc:153] oneDNN custom operations are "
    "on. You may see slightly different numerical results.",
    "I0000 00:00:1796208197.388166   30329 cudart_stub.cc:31] Could not find cuda "
    "drivers on your machine, GPU will not be used.",
    "E0000 00:00:1796208228.543795   30329 cuda_platform.cc:52] failed call to "
    "cuInit: INTERNAL: CUDA error",
]


def test_tensorflow_start_up_lines_go_and_others_stay(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with dropping(TENSORFLOW_START):
        for line in [*TF_LINES[:2], "W0000 real warning: x", *TF_LINES[2:]]:
            os.write(2, (line + "\n").encode())
        os.write(2, b"an error line\n")

    err = capfd.readouterr().err
    assert err == "W0000 real warning: x\nan error line\n"


def test_lines_written_before_an_exception_are_kept(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(ValueError), dropping(LITERT_START):
        os.write(2, b"INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n")
        os.write(2, b"why it failed\n")
        raise ValueError

    assert capfd.readouterr().err == "why it failed\n"
