"""``flwr run .`` from the repository root, as a Flower user runs the app.

``flwr run`` starts a local SuperLink in simulation mode (it keeps running
afterwards), which runs the ServerApp and Flower's simulation on a Ray of its
own. The SuperLink gets its own ports and ``FLWR_HOME`` (a copy of
``experiments/flwr_home``), so it never joins another SuperLink on the machine,
and only it (with what it started) is stopped afterwards.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import pytest

from fedtflite.simulation import read_history

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
NUM_ROUNDS = 2
NO_TENSORFLOW_JOB = (
    '{"runtime_env": {"worker_process_setup_hook": '
    '"clients.no_tensorflow.block_tensorflow"}}'
)


@dataclass(frozen=True)
class FlwrRun:
    """What ``flwr run`` returned and the run directory it was given."""

    result: subprocess.CompletedProcess[str]
    run_dir: Path

    def output(self) -> str:
        return (self.result.stdout + self.result.stderr)[-4000:]


def _superlink_sessions(flwr_home: Path) -> set[int]:
    """Sessions of the ``flower-superlink`` processes logging under ``flwr_home``."""
    log = str(flwr_home / "local-superlink" / "superlink.log").encode()
    sessions = set()
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
            if log in args and any(a.endswith(b"flower-superlink") for a in args):
                sessions.add(os.getsid(int(cmdline.parent.name)))
        except OSError:  # it exited meanwhile
            continue
    return sessions


@pytest.fixture(scope="module")
def flwr_run(
    tmp_path_factory: pytest.TempPathFactory,
    free_port: Callable[[], int],
    end_sessions: Callable[[Collection[int]], None],
) -> FlwrRun:
    bin_dir = str(Path(sys.executable).parent)
    flwr = shutil.which("flwr", path=bin_dir)
    if flwr is None:
        pytest.skip("the `flwr` CLI is not installed next to this Python")
    tmp = tmp_path_factory.mktemp("flwr")
    home = tmp / "flwr_home"
    shutil.copytree(REPO / "experiments" / "flwr_home", home)
    run_dir = tmp / "run"
    env = {
        **os.environ,
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        "FLWR_HOME": str(home),
        "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
        "FLWR_LOCAL_SUPERLINK_HTTP_API_PORT": str(free_port()),
        "FLWR_LOCAL_CONTROL_API_PORT": str(free_port()),
        # As the README says: keeps TensorFlow out of the Ray workers the
        # SuperLink's simulation starts (Flower's Ray backend imports it).
        "RAY_JOB_CONFIG_JSON_ENV_VAR": NO_TENSORFLOW_JOB,
    }
    env.pop("RAY_ADDRESS", None)  # the simulation starts a Ray of its own
    run_config = (
        f"num-clients=6 num-rounds={NUM_ROUNDS} fraction-train=0.5 "
        f"fraction-evaluate=0.5 run-dir='{run_dir}'"
    )
    try:
        result = subprocess.run(
            [flwr, "run", ".", "--run-config", run_config, "--stream"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
    finally:
        end_sessions(_superlink_sessions(home))
    return FlwrRun(result, run_dir)


def test_flwr_run_streams_the_run_to_its_end(flwr_run: FlwrRun) -> None:
    assert flwr_run.result.returncode == 0, flwr_run.output()


def test_the_run_directory_holds_every_round_and_the_final_weights(
    flwr_run: FlwrRun,
) -> None:
    csv_path = flwr_run.run_dir / "history.csv"
    assert csv_path.is_file(), flwr_run.output()
    history = read_history(csv_path)

    assert [r.round for r in history] == list(range(NUM_ROUNDS + 1)), flwr_run.output()
    assert (flwr_run.run_dir / "final_weights.npz").is_file()
    assert history[-1].test_accuracy > history[0].test_accuracy + 0.3


def test_no_worker_loaded_tensorflow(flwr_run: FlwrRun) -> None:
    with (flwr_run.run_dir / "workers.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))

    assert rows, flwr_run.output()
    assert {r["tensorflow"] for r in rows} == {"0"}
