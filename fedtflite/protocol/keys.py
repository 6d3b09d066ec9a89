"""Keys of the records exchanged between the ServerApp and the ClientApp.

Flower's reply contract, per simulated client: a train reply holds one
``ArrayRecord`` under :data:`ARRAYS` and one ``MetricRecord`` under
:data:`METRICS` with :data:`NUM_EXAMPLES`; an evaluate reply holds the
``MetricRecord`` only. That is what every Flower strategy receives.

On the wire, one message carries a *cohort* of clients
(:mod:`fedtflite.algorithms.sampling`): its config lists them under
:data:`COHORT`, and its reply holds either the cohort's pre-aggregated
:data:`ARRAYS` and :data:`METRICS` or every client's own, keyed
``arrays.<client>`` / ``metrics.<client>`` (:func:`client_key`), plus a
:data:`STATUS` ConfigRecord saying which clients succeeded and which failed. The
ServerApp turns a cohort reply back into the per-client (or pre-aggregated)
replies above before a Flower strategy sees them.
"""

from __future__ import annotations

__all__ = [
    "ACC_GLOBAL",
    "ACC_PERSONAL",
    "ARRAYS",
    "COHORT",
    "COMPUTE_SECONDS",
    "CONFIG",
    "CONTROL",
    "CONTROL_DELTA_PREFIX",
    "ERRORS",
    "EVAL_ACCURACY",
    "EVAL_LOSS",
    "FAILED",
    "LOSS_GLOBAL",
    "LOSS_PERSONAL",
    "MAX_STEPS",
    "METRICS",
    "NUM_EXAMPLES",
    "OK",
    "PERSONALIZE",
    "PERSONALIZE_EPOCHS",
    "PER_CLIENT",
    "PROXIMAL_MU",
    "STATUS",
    "TENSORFLOW",
    "TOTAL_COMPUTE_SECONDS",
    "TRAIN_LOSS",
    "WORKER",
    "client_key",
]

ARRAYS = "arrays"
"""ArrayRecord of the weights, keyed by the model's parameter names a0, a1, ..."""
CONFIG = "config"
"""ConfigRecord of a message: the run's client settings plus :data:`COHORT`."""
METRICS = "metrics"
"""MetricRecord of a reply."""
COHORT = "cohort"
"""Config entry: the ids of the simulated clients (partitions) a message is for."""
MAX_STEPS = "max-steps"
"""Config entry (``straggler-policy = "partial"``): per client of :data:`COHORT`,
in its order, the most ``train`` steps it may run before the round's deadline
(-1: its full local work). Absent when every client does its full work."""
PER_CLIENT = "per-client"
"""Config entry: 1 to reply every client's update, 0 to pre-aggregate the cohort."""
NUM_EXAMPLES = "num-examples"
TRAIN_LOSS = "train-loss"
COMPUTE_SECONDS = "compute-seconds"
"""On-device seconds of one client: restore + train steps + parameters (or infer);
pre-aggregated, the cohort's example-weighted mean."""
EVAL_LOSS = "eval-loss"
EVAL_ACCURACY = "eval-accuracy"
STATUS = "status"
"""ConfigRecord of a cohort reply: :data:`OK`, :data:`FAILED`, :data:`ERRORS`,
:data:`TOTAL_COMPUTE_SECONDS`, :data:`WORKER`."""
OK = "ok"
"""Ids of the clients that succeeded."""
FAILED = "failed"
"""Ids of the clients that failed (non-finite loss or weights, bad data...)."""
ERRORS = "errors"
"""One line per failed client, in the order of :data:`FAILED`."""
TOTAL_COMPUTE_SECONDS = "total-compute-seconds"
"""Sum of the cohort's clients' on-device seconds."""
WORKER = "worker"
"""``<ray node id>:<pid>`` of the process that ran the cohort."""
TENSORFLOW = "tensorflow"
"""1 when TensorFlow is loaded in the process that ran the cohort (it never
should be: clients need LiteRT only)."""
CONTROL = "control"
"""SCAFFOLD: ArrayRecord of the global control variate ``c`` in a train message."""
CONTROL_DELTA_PREFIX = "dc."
"""SCAFFOLD: prefix of the control deltas' keys (``dc.a0`` ...) in a train reply."""
PROXIMAL_MU = "proximal-mu"
"""FedProx: the proximal coefficient Flower's ``FedProx`` puts in the train config."""


PERSONALIZE = "personalize"
"""Action of the personalization messages (message type ``evaluate.personalize``)
sent after the last round; their config holds :data:`PERSONALIZE_EPOCHS`, and
their reply one MetricRecord per client (``metrics.<client>``) with
:data:`NUM_EXAMPLES` (local test examples) and the four metrics below."""
PERSONALIZE_EPOCHS = "personalize-epochs"
ACC_GLOBAL = "acc-global"
ACC_PERSONAL = "acc-personal"
LOSS_GLOBAL = "loss-global"
LOSS_PERSONAL = "loss-personal"


def client_key(record: str, client_id: int) -> str:
    """Key of one client's record in a per-client cohort reply: ``arrays.17``."""
    return f"{record}.{client_id}"
