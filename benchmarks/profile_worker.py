"""Where a worker's time goes: cProfile of the ClientApp's train handler on a cohort.

One real cohort message (what one of 2 workers gets at 1 000 clients per round:
500 clients of 1 000 IID, 60 examples each, the ``mlp``, 1 local epoch, batch
32, pre-aggregated FedAvg reply) handled by ``clients.client_app.train`` in this
process, without Ray: real ``.tflite``, LiteRT, Fashion-MNIST. The worker is
warmed by a first message (interpreter, data, splits), then the second one is
profiled. Prints the time by part (LiteRT ``Invoke``, tensor copies, resize and
allocation, our Python) against the physical floor of the same clients
(:mod:`benchmarks.floor`), then the top functions.

Usage::

    python -m benchmarks.profile_worker [--clients 500] [--registered 1000]
        [--top 25]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from flwr.app import Array, ArrayRecord, ConfigRecord, Context, Message, RecordDict

from benchmarks.floor import lean_clients, physical_floor
from clients.client_app import train
from fedtflite.data import load_train_uint8
from fedtflite.data.partition_file import load_partition
from fedtflite.protocol import keys
from fedtflite.runtime import ClientModel
from fedtflite.simulation import load_config
from fedtflite.simulation.prepare import PreparedRun, prepare_run

_PARTS = {  # cProfile function name -> part of the table
    "Invoke": "LiteRT Invoke",
    "SetTensor": "tensor copies (SetTensor/GetTensor)",
    "GetTensor": "tensor copies (SetTensor/GetTensor)",
    "ResizeInputTensor": "resize + AllocateTensors",
    "AllocateTensors": "resize + AllocateTensors",
}


def _flower_task() -> None:
    """Messages need Flower's task identity, which a running app would set."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr in ("_run_id", "_task_id", "_node_id"):
        setattr(TaskIdentity, attr, 1)


def _message(run: PreparedRun, cohort: list[int], server_round: int) -> Message:
    model = ClientModel(Path(run.settings.model_path))
    names = [p.name for p in model.contract.parameters]
    arrays = ArrayRecord(
        array_dict={n: Array(w) for n, w in zip(names, model.parameters(), strict=True)}
    )
    config = ConfigRecord(run.settings.to_config())
    config["server-round"] = server_round
    config[keys.COHORT] = cohort
    config[keys.PER_CLIENT] = 0
    content = RecordDict({keys.ARRAYS: arrays, keys.CONFIG: config})
    return Message(content=content, message_type="train", dst_node_id=1)


def profile_cohort(clients: int, registered: int) -> dict[str, Any]:
    """Profile one warm cohort message, then time it against its physical floor.

    Returns the profile (``stats``, in CPU time), the message's CPU time under
    the profiler (``profiled``) and, the median of three interleaved repeats,
    its wall and CPU time without the profiler (``wall``, ``cpu``) and the
    physical floor of its clients in wall and CPU time (``floor_wall``,
    ``floor_cpu``) and their necessary work (``lean_wall``, ``lean_cpu``:
    :func:`benchmarks.floor.lean_clients`). CPU time (``time.process_time``) is
    the steadier figure on a loaded machine.
    """
    _flower_task()
    config = load_config(
        None,
        [
            "model=mlp",
            "local-epochs=1",
            "batch-size=32",
            "learning-rate=0.05",
            f"num-clients={registered}",
            "partitioner=iid",
            "client-test-fraction=0.0",
            "fraction-evaluate=0.0",
            "seed=0",
        ],
    )
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="fedtflite-profile-") as tmp:
        run = prepare_run(config, Path(tmp) / "run")
        cohort = list(range(clients))
        context = Context(
            run_id=1, node_id=1, node_config={}, state=RecordDict(), run_config={}
        )
        train(_message(run, cohort, 1), context)  # warm-up: worker, splits
        msg = _message(run, cohort, 2)
        # CPU time: what the process did, not what the machine's load added
        profiler = cProfile.Profile(time.process_time)
        start = time.process_time()
        profiler.runcall(train, msg, context)
        profiled = time.process_time() - start
        model = Path(run.settings.model_path).read_bytes()
        sizes = [60_000 // registered] * clients
        images, labels = load_train_uint8()
        spec = run.settings.partition
        parts = load_partition(Path(run.settings.partition_path), spec)
        data = [(images[parts[c]], labels[parts[c]], c) for c in cohort]
        for _ in range(3):  # interleaved, so all three see the same load
            for name, clock in (
                ("wall", time.perf_counter),
                ("cpu", time.process_time),
            ):
                start = clock()
                train(msg, context)
                times.setdefault(name, []).append(clock() - start)
                floor = physical_floor(
                    model, sizes, epochs=1, batch_size=32, clock=clock
                )
                times.setdefault("floor_" + name, []).append(floor)
                lean = lean_clients(
                    model,
                    data,
                    epochs=1,
                    batch_size=32,
                    learning_rate=0.05,
                    seed=0,
                    server_round=2,
                    clock=clock,
                )
                times.setdefault("lean_" + name, []).append(lean)
    result: dict[str, Any] = {k: statistics.median(v) for k, v in times.items()}
    return {**result, "stats": pstats.Stats(profiler), "profiled": profiled}


def by_part(stats: pstats.Stats, wall: float) -> dict[str, float]:
    """Seconds per part: LiteRT calls by name, the rest is our Python and numpy."""
    parts: dict[str, float] = {}
    raw = stats.stats  # type: ignore[attr-defined]
    for (_, _, name), (_, _, tottime, _, _) in raw.items():
        name = name.rstrip(">")  # built-ins read "<built-in method ...Invoke>"
        part = next((p for k, p in _PARTS.items() if name.endswith(k)), None)
        if part is not None:
            parts[part] = parts.get(part, 0.0) + tottime
    parts["everything else (Python, numpy, records)"] = wall - sum(parts.values())
    return parts


def main() -> None:
    """Print the breakdown and the top functions."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clients", type=int, default=500)
    p.add_argument("--registered", type=int, default=1000)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    r = profile_cohort(args.clients, args.registered)
    stats, wall = r["stats"], r["profiled"]
    print(
        f"cohort of {args.clients} clients: wall {r['wall']:.3f} s against a physical "
        f"floor of {r['floor_wall']:.3f} s ({r['wall'] / r['floor_wall']:.2f}x); CPU "
        f"{r['cpu']:.3f} s against {r['floor_cpu']:.3f} s "
        f"({r['cpu'] / r['floor_cpu']:.2f}x); CPU under cProfile {wall:.3f} s"
    )
    print(
        f"the same clients' necessary work, as tight as Python allows "
        f"(benchmarks.floor.lean_clients): wall {r['lean_wall']:.3f} s "
        f"({r['lean_wall'] / r['floor_wall']:.2f}x), CPU {r['lean_cpu']:.3f} s "
        f"({r['lean_cpu'] / r['floor_cpu']:.2f}x)"
    )
    print("| part | s | % of the message |\n|---|---:|---:|")
    for part, seconds in by_part(stats, wall).items():
        print(f"| {part} | {seconds:.3f} | {100 * seconds / wall:.0f} |")
    out = io.StringIO()
    stats.stream = out
    stats.sort_stats("tottime").print_stats(args.top)
    print(out.getvalue())


if __name__ == "__main__":
    main()
