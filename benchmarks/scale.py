"""Scale: round time against the LiteRT floor, a Keras baseline, memory, start-up.

Every row is a real fedtflite simulation (Flower on Ray, LiteRT clients, real
Fashion-MNIST) of the ``mlp``, 1 local epoch, batch 32, FedAvg:

1. **Overhead.** ``k`` clients per round out of ``max(1000, k)`` IID clients with no
   local test split (60 training examples each with 1 000 clients, 6 with
   10 000), no federated evaluation, the central evaluation only after the last
   round. Steady round = median of rounds 2..R-1 (round 1 pays the workers' set-up,
   round R the evaluation). Two floors, each divided by the number of worker
   processes: the *runtime* floor is the round-2 clients through
   ``ClientModel`` (``restore`` + ``set_learning_rate`` + ``fit`` +
   ``parameters``, batching included) back to back in one interpreter in this
   process; the *physical* floor (:mod:`benchmarks.floor`, independent of
   fedtflite) is the same clients' bare LiteRT ``Invoke`` calls: ``restore``,
   full-batch ``train`` steps with inputs prepared and tensors allocated once,
   ``parameters``. Ratios = steady round / floor.
2. **Keras baseline** (``benchmarks/keras_baseline``, Flower's quickstart-
   tensorflow pattern): the same experiment on both, 1 000 Dirichlet(0.5) clients,
   ``k`` per round, central evaluation every round in both.
3. **Memory.** Peak RSS of a client worker and of the whole run (driver, Ray,
   workers) at 1 000 and 10 000 registered clients, and how many workers have
   TensorFlow loaded (from ``/proc``).
4. **Start-up.** From ``simulate`` to the first round, by part, with a cold
   local Ray (started by the run) and joining a running one.
5. **Cost growth.** Round time against clients per round and local epochs:
   ``benchmarks/scale.png``.

Usage (from the repository root; about 20 minutes on 2 cores)::

    python -m benchmarks.scale [--sizes 10,100,1000,10000] [--rounds 7]
        [--keras-sizes 100,1000] [--keras-rounds 20,5] [--epochs 1,2,5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.floor import physical_floor
from benchmarks.procfs import client_actors, cpu_seconds, memory_snapshot
from fedtflite.algorithms.sampling import Phase, flower_sample_size, sample_clients
from fedtflite.data import load_fashion_mnist, split_local_test
from fedtflite.data.partition_file import load_partition
from fedtflite.orchestrator import simulate
from fedtflite.orchestrator.simulate import start_ray
from fedtflite.runtime import ClientModel
from fedtflite.simulation import RoundRecord, SimulationConfig, load_config

HERE = Path(__file__).resolve().parent
COMMON = ("model=mlp", "local-epochs=1", "batch-size=32", "learning-rate=0.05")


class _Memory:
    """Takes the memory snapshot at the last round, while the workers live."""

    def __init__(self, last_round: int):
        self.last_round = last_round
        self.result: dict[str, Any] = {}

    def on_round(self, record: RoundRecord) -> None:
        if record.round == self.last_round:
            self.result = memory_snapshot()

    def on_end(self) -> None:
        pass


class _Cpu:
    """CPU seconds per round: the driver (this process, every thread: Flower's
    server and engine, our strategy) and each client actor (from ``/proc``, in
    10 ms ticks). Unlike wall time, CPU time hardly depends on what else the
    machine runs."""

    def __init__(self) -> None:
        self.rounds: dict[int, tuple[float, float, float]] = {}
        self._actors: list[int] = []
        self._last: tuple[float, dict[int, float]] | None = None

    def on_round(self, record: RoundRecord) -> None:
        self._actors = self._actors or client_actors()
        now = (time.process_time(), {p: cpu_seconds(p) for p in self._actors})
        if self._last is not None:
            driver = now[0] - self._last[0]
            work = [c - self._last[1].get(p, 0.0) for p, c in now[1].items()]
            self.rounds[record.round] = (driver, max(work, default=0.0), sum(work))
        self._last = now

    def steady(self, last: int) -> dict[str, float]:
        """Medians over rounds 2..last-1: driver, busiest worker, all workers."""
        rows = [v for r, v in self.rounds.items() if 2 <= r < last] or list(
            self.rounds.values()
        )
        if not rows:
            return {}
        driver, busiest, total = (statistics.median(c) for c in zip(*rows, strict=True))
        return {
            "driver_cpu_s": driver,
            "worker_cpu_s": busiest,
            "workers_cpu_s": total,
        }

    def on_end(self) -> None:
        pass


def _workers() -> int:
    return os.cpu_count() or 1  # client-cpus = 1: one actor per core


def overhead_config(
    k: int,
    rounds: int,
    epochs: int = 1,
    *,
    registered: int | None = None,
    extra: tuple[str, ...] = (),
) -> SimulationConfig:
    """The overhead set-up: ``k`` of ``registered`` (default ``max(1000, k)``) IID
    clients a round, no local test split, no federated evaluation, the central
    evaluation after the last round only; ``extra`` overrides go on top."""
    n = max(1000, k) if registered is None else registered
    return load_config(
        None,
        [
            *COMMON,
            f"local-epochs={epochs}",
            f"num-clients={n}",
            "partitioner=iid",
            "client-test-fraction=0.0",
            f"fraction-train={k / n}",
            f"min-train-clients={k}",
            "fraction-evaluate=0.0",
            f"num-rounds={rounds}",
            f"evaluate-every={rounds}",
            "seed=0",
            *extra,
        ],
    )


def _round_clients(
    config: SimulationConfig, run_dir: Path, server_round: int
) -> list[tuple[int, np.ndarray, np.ndarray]]:
    """``(client id, images, labels)`` of the clients the run sampled in a round."""
    parts = load_partition(run_dir / "partition.npz", config.partition_spec())
    train = load_fashion_mnist().train
    k = flower_sample_size(
        config.num_clients, config.fraction_train, config.min_train_clients
    )
    data = []
    for cid in sample_clients(
        config.seed, server_round, Phase.TRAIN, config.num_clients, k
    ):
        idx, _ = split_local_test(
            parts[cid], config.client_test_fraction, config.seed, client_id=int(cid)
        )
        data.append((int(cid), train.images[idx], train.labels[idx]))
    return data


def measure_floor(config: SimulationConfig, run_dir: Path, server_round: int) -> float:
    """Seconds of one round's clients through ``ClientModel``, one process.

    The *runtime* floor: the clients the run sampled in ``server_round``, their
    data gathered first; timed: ``restore``, ``set_learning_rate``, ``fit`` (the
    ``train`` steps and their batches), ``parameters``, as the worker does.
    """
    model = ClientModel(run_dir / "model.tflite")
    data = _round_clients(config, run_dir, server_round)
    weights = model.parameters()
    start = time.perf_counter()
    for cid, x, y in data:
        model.restore(weights)
        model.set_learning_rate(config.learning_rate)
        model.fit(
            x,
            y,
            epochs=config.local_epochs,
            batch_size=config.batch_size,
            rng=np.random.default_rng([config.seed, server_round, cid]),
        )
        model.parameters()
    return time.perf_counter() - start


def measure_physical_floor(
    config: SimulationConfig,
    run_dir: Path,
    server_round: int,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds of one round's clients as bare LiteRT ``Invoke`` calls, one process.

    The *physical* floor (:func:`benchmarks.floor.physical_floor`): the same
    clients' example counts, full-batch steps with inputs prepared and tensors
    allocated once; the median of three repeats, timed by ``clock`` (wall
    time, or ``time.process_time`` for CPU time).
    """
    sizes = [len(y) for _, _, y in _round_clients(config, run_dir, server_round)]
    data = (run_dir / "model.tflite").read_bytes()
    return statistics.median(
        physical_floor(
            data,
            sizes,
            epochs=config.local_epochs,
            batch_size=config.batch_size,
            clock=clock,
        )
        for _ in range(3)
    )


