"""fedtflite: simulate federated on-device training.

Thousands of simulated clients each run the very same trainable ``.tflite`` a
phone would run, through the LiteRT interpreter, on their own non-IID
Fashion-MNIST shard, while a Flower server aggregates their weights.

Importing ``fedtflite`` imports neither TensorFlow nor Flower; the names below
are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["ClientModel", "SimulationConfig", "load_config", "simulate"]
__version__ = "0.1.0"

_LAZY = {
    "ClientModel": "fedtflite.runtime",
    "SimulationConfig": "fedtflite.simulation",
    "load_config": "fedtflite.simulation",
    "simulate": "fedtflite.orchestrator",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fedtflite' has no attribute {name!r}")
