"""Keras baseline: the fedtflite experiment as a plain Flower simulation.

Flower's quickstart-tensorflow pattern (Message API, ``model.fit`` per client,
FedAvg), on fedtflite's partition and initial weights: the comparison row of the
benchmarks. Names load on first use, so Ray workers importing the ClientApp do not
import the runner.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["run_keras_baseline"]


def __getattr__(name: str) -> Any:
    if name == "run_keras_baseline":
        return importlib.import_module(
            "benchmarks.keras_baseline.run"
        ).run_keras_baseline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
