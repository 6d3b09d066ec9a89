"""Native start-up lines are dropped; every other stderr line is kept."""

from __future__ import annotations

import os

import pytest

from fedtflite.native_logs import (
    LITERT_START,
    RAY_WORKER_NOISE,
    TENSORFLOW_START,
    drop_forwarded_lines,
    dropping,
)

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


def test_forwarded_worker_noise_goes_and_real_worker_lines_stay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ray._private import worker as ray_worker
    from ray._private.ray_logging import WorkerStandardStreamDispatcher

    printed: list[list[str]] = []
    dispatcher = WorkerStandardStreamDispatcher()
    dispatcher.add_handler("other", lambda data: None)
    dispatcher.add_handler("ray_print_logs", lambda data: printed.append(data["lines"]))
    monkeypatch.setattr(ray_worker, "global_worker_stdstream_dispatcher", dispatcher)

    assert drop_forwarded_lines(RAY_WORKER_NOISE)
    assert drop_forwarded_lines(RAY_WORKER_NOISE)  # idempotent: wrapped once
    dispatcher.emit(
        {
            "pid": 7,
            "lines": [
                "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.",
                "ValueError: a real error",
            ],
        }
    )
    dispatcher.emit(
        {
            "pid": "raylet",
            "lines": [
                "Task ClientAppActor.terminate failed. There are 3 retries "
                "remaining, so "
                "the task will be retried. Error: ...",
            ],
        }
    )
    dispatcher.emit(
        {
            "pid": 8,
            "lines": [
                "\x1b[93mWARNING \x1b[0m:   Manually terminating ClientAppActor",
                "WARNING: a real warning",
            ],
        }
    )
    assert printed == [["ValueError: a real error"], ["WARNING: a real warning"]]


def test_errors_ray_pushes_to_the_driver_lose_the_noise_too(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ray's error listener prints "(raylet)" lines through print_to_stdstream
    # directly, not through the dispatcher's handler.
    from ray._private import worker as ray_worker
    from ray._private.ray_logging import WorkerStandardStreamDispatcher

    printed: list[tuple[list[str], bool]] = []

    def print_to_stdstream(data: dict[str, object], ignore_prefix: bool) -> None:
        printed.append((list(data["lines"]), ignore_prefix))  # type: ignore[call-overload]

    monkeypatch.setattr(ray_worker, "print_to_stdstream", print_to_stdstream)
    monkeypatch.setattr(
        ray_worker,
        "global_worker_stdstream_dispatcher",
        WorkerStandardStreamDispatcher(),
    )
    drop_forwarded_lines(RAY_WORKER_NOISE)
    drop_forwarded_lines(RAY_WORKER_NOISE)  # wrapped once
    noise = (
        "Task ClientAppActor.terminate failed. There are 3 retries remaining, so the "
        "task will be retried. Error: The actor is temporarily unavailable"
    )
    ray_worker.print_to_stdstream(
        {"lines": [noise], "pid": "raylet"}, ignore_prefix=False
    )
    ray_worker.print_to_stdstream(
        {"lines": ["Worker crashed: out of memory", noise], "pid": "raylet"},
        ignore_prefix=False,
    )
    assert printed == [(["Worker crashed: out of memory"], False)]