def steady_seconds(rows: tuple[RoundRecord, ...]) -> float:
    """Median round seconds of rounds 2..R-1 (round 1 pays the workers' set-up,
    round R the evaluation); of rounds 2..R when there are fewer."""
    middle = [r.seconds for r in rows[2:-1]] or [r.seconds for r in rows[1:]]
    return statistics.median(middle)


def overhead_row(k: int, rounds: int, epochs: int, out: Path) -> dict[str, Any]:
    """One fedtflite run at ``k`` clients per round, with its floor and memory."""
    config = overhead_config(k, rounds, epochs)
    memory, cpu = _Memory(rounds), _Cpu()
    run_dir = out / f"k{k}-e{epochs}"
    history = simulate(
        config, run_dir, callbacks=[memory, cpu], progress=False, overwrite=True
    )
    floor = measure_floor(config, run_dir, server_round=2) / _workers()
    physical = measure_physical_floor(config, run_dir, server_round=2) / _workers()
    physical_cpu = (
        measure_physical_floor(config, run_dir, 2, clock=time.process_time) / _workers()
    )
    steady = steady_seconds(history.rounds)
    cpu_row = cpu.steady(rounds)
    middle = history.rounds[2:-1] or history.rounds[1:]
    return {
        "clients_per_round": k,
        "registered": config.num_clients,
        "examples_per_client": 60_000 // config.num_clients,
        "local_epochs": epochs,
        "round_s": steady,
        "floor_s": floor,
        "ratio": steady / floor,
        "physical_floor_s": physical,
        "physical_ratio": steady / physical,
        **cpu_row,
        "physical_floor_cpu_s": physical_cpu,
        "worker_cpu_ratio": cpu_row.get("worker_cpu_s", math.nan) / physical_cpu,
        "load": os.getloadavg()[0],
        "first_round_s": history.rounds[1].seconds,
        "compute_s": statistics.median(r.client_compute_seconds for r in middle),
        "messages": history.rounds[2].messages,
        **memory.result,
    }


