"""Time the per-round checkpoint write; prints a markdown table.

The server writes ``checkpoint.npz`` after every round (global weights plus the
strategy's state). This times :func:`save_checkpoint` for the models' real
weight shapes (the built-in architectures' initial weights) with no strategy
state (FedAvg, FedProx), FedAvgM's momentum (one float32 copy) and FedAdam's
two float64 moments.

Usage: ``python benchmarks/checkpoint.py [--repeats N]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from fedtflite.models.architectures import ARCHITECTURES, init_weights
from fedtflite.simulation.checkpoint import Checkpoint, save_checkpoint


def _state(
    kind: str, weights: dict[str, np.ndarray]
) -> dict[str, dict[str, np.ndarray]]:
    if kind == "fedavgm":
        return {"momentum_vector": {str(i): w for i, w in enumerate(weights.values())}}
    if kind == "fedadam":
        moment = {k: w.astype(np.float64) for k, w in weights.items()}
        return {"m_t": moment, "v_t": moment}
    return {}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    print("| model | strategy state | parameters | file (MB) | write (ms, median) |")
    print("|---|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.npz"
        for name in ("mlp", "cnn"):
            arrays = init_weights(ARCHITECTURES[name], seed=0)
            weights = {f"a{i}": w for i, w in enumerate(arrays)}
            for kind in ("fedavg", "fedavgm", "fedadam"):
                ckpt = Checkpoint(1, {"model": name}, weights, _state(kind, weights))
                times = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    save_checkpoint(path, ckpt)
                    times.append(time.perf_counter() - start)
                size = path.stat().st_size / 1e6
                params = sum(w.size for w in arrays)
                print(
                    f"| {name} | {kind} | {params:,} | {size:.2f} | "
                    f"{1e3 * statistics.median(times):.2f} |"
                )


if __name__ == "__main__":
    main()
