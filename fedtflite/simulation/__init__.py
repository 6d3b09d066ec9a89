"""A simulation run's settings, files and set-up (below the Flower apps).

The config (:mod:`~fedtflite.simulation.config`), the run directory's
checkpoint and history, and :func:`~fedtflite.simulation.prepare.prepare_run`,
which both the orchestrator (:func:`fedtflite.simulate`) and the ServerApp under
``flwr run`` call. Client workers never import this package.
"""

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

__all__ = [
    "History",
    "RoundCallback",
    "RoundRecord",
    "SimulationConfig",
    "config_from_mapping",
    "load_config",
    "parse_overrides",
    "read_history",
]