def keras_rows(k: int, rounds: int, out: Path) -> dict[str, Any]:
    """The same experiment with Keras clients and with fedtflite."""
    from benchmarks.keras_baseline.run import run_keras_baseline

    keras = run_keras_baseline(
        num_clients=1000,
        clients_per_round=k,
        num_rounds=rounds,
        local_epochs=1,
        batch_size=32,
        learning_rate=0.05,
        alpha=0.5,
        seed=0,
        client_test_fraction=0.2,
    )
    config = load_config(
        None,
        [
            *COMMON,
            "num-clients=1000",
            "partitioner=dirichlet",
            "alpha=0.5",
            "client-test-fraction=0.2",
            f"fraction-train={k / 1000}",
            f"min-train-clients={k}",
            "fraction-evaluate=0.0",
            f"num-rounds={rounds}",
            "seed=0",
        ],
    )
    history = simulate(config, out / f"keras-k{k}", progress=False, overwrite=True)
    ours = statistics.median(r.seconds for r in history.rounds[2:])
    theirs = statistics.median(keras["round_seconds"][1:])
    return {
        "clients_per_round": k,
        "rounds": rounds,
        "fedtflite_round_s": ours,
        "keras_round_s": theirs,
        "speedup": theirs / ours,
        "fedtflite_accuracy": history.final_accuracy,
        "keras_accuracy": keras["accuracy"][-1],
        "keras_worker_peak_rss_mb": keras.get("worker_peak_rss_mb", 0.0),
        "keras_peak_rss_mb": keras.get("peak_rss_mb", 0.0),
    }


