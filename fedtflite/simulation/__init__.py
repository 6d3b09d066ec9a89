"""Federated simulation on Flower + Ray with LiteRT clients."""

from fedtflite.simulation.config import (
    SimulationConfig,
    config_from_mapping,
    load_config,
    parse_overrides,
)
from fedtflite.simulation.history import (
    History,
    RoundCallback,
    RoundRecord,
    read_history,
)
from fedtflite.simulation.run import simulate

__all__ = [
    "History",
    "RoundCallback",
    "RoundRecord",
    "SimulationConfig",
    "config_from_mapping",
    "load_config",
    "parse_overrides",
    "read_history",
    "simulate",
]
