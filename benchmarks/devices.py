"""The device machinery's cost: round time with ``devices = "none"`` and
``"lognormal"`` side by side, at 1 000 clients per round.

Both runs are real fedtflite simulations (Flower on Ray, LiteRT clients, real
Fashion-MNIST) of the ``mlp``, 1 local epoch, batch 32, FedAvg, in
:mod:`benchmarks.scale`'s overhead set-up (:func:`benchmarks.scale.overhead_config`):
``k`` of ``n`` IID clients per round, no local test split, no federated
evaluation, the central evaluation after the last round only; no deadline and no
over-commitment (so both train the same clients). Steady round = median of
rounds 2..R-1. The runs alternate (none, lognormal, none, lognormal, ...) so
that a shift in the machine's load hits both.

The machinery itself (planning a round: who is online, the sample, every
client's finish time, the clock, the participation counts) is also timed
directly: :meth:`fedtflite.devices.VirtualRun.plan_round` for the same rounds,
median of ``--plans`` calls, as a share of the steady round.

Usage (from the repository root; about 4 minutes on 2 cores)::

    python -m benchmarks.devices [--clients-per-round 1000] [--registered 10000]
        [--rounds 6] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.scale import overhead_config, steady_seconds
from fedtflite.devices import VirtualRun
from fedtflite.orchestrator import simulate
from fedtflite.runtime import ClientModel
from fedtflite.simulation import SimulationConfig
from fedtflite.simulation.prepare import prepare_run


def _config(k: int, n: int, rounds: int, devices: str) -> SimulationConfig:
    return overhead_config(k, rounds, registered=n, extra=(f"devices={devices!r}",))


def plan_seconds(config: SimulationConfig, run_dir: Path, calls: int) -> float:
    """Median seconds of one :meth:`VirtualRun.plan_round` of ``config``'s rounds."""
    with prepare_run(config, run_dir) as run:
        run.wait()
        assert run.planner is not None
        planner = run.planner
        model = ClientModel(Path(run.settings.model_path))
    k = round(config.num_clients * config.fraction_train)
    weights = sum(w.nbytes for w in model.parameters())  # down and up
    virtual = VirtualRun(planner)
    times = []
    for r in range(1, calls + 1):
        start = time.perf_counter()
        virtual.plan_round(r, k, weights, weights)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients-per-round", type=int, default=1000)
    p.add_argument("--registered", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--plans", type=int, default=200)
    args = p.parse_args()
    k, n = args.clients_per_round, args.registered
    steady: dict[str, list[float]] = {"none": [], "lognormal": []}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for rep in range(args.repeats):
            for devices in steady:
                config = _config(k, n, args.rounds, devices)
                history = simulate(config, out / f"{devices}-{rep}", progress=False)
                steady[devices].append(steady_seconds(history.rounds))
                print(f"{devices} run {rep}: steady round {steady[devices][-1]:.3f} s")
        plan = {
            d: plan_seconds(
                _config(k, n, args.rounds, d), out / f"plan-{d}", args.plans
            )
            for d in steady
        }
    none, logn = (statistics.median(steady[d]) for d in ("none", "lognormal"))
    print()
    print(
        "| devices | clients/round | registered | steady round (s) | "
        "plan_round (ms) | plan / round |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for d, s in (("none", none), ("lognormal", logn)):
        print(
            f"| {d} | {k} | {n} | {s:.3f} | {plan[d] * 1e3:.2f} | "
            f"{plan[d] / s * 100:.2f} % |"
        )
    print(f"\nlognormal / none steady round: {logn / none:.3f}")


if __name__ == "__main__":
    main()