def command_startup(out: Path) -> dict[str, Any]:
    """``fedtflite simulate`` as a user types it: launch to its start-up log line.

    Includes the interpreter start and every import; the run's own parts are
    parsed from its log line ``start-up to the first round: model 0.00, ...``.
    """
    marker = "start-up to the first round: "
    cmd = [sys.executable, "-m", "fedtflite.cli", "simulate", "--no-progress"]
    cmd += ["--out", str(out / "startup-command"), "--set", "num-rounds=1"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    row: dict[str, Any] = {"mode": "`fedtflite simulate` (cold Ray)"}
    for line in proc.stderr:
        if marker in line:
            row["command"] = time.perf_counter() - start
            parts = line.split(marker, 1)[1].removesuffix(" s\n")
            for item in parts.split(", "):
                key, value = item.rsplit(" ", 1)
                row[key] = float(value)
            break
    proc.wait(timeout=300)
    return row


def startup_rows(out: Path) -> list[dict[str, Any]]:
    """Start-up to the first round: the command, a cold local Ray, a running Ray."""
    config = load_config(None, [*COMMON, "num-rounds=1"])
    rows = [command_startup(out)]
    cold = simulate(config, out / "startup-cold", progress=False, overwrite=True)
    rows.append({"mode": "started by the run", **cold.startup})
    import ray

    start_ray("", num_cpus=os.cpu_count())  # as `ray start --head` would
    try:
        warm = simulate(config, out / "startup-warm", progress=False, overwrite=True)
    finally:
        ray.shutdown()
    rows.append({"mode": "already running", **warm.startup})
    return rows


def _table(rows: list[dict[str, Any]], columns: dict[str, str]) -> str:
    head = "| " + " | ".join(columns.values()) + " |"
    lines = [head, "|" + "---:|" * len(columns)]
    for r in rows:
        cells = []
        for key in columns:
            v = r.get(key, "")
            cells.append(f"{v:.3g}" if isinstance(v, float) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(sizes: list[dict[str, Any]], epochs: list[dict[str, Any]], path: Path) -> None:
    """Round time and floor against clients per round, and against local epochs."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    a, b = fig.subplots(1, 2)
    k = [r["clients_per_round"] for r in sizes]
    a.loglog(k, [r["round_s"] for r in sizes], "o-", label="fedtflite round")
    a.loglog(k, [r["floor_s"] for r in sizes], "s--", label="LiteRT floor")
    a.set(xlabel="clients per round", ylabel="seconds", title="round time")
    a.grid(alpha=0.3, which="both")
    a.legend()
    e = [r["local_epochs"] for r in epochs]
    b.plot(e, [r["round_s"] for r in epochs], "o-", label="fedtflite round")
    b.plot(e, [r["floor_s"] for r in epochs], "s--", label="LiteRT floor")
    b.set(
        xlabel="local epochs",
        ylabel="seconds",
        title=f"{epochs[0]['clients_per_round'] if epochs else ''} clients per round",
    )
    b.grid(alpha=0.3)
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v]


def main() -> None:
    """Run every section and print its table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10,100,1000,10000")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--epochs", default="1,2,5", help="local epochs at 1000 per round")
    p.add_argument("--keras-sizes", default="100,1000")
    p.add_argument("--keras-rounds", default="20,5")
    p.add_argument("--skip", default="", help="sections to skip: keras,startup,epochs")
    p.add_argument("--quick", action="store_true", help="10,100 clients, 4 rounds")
    p.add_argument("--json", type=Path, default=None, help="also write the results")
    args = p.parse_args()
    if args.quick:
        args.sizes, args.rounds, args.epochs = "10,100", 4, "1"
        args.keras_sizes, args.keras_rounds = "100", "3"
    skip = set(args.skip.split(","))
    results: dict[str, Any] = {"machine": f"{os.cpu_count()} cores"}
    with tempfile.TemporaryDirectory(prefix="fedtflite-scale-") as tmp:
        out = Path(tmp)
        results["overhead"] = [
            overhead_row(k, args.rounds, 1, out) for k in _ints(args.sizes)
        ]
        print(
            "\n## Overhead: steady round time / LiteRT floor (mlp, 1 epoch, batch 32)"
        )
        print(
            _table(
                results["overhead"],
                {
                    "clients_per_round": "clients/round",
                    "registered": "registered",
                    "examples_per_client": "examples/client",
                    "messages": "messages/round",
                    "round_s": "round (s)",
                    "floor_s": "runtime floor (s)",
                    "ratio": "round / runtime floor",
                    "physical_floor_s": "physical floor (s)",
                    "physical_ratio": "round / physical floor",
                    "worker_cpu_s": "busiest worker CPU (s)",
                    "physical_floor_cpu_s": "physical floor CPU (s)",
                    "worker_cpu_ratio": "worker CPU / floor CPU",
                    "driver_cpu_s": "driver CPU (s)",
                    "load": "load",
                    "first_round_s": "round 1 (s)",
                    "worker_peak_rss_mb": "worker peak RSS (MiB)",
                    "peak_rss_mb": "run peak RSS (MiB)",
                    "workers_with_tensorflow": "workers with TF",
                },
            )
        )
        results["epochs"] = []
        if "epochs" not in skip:
            k = max(k for k in _ints(args.sizes) if k <= 1000)
            for e in _ints(args.epochs):
                row = next(
                    (
                        r
                        for r in results["overhead"]
                        if r["clients_per_round"] == k and e == 1
                    ),
                    None,
                )
                results["epochs"].append(row or overhead_row(k, args.rounds, e, out))
            print(f"\n## Local epochs at {k} clients per round")
            print(
                _table(
                    results["epochs"],
                    {
                        "local_epochs": "local epochs",
                        "round_s": "round (s)",
                        "floor_s": "runtime floor (s)",
                        "ratio": "ratio",
                        "physical_floor_s": "physical floor (s)",
                        "physical_ratio": "physical ratio",
                    },
                )
            )
            plot(results["overhead"], results["epochs"], HERE / "scale.png")
        if "keras" not in skip:
            results["keras"] = [
                keras_rows(k, r, out)
                for k, r in zip(
                    _ints(args.keras_sizes), _ints(args.keras_rounds), strict=True
                )
            ]
            print("\n## fedtflite vs Flower + Keras (1000 Dirichlet(0.5) clients)")
            print(
                _table(
                    results["keras"],
                    {
                        "clients_per_round": "clients/round",
                        "rounds": "rounds",
                        "fedtflite_round_s": "fedtflite round (s)",
                        "keras_round_s": "Keras round (s)",
                        "speedup": "speed-up",
                        "fedtflite_accuracy": "fedtflite acc.",
                        "keras_accuracy": "Keras acc.",
                        "keras_worker_peak_rss_mb": "Keras worker RSS (MiB)",
                    },
                )
            )
        if "startup" not in skip:
            results["startup"] = startup_rows(out)
            print("\n## Start-up to the first round (s)")
            print(
                _table(
                    results["startup"],
                    {
                        "mode": "Ray",
                        "model": "model",
                        "data": "data",
                        "partition": "partition",
                        "ray": "Ray start/join",
                        "flower": "Flower engine + initial eval",
                        "total": "total in simulate()",
                        "command": "from the command",
                    },
                )
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
