"""Every export format of finished runs, side by side; prints a markdown table.

For each run directory: the trainable file with the final weights, the float32
inference file and its fp16, dynamic-range and full-integer int8 quantizations,
each measured through LiteRT on the 10,000 test images (accuracy, loss) and
timed at batch 1 (median of 200 single-image ``infer`` calls, one thread), as
``fedtflite export`` does for one format.

Usage: ``python benchmarks/export_formats.py RUN_DIR [RUN_DIR ...]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fedtflite.data import load_fashion_mnist
from fedtflite.export import (
    QUANTIZATIONS,
    REPRESENTATIVE_IMAGES,
    inference_model,
    load_finished_run,
    measure,
    with_initial_weights,
)
from fedtflite.export.inference import representative_images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    print(
        "| run (model) | format | size (KiB) | vs float | test accuracy | test loss "
        "| latency (ms/image) |"
    )
    print("|---|---|--:|--:|--:|--:|--:|")
    for run_dir in args.runs:
        run = load_finished_run(run_dir)
        data = load_fashion_mnist(run.data_dir or None)
        test = data.test
        calibration = representative_images(
            data.train.images, REPRESENTATIVE_IMAGES, run.seed
        )
        files = {
            "float32 (trainable)": with_initial_weights(run.model_bytes, run.weights),
            "float32 (infer only)": inference_model(run.model, run.weights),
        }
        for q in QUANTIZATIONS:
            files[q] = inference_model(
                run.model, run.weights, quantize=q, representative=calibration
            )
        base = len(files["float32 (infer only)"])
        for name, model in files.items():
            r = measure(name, model, test.images, test.labels)
            print(
                f"| {run_dir.name} ({run.model}) | {name} | {r.size_bytes / 1024:.1f} "
                f"| {base / r.size_bytes:.2f}x | {100 * r.accuracy:.2f} % "
                f"| {r.loss:.4f} | {r.latency_ms:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
