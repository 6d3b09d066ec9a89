"""Scaling: round time and throughput against the number of client workers.

Every row is a real fedtflite simulation (Flower on Ray, LiteRT clients, real
Fashion-MNIST) of the ``mlp``, 1 local epoch, batch 32, FedAvg, ``k`` IID clients
per round out of ``max(1000, k)``, no federated evaluation, the central
evaluation after the last round only (as in :mod:`benchmarks.scale`). For each
worker count ``w``: the steady round (median of rounds 2..R-1), the throughput
(client updates per second, ``k / round``), the parallel efficiency
(``throughput(w) / (w * throughput(1))``, or against the smallest ``w`` run)
and the round against the physical floor of its clients divided by ``w``
(:mod:`benchmarks.floor`).

Locally each ``w`` gets a Ray started with ``w`` CPUs (one client actor per
CPU); with ``--ray-address`` it joins a running cluster of ``C`` CPUs (e.g.
``ray start --head`` plus ``ray start --address ...`` on other nodes, all with
the repository and the data at the same paths) and gets ``w`` workers through
``client-cpus = C / w``. Asking for more workers than cores only shares them.

**Where the driver binds**, without more cores (``--per-message``): with
automatic cohorts a round sends one message per worker, and the driver's CPU
per round grows with the messages. On this machine's own workers, the same
``k`` clients per round are sent as more messages (``clients-per-message``),
the driver's CPU per round is fitted as ``base + per_message * messages``
(least squares), and :func:`binding_workers` says from how many workers
``w`` that CPU (``w`` messages) would exceed the round's physical floor on
``w`` workers (the floor of one process divided by ``w``).

Usage (from the repository root)::

    python -m benchmarks.scaling [--workers 1,2] [--sizes 1000,10000]
        [--rounds 6] [--ray-address ADDRESS] [--plot benchmarks/scaling.png]
        [--json results.json]
    python -m benchmarks.scaling --per-message 500,63,16 [--sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.scale import (
    _Cpu,
    _table,
    measure_physical_floor,
    overhead_config,
    steady_seconds,
)
from fedtflite.orchestrator import simulate
from fedtflite.orchestrator.simulate import start_ray

HERE = Path(__file__).resolve().parent


def scaling_row(
    k: int, workers: int, rounds: int, out: Path, address: str
) -> dict[str, Any]:
    """One simulation of ``k`` clients per round on ``workers`` client workers."""
    import ray

    config = overhead_config(k, rounds, 1)
    if address:
        start_ray(address)
        cpus = float(ray.cluster_resources().get("CPU", 1.0))  # type: ignore[no-untyped-call]
        config = replace(config, ray_address=address, client_cpus=cpus / workers)
    else:
        start_ray("", num_cpus=workers)
    cpu = _Cpu()
    try:
        run_dir = out / f"k{k}-w{workers}"
        history = simulate(
            config, run_dir, callbacks=[cpu], progress=False, overwrite=True
        )
    finally:
        ray.shutdown()
    steady = steady_seconds(history.rounds)
    physical = measure_physical_floor(config, run_dir, server_round=2) / workers
    physical_cpu = (
        measure_physical_floor(config, run_dir, 2, clock=time.process_time) / workers
    )
    cpu_row = cpu.steady(rounds)
    middle = history.rounds[2:-1] or history.rounds[1:]
    return {
        "clients_per_round": k,
        "workers": workers,
        "round_s": steady,
        "throughput": k / steady,
        "physical_floor_s": physical,
        "physical_ratio": steady / physical,
        **cpu_row,
        "worker_cpu_ratio": cpu_row.get("worker_cpu_s", math.nan) / physical_cpu,
        "load": os.getloadavg()[0],
        "messages": history.rounds[2].messages,
        "compute_s": statistics.median(r.client_compute_seconds for r in middle),
    }


def per_message_row(
    k: int, clients_per_message: int, rounds: int, out: Path
) -> dict[str, Any]:
    """One simulation of ``k`` clients per round on this machine's workers,
    sent ``clients_per_message`` clients to a message (0: one per worker)."""
    extra = (f"clients-per-message={clients_per_message}",)
    config = overhead_config(k, rounds, 1, extra=extra)
    cpu = _Cpu()
    run_dir = out / f"k{k}-c{clients_per_message}"
    history = simulate(config, run_dir, callbacks=[cpu], progress=False, overwrite=True)
    return {
        "clients_per_round": k,
        "clients_per_message": clients_per_message,
        "messages": history.rounds[2].messages,
        "round_s": steady_seconds(history.rounds),
        "floor_one_process_s": measure_physical_floor(config, run_dir, server_round=2),
        **cpu.steady(rounds),
    }


def fit_line(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Least-squares ``(intercept, slope)`` of ``ys`` against ``xs`` (>= 2 distinct)."""
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        raise ValueError("a line needs at least two distinct x values")
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    return my - slope * mx, slope


