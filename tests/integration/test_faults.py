"""Faults from outside, as a user meets them: signals, a second writer, a run
whose rounds all fail, resources the cluster cannot give.

Every case runs ``fedtflite simulate`` as a real process in its own session
(so a signal reaches its whole process group, as Ctrl-C in a terminal does),
with real Ray, real LiteRT clients and real Fashion-MNIST, and checks what a
user sees: the exit code, one line on stderr, no traceback, the run directory,
and no process of the session left behind.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from fedtflite.simulation import read_history
from fedtflite.simulation.checkpoint import CHECKPOINT_FILE, load_checkpoint
from fedtflite.simulation.history import TIME_COLUMNS

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SMALL = [
    "num-clients=6",
    "fraction-train=0.5",
    "fraction-evaluate=0.5",
    "seed=3",
]


def _simulate(out: Path, *settings: str, extra: Collection[str] = ()) -> list[str]:
    args = [sys.executable, "-m", "fedtflite.cli", "simulate", "--no-progress"]
    for s in [*SMALL, *settings]:
        args += ["--set", s]
    return [*args, "--out", str(out), *extra]


def _start(command: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        start_new_session=True,  # its own process group, as a terminal job
    )


def _session(sid: int) -> list[str]:
    """Names of the live processes of session ``sid`` (zombies excluded)."""
    names = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] != "Z" and int(fields[3]) == sid:
            names.append(stat[stat.index("(") + 1 : stat.rindex(")")])
    return names


def _session_ends(sid: int, within: float = 10.0) -> list[str]:
    """What is left of session ``sid`` after ``within`` seconds at most (Ray's
    idle workers exit on their own once their raylet is gone)."""
    deadline = time.monotonic() + within
    while (left := _session(sid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def _wait_rounds(run_dir: Path, rounds: int, proc: subprocess.Popen[str]) -> None:
    """Until ``history.csv`` holds round ``rounds`` (and so its checkpoint)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if len(read_history(run_dir / "history.csv")) > rounds:
                return
        except (OSError, ValueError, TypeError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"{run_dir} did not reach round {rounds}")


@pytest.fixture
def started(
    end_sessions: Callable[[Collection[int]], None],
) -> Iterator[Callable[[list[str]], subprocess.Popen[str]]]:
    """``started(command)``: a :func:`_start`-ed process, its session ended after."""
    procs: list[subprocess.Popen[str]] = []

    def start(command: list[str]) -> subprocess.Popen[str]:
        procs.append(_start(command))
        return procs[-1]

    yield start
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.communicate()
    end_sessions({p.pid for p in procs})


def _stop(proc: subprocess.Popen[str], sig: int) -> tuple[int, str, float]:
    """Signal the process group; the exit code, stderr and seconds to exit."""
    start = time.monotonic()
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err, time.monotonic() - start


