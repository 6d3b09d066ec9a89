"""The orchestrator: whole runs (:func:`simulate`) and grids of runs (sweep).

It sits above the Flower apps and reaches them as ``flwr run`` does, by their
component strings (:data:`~fedtflite.orchestrator.simulate.SERVER_APP`,
:data:`~fedtflite.orchestrator.simulate.CLIENT_APP`), never by import.
"""

from fedtflite.orchestrator.simulate import simulate

__all__ = ["simulate"]
