"""Run the Keras baseline: a plain Flower simulation with ``model.fit`` clients.

The same experiment as a fedtflite run (Dirichlet partition, rounds, local epochs,
batch size, learning rate, initial weights), written the way Flower's
quickstart-tensorflow is, on Flower's simulation engine over Ray. Every Ray worker
imports TensorFlow: that is the baseline's cost. Run from the repository root::

    python -m benchmarks.keras_baseline.run --num-clients 20 --clients-per-round 10

Peak memory is each process's high-water mark (``VmHWM`` in ``/proc``, Linux only),
read at the last round: the driver (ServerApp, Keras), the Flower client actors,
and the sum over the driver and every process it started (Ray's included).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from typing import Any

from flwr.simulation import run_simulation

from benchmarks.keras_baseline.client_app import ClientConfig, make_client_app
from benchmarks.keras_baseline.server_app import RoundRow, ServerConfig, make_server_app
from benchmarks.procfs import memory_snapshot
from fedtflite.data import PartitionSpec

__all__ = ["run_keras_baseline"]


def run_keras_baseline(
    num_clients: int,
    clients_per_round: int,
    num_rounds: int,
    local_epochs: int,
    batch_size: int,
    learning_rate: float,
    alpha: float,
    seed: int,
    client_test_fraction: float = 0.2,
    client_cpus: float = 1.0,
    *,
    federated_evaluation: bool = False,
    min_partition_size: int = 10,
) -> dict[str, Any]:
    """Run the baseline once and time it.

    Parameters
    ----------
    num_clients, clients_per_round, num_rounds : int
        The federation: simulated clients, clients trained per round, rounds.
    local_epochs, batch_size : int
        ``model.fit`` per client.
    learning_rate : float
        Plain SGD.
    alpha : float
        Dirichlet label skew of the partition.
    seed : int
        Seeds the partition, the local test splits and the initial weights.
    client_test_fraction : float, optional
        Share of each client's examples held out (not trained on). Default 0.2.
    client_cpus : float, optional
        CPUs per Flower client actor. Default 1 (one actor per core).
    federated_evaluation : bool, optional
        Also evaluate on the sampled clients' local test splits. Default False.
    min_partition_size : int, optional
        As fedtflite's ``min-partition-size``. Default 10.

    Returns
    -------
    dict
        ``round_seconds`` and ``accuracy`` (central test accuracy) for rounds
        ``1..num_rounds``; ``initial_accuracy``; ``startup_seconds`` (call to the
        end of the initial evaluation); ``wall_seconds``; ``peak_rss_mb``,
        ``driver_peak_rss_mb``, ``worker_peak_rss_mb``, ``num_workers``.

    Raises
    ------
    RuntimeError
        The simulation ended before the last round (the cause is in Flower's log).
    """
    start = time.perf_counter()
    rows: list[RoundRow] = []
    memory: dict[str, Any] = {}
    startup = [0.0]

    def on_round(row: RoundRow) -> None:
        rows.append(row)
        if row.round == 0:
            startup[0] = time.perf_counter() - start
        if row.round == num_rounds:  # the client actors are still alive
            memory.update(memory_snapshot())

    partition = PartitionSpec(
        kind="dirichlet",
        num_clients=num_clients,
        alpha=alpha,
        seed=seed,
        min_partition_size=min_partition_size,
    )
    client_app = make_client_app(
        ClientConfig(
            partition=partition,
            client_test_fraction=client_test_fraction,
            seed=seed,
            local_epochs=local_epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
        )
    )
    server_app = make_server_app(
        ServerConfig(
            num_clients=num_clients,
            clients_per_round=clients_per_round,
            num_rounds=num_rounds,
            seed=seed,
            federated_evaluation=federated_evaluation,
        ),
        on_round,
    )
    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    flwr_logger.setLevel(logging.WARNING)
    try:
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=num_clients,
            backend_config={
                "client_resources": {"num_cpus": client_cpus, "num_gpus": 0.0}
            },
        )
    finally:
        flwr_logger.setLevel(level)
    if len(rows) != num_rounds + 1:
        raise RuntimeError(
            f"the simulation ended after {max(len(rows) - 1, 0)} of {num_rounds} "
            "rounds; see Flower's log above"
        )
    return {
        "round_seconds": [r.seconds for r in rows[1:]],
        "accuracy": [r.test_accuracy for r in rows[1:]],
        "initial_accuracy": rows[0].test_accuracy,
        "startup_seconds": startup[0],
        "wall_seconds": time.perf_counter() - start,
        **memory,
    }


def _print_table(result: dict[str, Any]) -> None:
    print("| round | seconds | test accuracy |")
    print("|---:|---:|---:|")
    print(
        f"| 0 | {result['startup_seconds']:.2f} (start-up) | "
        f"{result['initial_accuracy']:.4f} |"
    )
    for i, (sec, acc) in enumerate(
        zip(result["round_seconds"], result["accuracy"], strict=True), start=1
    ):
        print(f"| {i} | {sec:.2f} | {acc:.4f} |")
    steady = result["round_seconds"][1:]
    if steady:
        print(f"\nsteady round (median, rounds 2+): {statistics.median(steady):.2f} s")
    print(f"wall {result['wall_seconds']:.1f} s")
    if "peak_rss_mb" in result:
        print(
            f"peak RSS: driver {result['driver_peak_rss_mb']:.0f} MB, "
            f"client actor {result['worker_peak_rss_mb']:.0f} MB "
            f"(x{result['num_workers']}), all processes {result['peak_rss_mb']:.0f} MB"
        )


def main() -> None:
    """``python -m benchmarks.keras_baseline.run``: one run, one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add = parser.add_argument
    add("--num-clients", type=int, default=20)
    add("--clients-per-round", type=int, default=10)
    add("--num-rounds", type=int, default=3)
    add("--local-epochs", type=int, default=1)
    add("--batch-size", type=int, default=32)
    add("--learning-rate", type=float, default=0.05)
    add("--alpha", type=float, default=0.5)
    add("--seed", type=int, default=42)
    add("--client-test-fraction", type=float, default=0.2)
    add("--client-cpus", type=float, default=1.0)
    add("--min-partition-size", type=int, default=10)
    add(
        "--federated-evaluation",
        action="store_true",
        help="also evaluate on the sampled clients' local test splits",
    )
    args = parser.parse_args()
    result = run_keras_baseline(
        args.num_clients,
        args.clients_per_round,
        args.num_rounds,
        args.local_epochs,
        args.batch_size,
        args.learning_rate,
        args.alpha,
        args.seed,
        args.client_test_fraction,
        args.client_cpus,
        federated_evaluation=args.federated_evaluation,
        min_partition_size=args.min_partition_size,
    )
    _print_table(result)


if __name__ == "__main__":
    main()