def binding_workers(base: float, per_message: float, floor_one_process: float) -> float:
    """Workers from which the driver binds: the ``w`` where its CPU per round,
    ``base + per_message * w`` (one message per worker), equals the physical
    floor on ``w`` workers, ``floor_one_process / w``.

    The positive root of ``per_message * w**2 + base * w - floor_one_process``
    (``inf`` when messages cost nothing and the base alone never reaches it).
    """
    if per_message <= 0:
        return floor_one_process / base if base > 0 else math.inf
    disc = base * base + 4 * per_message * floor_one_process
    return (-base + math.sqrt(disc)) / (2 * per_message)


def per_message_table(rows: list[dict[str, Any]]) -> str:
    """The rows, then per size the fitted driver CPU and where it binds."""
    lines = [
        _table(
            rows,
            {
                "clients_per_round": "clients/round",
                "clients_per_message": "clients/message",
                "messages": "messages/round",
                "round_s": "round (s)",
                "driver_cpu_s": "driver CPU (s)",
                "worker_cpu_s": "busiest worker CPU (s)",
                "floor_one_process_s": "physical floor, one process (s)",
            },
        ),
        "",
        "| clients/round | driver CPU base (s) | driver CPU per message (ms) "
        "| driver binds from (workers) |",
        "|---:|---:|---:|---:|",
    ]
    for k in sorted({r["clients_per_round"] for r in rows}):
        same = [r for r in rows if r["clients_per_round"] == k]
        base, slope = fit_line(
            [float(r["messages"]) for r in same], [r["driver_cpu_s"] for r in same]
        )
        floor = statistics.median(r["floor_one_process_s"] for r in same)
        w = binding_workers(base, slope, floor)
        lines.append(f"| {k} | {base:.4f} | {1000 * slope:.2f} | {w:.1f} |")
    return "\n".join(lines)


def with_efficiency(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Add ``efficiency``: throughput per worker against the fewest workers run."""
    for k in {r["clients_per_round"] for r in rows}:
        same = [r for r in rows if r["clients_per_round"] == k]
        base = min(same, key=lambda r: r["workers"])
        for r in same:
            r["efficiency"] = (r["throughput"] / r["workers"]) / (
                base["throughput"] / base["workers"]
            )
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Throughput against workers (with perfect scaling), and efficiency."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    FigureCanvasAgg(fig)
    a, b = fig.subplots(1, 2)
    for k in sorted({r["clients_per_round"] for r in rows}):
        same = sorted(
            (r for r in rows if r["clients_per_round"] == k), key=lambda r: r["workers"]
        )
        w = [r["workers"] for r in same]
        line = a.plot(w, [r["throughput"] for r in same], "o-", label=f"{k}/round")
        per_worker = same[0]["throughput"] / same[0]["workers"]
        a.plot(w, [per_worker * x for x in w], ":", color=line[0].get_color())
        b.plot(w, [r["efficiency"] for r in same], "o-", label=f"{k}/round")
    a.set(xlabel="workers", ylabel="client updates / s", title="throughput (: ideal)")
    b.set(xlabel="workers", ylabel="efficiency", title="parallel efficiency")
    b.set_ylim(0, 1.1)
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    """Run every (size, workers) pair and print the table."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", default="1,2")
    p.add_argument("--sizes", default="1000,10000")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--ray-address", default="", help="join this Ray cluster")
    p.add_argument("--plot", type=Path, default=HERE / "scaling.png")
    p.add_argument("--json", type=Path, default=None, help="also write the rows")
    p.add_argument(
        "--per-message",
        default="",
        help="clients-per-message values: measure where the driver binds instead",
    )
    args = p.parse_args()
    rows = []
    if args.per_message:
        with tempfile.TemporaryDirectory(prefix="fedtflite-scaling-") as tmp:
            for k in (int(v) for v in args.sizes.split(",")):
                for c in (int(v) for v in args.per_message.split(",")):
                    rows.append(per_message_row(k, c, args.rounds, Path(tmp)))
        print(f"\n## Driver CPU per message (local Ray, {os.cpu_count()} cores)")
        print(per_message_table(rows))
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        return
    with tempfile.TemporaryDirectory(prefix="fedtflite-scaling-") as tmp:
        for k in (int(v) for v in args.sizes.split(",")):
            for w in (int(v) for v in args.workers.split(",")):
                rows.append(scaling_row(k, w, args.rounds, Path(tmp), args.ray_address))
    with_efficiency(rows)
    where = args.ray_address or f"local Ray, {os.cpu_count()} cores"
    print(f"\n## Scaling ({where}; mlp, 1 epoch, batch 32, IID)")
    print(
        _table(
            rows,
            {
                "clients_per_round": "clients/round",
                "workers": "workers",
                "messages": "messages/round",
                "round_s": "round (s)",
                "throughput": "updates/s",
                "efficiency": "efficiency",
                "physical_floor_s": "physical floor (s)",
                "physical_ratio": "round / physical floor",
                "worker_cpu_ratio": "worker CPU / floor CPU",
                "driver_cpu_s": "driver CPU (s)",
                "load": "load",
            },
        )
    )
    plot(rows, args.plot)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
