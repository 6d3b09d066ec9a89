"""The run-directory lock: one writer, a busy directory named by its holder's pid,
a dead holder's lock taken over, no silent overwrite.

The holders are real processes (``python -c``) holding the real ``flock``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fedtflite.errors import ConfigError, RunDirBusyError
from fedtflite.rundir import LOCK_FILE, lock_run_dir

REPO = Path(__file__).resolve().parents[1]


def _holder(run_dir: Path) -> subprocess.Popen[str]:
    """A process that takes ``run_dir``'s lock, says so, and sleeps."""
    code = (
        "import sys, time\n"
        "from fedtflite.rundir import lock_run_dir\n"
        "lock = lock_run_dir(sys.argv[1])\n"
        "print('locked', flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(run_dir)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _holder(run_dir)
    try:
        start = time.monotonic()
        with pytest.raises(RunDirBusyError) as e:
            lock_run_dir(run_dir, resume=True)
        assert time.monotonic() - start < 1.0
        assert str(e.value) == (
            f"run directory {run_dir} is in use by another run (pid {proc.pid}); "
            "wait for it to end or use another --out"
        )
    finally:
        proc.kill()
        proc.wait()


def test_the_lock_of_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    proc = _holder(run_dir)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run_dir / LOCK_FILE).read_text().split()[0] == str(proc.pid)  # stale

    lock = lock_run_dir(run_dir, resume=True)

    assert (run_dir / LOCK_FILE).read_text().split()[0] == str(os.getpid())
    lock.release()
    assert (run_dir / LOCK_FILE).read_text() == ""


def test_released_lock_can_be_taken_again(tmp_path: Path) -> None:
    first = lock_run_dir(tmp_path / "run")
    with pytest.raises(RunDirBusyError):  # a second descriptor, same process
        lock_run_dir(tmp_path / "run", resume=True)
    first.release()
    lock_run_dir(tmp_path / "run", resume=True).release()


def test_a_released_lock_held_by_a_forked_child_is_waited_for(tmp_path: Path) -> None:
    # A child forked while a run held the lock shares its open file, so the
    # flock outlives the run's release until the child closes it (seen as a
    # rare RunDirBusyError when a resume followed a crashed run on Ray).
    first = lock_run_dir(tmp_path / "run")
    assert first._fd is not None
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(0.3)"], pass_fds=(first._fd,)
    )
    try:
        first.release()  # pid cleared; the child still holds the flock

        lock_run_dir(tmp_path / "run", resume=True).release()
    finally:
        child.kill()
        child.wait()


def test_a_directory_with_another_run_needs_resume_or_overwrite(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "client_state").mkdir(parents=True)
    for name in ("history.csv", "config.toml", "final_weights.npz"):
        (run_dir / name).write_text(name)

    with pytest.raises(ConfigError, match=r"already holds files \(client_state, "):
        lock_run_dir(run_dir)
    lock_run_dir(run_dir, resume=True).release()
    assert (run_dir / "history.csv").is_file()  # resume keeps everything

    lock_run_dir(run_dir, overwrite=True).release()

    assert sorted(p.name for p in run_dir.iterdir()) == [LOCK_FILE, "config.toml"]


def test_abandon_removes_only_a_directory_it_created(tmp_path: Path) -> None:
    made = lock_run_dir(tmp_path / "new")
    made.abandon()
    assert not (tmp_path / "new").exists()

    (tmp_path / "old").mkdir()
    kept = lock_run_dir(tmp_path / "old")
    kept.abandon()
    assert (tmp_path / "old").is_dir()


def test_a_file_or_an_unwritable_place_is_refused(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not a directory"):
        lock_run_dir(tmp_path / "file")
    with pytest.raises(ConfigError, match=r"^run directory /proc/x/run: cannot write"):
        lock_run_dir("/proc/x/run")