def _error_line(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    return lines[0]


def test_a_second_writer_is_refused_and_sigterm_ends_the_first(
    tmp_path: Path, started: Callable[[list[str]], subprocess.Popen[str]]
) -> None:
    out = tmp_path / "run"
    first = started(_simulate(out, "num-rounds=200"))
    _wait_rounds(out, 2, first)

    t = time.monotonic()
    second = subprocess.run(
        _simulate(out, "num-rounds=200", extra=["--resume"]),
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=60,
    )
    assert time.monotonic() - t < 10
    assert second.returncode == 2
    assert _error_line(second.stderr) == (
        f"error: run directory {out} is in use by another run (pid {first.pid}); "
        "wait for it to end or use another --out"
    )

    code, err, seconds = _stop(first, signal.SIGTERM)

    assert code == 143 and seconds < 20, (code, seconds, err)
    line = _error_line(err)
    assert line.startswith("error: interrupted by SIGTERM: the run stopped after round")
    rows = read_history(out / "history.csv")
    checkpoint = load_checkpoint(out / CHECKPOINT_FILE)
    assert checkpoint is not None
    assert [r.round for r in rows] == list(range(checkpoint.round + 1))
    assert _session_ends(first.pid) == []


def test_a_run_whose_rounds_all_fail_exits_3_in_one_line(
    tmp_path: Path, started: Callable[[list[str]], subprocess.Popen[str]]
) -> None:
    proc = started(_simulate(tmp_path / "run", "num-rounds=2", "learning-rate=1e30"))
    out, err = proc.communicate(timeout=300)

    assert proc.returncode == 3, err
    line = _error_line(err)
    assert line.startswith(
        "error: 2 of 2 rounds aggregated no update, every sampled client failed "
        "(round 1-2); first failure: client "
    )
    assert "final test accuracy" not in out


def test_client_cpus_the_cluster_cannot_give_fails_in_one_line(
    tmp_path: Path, started: Callable[[list[str]], subprocess.Popen[str]]
) -> None:
    cpus = os.cpu_count() or 1
    proc = started(_simulate(tmp_path / "run", f"client-cpus={cpus + 1}"))
    t = time.monotonic()
    _, err = proc.communicate(timeout=120)

    assert time.monotonic() - t < 60
    assert proc.returncode == 2, err
    assert re.fullmatch(
        rf"error: client-cpus = {cpus + 1}(\.0)? is not valid: expected <= {cpus}, "
        rf"the most CPUs of one node of this Ray cluster \({cpus} CPUs in all; "
        r"e\.g\. 1\)",
        _error_line(err),
    ), err
    assert _session_ends(proc.pid) == []


@pytest.mark.slow
def test_sigint_stops_and_the_hinted_resume_ends_as_an_uninterrupted_run(
    tmp_path: Path, started: Callable[[list[str]], subprocess.Popen[str]]
) -> None:
    rounds = "num-rounds=30"
    cut = tmp_path / "cut"
    proc = started(_simulate(cut, rounds))
    _wait_rounds(cut, 3, proc)

    code, err, seconds = _stop(proc, signal.SIGINT)

    assert code == 130 and seconds < 15, (code, seconds, err)
    line = _error_line(err)
    hint = re.search(r"; resume with: fedtflite (simulate .*)$", line)
    assert hint is not None, line
    assert _session_ends(proc.pid) == []

    resumed = started(
        [sys.executable, "-m", "fedtflite.cli", *hint[1].split(), "--no-progress"]
    )
    whole = started(_simulate(tmp_path / "whole", rounds))
    for p in (resumed, whole):
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err

    def rows(run_dir: Path) -> list[dict[str, object]]:
        out = []
        for r in read_history(run_dir / "history.csv"):
            d = asdict(r)
            for k in TIME_COLUMNS:
                d.pop(k)
            out.append({k: repr(v) for k, v in d.items()})  # NaN == NaN
        return out

    assert rows(cut) == rows(tmp_path / "whole")
    with (
        np.load(cut / "final_weights.npz") as a,
        np.load(tmp_path / "whole" / "final_weights.npz") as b,
    ):
        for name in b.files:
            np.testing.assert_array_equal(a[name], b[name])


@pytest.mark.slow
def test_a_killed_worker_is_replaced_and_costs_no_client(
    tmp_path: Path, started: Callable[[list[str]], subprocess.Popen[str]]
) -> None:
    out = tmp_path / "run"
    proc = started(_simulate(out, "num-rounds=60", "num-clients=50"))
    _wait_rounds(out, 2, proc)
    rows = (out / "workers.csv").read_text().splitlines()[1:]
    victim = int(rows[-1].split(",")[1].rsplit(":", 1)[1])  # <node>:<pid>
    os.kill(victim, signal.SIGKILL)

    _, err = proc.communicate(timeout=600)

    assert proc.returncode == 0, err
    assert "Traceback" not in err
    history = read_history(out / "history.csv")
    assert [r.round for r in history] == list(range(61))
    assert sum(r.clients_failed for r in history) == 0  # its message was retried
    after = [
        line.split(",") for line in (out / "workers.csv").read_text().splitlines()[1:]
    ]
    last_round = [w for r, w, *_ in after if r == "60"]
    assert len(last_round) == 2  # full strength: a new process took its place
    assert not any(w.endswith(f":{victim}") for w in last_round)


@pytest.mark.slow
def test_sixty_thousand_one_example_clients_run_and_weigh_zero_in_evaluation(
    tmp_path: Path, started: Callable[[list[str]], subprocess.Popen[str]]
) -> None:
    out = tmp_path / "run"
    proc = started(
        _simulate(
            out,
            "num-rounds=1",
            "num-clients=60000",
            "partitioner=iid",
            "fraction-train=0.1",
            "fraction-evaluate=0.1",
        )
    )
    _, err = proc.communicate(timeout=900)

    assert proc.returncode == 0, err
    assert "Traceback" not in err and "IndexError" not in err
    assert "no client holds a local test example" in err
    last = read_history(out / "history.csv")[-1]
    assert last.clients_failed == 0 and last.clients_ok == 6000
    assert 0.0 < last.test_accuracy <= 1.0
