"""The simulation on a real two-node Ray cluster started by the ``ray`` CLI.

Both nodes run on this machine, on loopback, each with one CPU, so Flower gets
one client actor per node. The cluster has its own temporary directory and ports
and is stopped by ending the sessions of its ``ray start`` commands: ``ray stop``
would stop every Ray process on the machine.
"""

from __future__ import annotations

import csv
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fedtflite.orchestrator import simulate
from fedtflite.simulation import History, SimulationConfig

pytestmark = pytest.mark.integration

NUM_ROUNDS = 2


@dataclass(frozen=True)
class RayCluster:
    """A running cluster: its GCS address and the ids of its (alive) nodes."""

    address: str
    node_ids: frozenset[str]


def _ray_cli() -> str:
    ray = shutil.which("ray", path=str(Path(sys.executable).parent))
    if ray is None:
        pytest.skip("the `ray` CLI is not installed next to this Python")
    return ray


def _ray_start(args: list[str], log: Path) -> int:
    """Run ``ray start`` in a new session; its id (the daemons stay in it)."""
    with log.open("a") as out:
        proc = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
    if rc != 0:
        pytest.fail(f"{' '.join(args)} exited with {rc}:\n{log.read_text()[-3000:]}")
    return proc.pid


def _alive_node_ids(
    address: str, expected: int, timeout: float = 60.0
) -> frozenset[str]:
    import ray

    ray.init(address=address, logging_level=logging.ERROR, configure_logging=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            nodes = ray.nodes()  # type: ignore[no-untyped-call]
            ids = frozenset(n["NodeID"] for n in nodes if n["Alive"])
            if len(ids) == expected or time.monotonic() > deadline:
                return ids
            time.sleep(0.5)
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def cluster(
    free_port: Callable[[], int], end_sessions: Callable[[Collection[int]], None]
) -> Iterator[RayCluster]:
    ray = _ray_cli()
    # Short: Ray's Unix sockets live under it, and a socket path has <= 107 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="fedtflite-ray-"))
    log = temp_dir / "ray-start.log"
    address = f"127.0.0.1:{free_port()}"
    node = [
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        "--disable-usage-stats",
        # Ports 0 = the OS picks; the named ports' defaults are fixed numbers that
        # another Ray on the machine may hold.
        "--min-worker-port=0",
        "--max-worker-port=0",
        f"--dashboard-agent-listen-port={free_port()}",
    ]
    sessions: list[int] = []
    try:
        sessions.append(
            _ray_start(
                [
                    ray,
                    "start",
                    "--head",
                    f"--port={address.rsplit(':', 1)[1]}",
                    f"--temp-dir={temp_dir}",
                    "--include-dashboard=false",
                    f"--ray-client-server-port={free_port()}",
                    *node,
                ],
                log,
            )
        )
        sessions.append(_ray_start([ray, "start", f"--address={address}", *node], log))
        node_ids = _alive_node_ids(address, expected=2)
        assert len(node_ids) == 2, f"{len(node_ids)} of 2 Ray nodes came up"
        yield RayCluster(address, node_ids)
    finally:
        end_sessions(sessions)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def run(
    cluster: RayCluster,
    small_config: Callable[..., SimulationConfig],
    tmp_path_factory: pytest.TempPathFactory,
) -> History:
    config = small_config(
        f'ray-address="{cluster.address}"', f"num-rounds={NUM_ROUNDS}"
    )
    return simulate(config, tmp_path_factory.mktemp("cluster") / "run", progress=False)


def test_every_round_runs_and_accuracy_improves(run: History) -> None:
    first, last = run.rounds[0], run.rounds[-1]

    assert [r.round for r in run.rounds] == list(range(NUM_ROUNDS + 1))
    assert all(r.clients_failed == 0 for r in run.rounds)
    assert last.test_accuracy > first.test_accuracy + 0.3


def test_clients_ran_on_both_nodes_of_the_cluster(
    run: History, cluster: RayCluster
) -> None:
    with (run.run_dir / "workers.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    nodes = {row["worker"].split(":")[0] for row in rows}

    assert {int(row["round"]) for row in rows} == set(range(1, NUM_ROUNDS + 1))
    assert nodes == cluster.node_ids
    assert {row["tensorflow"] for row in rows} == {"0"}  # LiteRT only
