"""Time Fashion-MNIST loading and partitioning; prints markdown tables.

Cold load: a fresh process parses the gzipped IDX files (empty temporary cache).
Warm load: another fresh process reads the uint8 cache the cold one wrote. Each
load runs in its own process so the in-process memo never answers. Partitioning:
the 60 000 training labels, in this process, after a warm-up call (which pays the
one-time ``import datasets``).

Usage: ``python benchmarks/data_load.py [--data-dir DIR] [--repeats N]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from fedtflite.data import PartitionSpec, load_fashion_mnist, partition_indices
from fedtflite.errors import PartitionError

_REPO = Path(__file__).resolve().parents[1]
_LOAD_SNIPPET = """
import sys, time
from fedtflite.data import load_fashion_mnist
start = time.perf_counter()
load_fashion_mnist({data_dir!r}, cache_dir={cache_dir!r})
print(time.perf_counter() - start)
"""


def _load_in_fresh_process(data_dir: str | None, cache_dir: str) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(_REPO), *sys.path])}
    code = _LOAD_SNIPPET.format(data_dir=data_dir, cache_dir=cache_dir)
    done = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(done.stdout.split()[-1])


def _time_partition(
    labels: NDArray[np.int64], spec: PartitionSpec, repeats: int
) -> tuple[float, str]:
    """Median seconds of ``repeats`` runs and the client sizes, or the error."""
    times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        try:
            sizes = [len(p) for p in partition_indices(labels, spec)]
        except PartitionError as err:
            return time.perf_counter() - start, f"PartitionError: {str(err)[:90]}..."
        times.append(time.perf_counter() - start)
    return statistics.median(times), f"sizes {min(sizes)}..{max(sizes)}"


# (kind, clients, alpha, min-partition-size); pathological k=2, shard 2 per client.
_CASES = [
    *(("iid", n, 0.5, 10) for n in (100, 1000, 10_000)),
    *(("dirichlet", n, 0.5, 10) for n in (100, 1000)),
    ("dirichlet", 5000, 0.5, 1),
    *(("dirichlet", 10_000, 0.5, m) for m in (10, 1, 0)),
    ("pathological", 10_000, 0.5, 10),
    ("shard", 10_000, 0.5, 10),
    ("quantity", 10_000, 0.5, 1),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    print(f"| load | seconds (median of {args.repeats} fresh processes) |")
    print("|---|---|")
    cold, warm = [], []
    for _ in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache:
            cold.append(_load_in_fresh_process(args.data_dir, cache))
            warm.append(_load_in_fresh_process(args.data_dir, cache))
    print(
        f"| cold: parse gz IDX, validate, write cache | {statistics.median(cold):.3f} |"
    )
    print(f"| warm: read uint8 cache, to float32 | {statistics.median(warm):.3f} |")

    labels = load_fashion_mnist(args.data_dir).train.labels
    start = time.perf_counter()
    partition_indices(labels, PartitionSpec("iid", 10))
    warmup = time.perf_counter() - start
    print(f"\nFirst partition call, incl. `import datasets`: {warmup:.2f} s\n")

    print("| partitioner | clients | alpha | min-partition-size | seconds | result |")
    print("|---|---|---|---|---|---|")
    for kind, n, alpha, minimum in _CASES:
        spec = PartitionSpec(kind, n, alpha=alpha, min_partition_size=minimum)
        # 10 000-client Dirichlet fails (slowly); once is enough to show it.
        repeats = 1 if (kind, n) == ("dirichlet", 10_000) else args.repeats
        seconds, outcome = _time_partition(labels, spec, repeats)
        used = kind in ("dirichlet", "quantity")  # the others ignore both
        a, m = (alpha, minimum) if used else ("-", "-")
        print(f"| {kind} | {n} | {a} | {m} | {seconds:.3f} | {outcome} |")


if __name__ == "__main__":
    main()
