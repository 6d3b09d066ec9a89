"""Keys of the records exchanged between the ServerApp and the ClientApp.

Flower's reply contract: a train reply holds one ``ArrayRecord`` under
:data:`ARRAYS` and one ``MetricRecord`` under :data:`METRICS` with
:data:`NUM_EXAMPLES`; an evaluate reply holds the ``MetricRecord`` only.
"""

from __future__ import annotations

__all__ = [
    "ARRAYS",
    "CLIENT_ID",
    "COMPUTE_SECONDS",
    "CONFIG",
    "CONTROL",
    "CONTROL_DELTA_PREFIX",
    "EVAL_ACCURACY",
    "EVAL_LOSS",
    "METRICS",
    "NUM_EXAMPLES",
    "PROXIMAL_MU",
    "TRAIN_LOSS",
]

ARRAYS = "arrays"
"""ArrayRecord of the weights, keyed by the model's parameter names a0, a1, ..."""
CONFIG = "config"
"""ConfigRecord of a message: the run's client settings plus :data:`CLIENT_ID`."""
METRICS = "metrics"
"""MetricRecord of a reply."""
CLIENT_ID = "client-id"
"""The simulated client (partition) a message is for, chosen by the server."""
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
COMPUTE_SECONDS = "compute-seconds"
"""On-device seconds: restore + train steps + parameters (or infer)."""
EVAL_LOSS = "eval-loss"
EVAL_ACCURACY = "eval-accuracy"
CONTROL = "control"
"""SCAFFOLD: ArrayRecord of the global control variate ``c`` in a train message."""
CONTROL_DELTA_PREFIX = "dc."
"""SCAFFOLD: prefix of the control deltas' keys (``dc.a0`` ...) in a train reply."""
PROXIMAL_MU = "proximal-mu"
"""FedProx: the proximal coefficient Flower's ``FedProx`` puts in the train config."""
