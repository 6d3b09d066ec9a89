"""The codec of a message for many clients and of its reply (encode and decode).

One Flower message carries several simulated clients (their ids under
:data:`~fedtflite.protocol.keys.COHORT`). Its reply (see
:mod:`fedtflite.protocol.keys`) holds a :class:`ReplyStatus` and either

- every successful client's own records, keyed ``arrays.<id>`` /
  ``metrics.<id>`` (*per-client*), or
- one pre-aggregated ``arrays`` / ``metrics`` pair: the example-weighted mean of
  the clients' weights with their summed ``num-examples`` as its weight.

The ClientApp builds a reply with :class:`TrainReplyEncoder` (or
:func:`evaluate_reply`); the ServerApp turns it back into what a Flower
strategy expects, one reply per client (or one pre-aggregated reply) plus one
error reply per failed client, with :func:`decode_reply`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.app.error import Error
from flwr.common.constant import ErrorCode

from fedtflite.algorithms.sampling import WeightedMean
from fedtflite.errors import ConfigError, WeightsMismatchError
from fedtflite.protocol import keys

__all__ = [
    "DecodedReply",
    "ReplyStatus",
    "TrainReplyEncoder",
    "array_record",
    "arrays_of",
    "decode_reply",
    "evaluate_reply",
    "message_config",
    "step_budgets",
]


def array_record(names: Sequence[str], arrays: Sequence[np.ndarray]) -> ArrayRecord:
    """An ArrayRecord of ``arrays`` keyed by the model's parameter ``names``."""
    return ArrayRecord(
        array_dict={n: Array(a) for n, a in zip(names, arrays, strict=True)}
    )


def arrays_of(record: ArrayRecord, names: Sequence[str], what: str) -> list[np.ndarray]:
    """The arrays of ``record`` in the order of ``names``.

    Raises
    ------
    WeightsMismatchError
        ``record`` lacks one of ``names`` (``what`` names the record).
    """
    missing = [n for n in names if n not in record]
    if missing:
        raise WeightsMismatchError(
            f"{what} lacks {missing}; the model's parameters are {list(names)}"
        )
    return [record[n].numpy() for n in names]


def message_config(
    config: ConfigRecord,
    client_ids: Sequence[int],
    per_client: bool,
    max_steps: Mapping[int, int] | None = None,
) -> ConfigRecord:
    """A copy of a message's ``config`` for the clients ``client_ids``.

    ``max_steps`` (``{client id: steps}``) limits the local work of the clients
    it names (:data:`~fedtflite.protocol.keys.MAX_STEPS`); the others do all of
    theirs. :func:`step_budgets` reads it back.
    """
    out = ConfigRecord(dict(config))
    ids = [int(c) for c in client_ids]
    out[keys.COHORT] = ids
    out[keys.PER_CLIENT] = int(per_client)
    if max_steps and any(c in max_steps for c in ids):
        out[keys.MAX_STEPS] = [int(max_steps.get(c, -1)) for c in ids]
    return out


def step_budgets(config: ConfigRecord) -> dict[int, int]:
    """``{client id: most train steps}`` of a message's clients cut short.

    Raises
    ------
    ConfigError
        The budgets do not pair up with the message's clients.
    """
    budgets = config.get(keys.MAX_STEPS)
    if budgets is None:
        return {}
    ids = _ids(config, keys.COHORT)
    if not isinstance(budgets, list) or len(budgets) != len(ids):
        raise ConfigError(
            f"message config {keys.MAX_STEPS!r} = {budgets!r} does not pair with "
            f"its {len(ids)} clients"
        )
    steps = [b for b in budgets if isinstance(b, int)]
    if len(steps) != len(ids):
        raise ConfigError(
            f"message config {keys.MAX_STEPS!r} = {budgets!r}: expected integers"
        )
    return {c: b for c, b in zip(ids, steps, strict=True) if b >= 0}


def _ids(record: ConfigRecord, key: str) -> tuple[int, ...]:
    value = record.get(key, [])
    return tuple(int(v) for v in value) if isinstance(value, list) else ()


@dataclass(frozen=True)
class ReplyStatus:
    """Which clients of a message succeeded, and where they ran.

    Attributes
    ----------
    ok : tuple of int
        Ids of the clients that succeeded.
    failed : tuple of int
        Ids of the clients that failed (non-finite loss or weights, bad data...).
    errors : tuple of str
        One line per failed client, in the order of ``failed``.
    total_compute_seconds : float
        Sum of the clients' on-device seconds.
    worker : str
        ``<ray node id>:<pid>`` of the process that ran them.
    tensorflow : bool
        TensorFlow was loaded in that process (it never should be).
    """

    ok: tuple[int, ...]
    failed: tuple[int, ...] = ()
    errors: tuple[str, ...] = ()
    total_compute_seconds: float = 0.0
    worker: str = "?"
    tensorflow: bool = False

    def to_record(self) -> ConfigRecord:
        """The reply's :data:`~fedtflite.protocol.keys.STATUS` record."""
        return ConfigRecord(
            {
                keys.OK: list(self.ok),
                keys.FAILED: list(self.failed),
                keys.ERRORS: list(self.errors),
                keys.TOTAL_COMPUTE_SECONDS: float(self.total_compute_seconds),
                keys.WORKER: self.worker,
                keys.TENSORFLOW: int(self.tensorflow),
            }
        )

    @classmethod
    def from_record(cls, record: ConfigRecord) -> ReplyStatus:
        """Read it back; missing entries read as their defaults."""
        errors = record.get(keys.ERRORS, [])
        seconds = record.get(keys.TOTAL_COMPUTE_SECONDS, 0.0)
        return cls(
            ok=_ids(record, keys.OK),
            failed=_ids(record, keys.FAILED),
            errors=tuple(str(e) for e in errors) if isinstance(errors, list) else (),
            total_compute_seconds=(
                float(seconds) if isinstance(seconds, int | float) else 0.0
            ),
            worker=str(record.get(keys.WORKER, "?")),
            tensorflow=bool(record.get(keys.TENSORFLOW, 0)),
        )


class TrainReplyEncoder:
    """Builds a train reply client by client (per-client or pre-aggregated).

    Parameters
    ----------
    names : sequence of str
        The model's parameter names (``a0``, ``a1``, ...).
    per_client : bool
        Keep every client's records; otherwise accumulate their example-weighted
        mean (pfl-research's "simulate many users per worker, reduce once").
    """

    def __init__(self, names: Sequence[str], per_client: bool):
        self.names = list(names)
        self.per_client = per_client
        self._content = RecordDict()
        self._mean = WeightedMean()
        # example-weighted sums of the scalars, in float64 like a 0-d WeightedMean
        self._loss = self._seconds = 0.0

    def add(
        self,
        client_id: int,
        weights: Sequence[np.ndarray],
        num_examples: int,
        loss: float,
        seconds: float,
        control_delta: Sequence[np.ndarray] | None = None,
    ) -> None:
        """One successful client's update (SCAFFOLD's ``control_delta`` per-client
        only: its strategy is never pre-aggregated)."""
        if not self.per_client:
            self._mean.add(weights, num_examples)
            self._loss += loss * num_examples
            self._seconds += seconds * num_examples
            return
        arrays = {n: Array(w) for n, w in zip(self.names, weights, strict=True)}
        if control_delta is not None:
            for n, d in zip(self.names, control_delta, strict=True):
                arrays[keys.CONTROL_DELTA_PREFIX + n] = Array(d)
        self._content[keys.client_key(keys.ARRAYS, client_id)] = ArrayRecord(
            array_dict=arrays
        )
        self._content[keys.client_key(keys.METRICS, client_id)] = MetricRecord(
            {
                keys.NUM_EXAMPLES: num_examples,
                keys.TRAIN_LOSS: loss,
                keys.COMPUTE_SECONDS: seconds,
            }
        )

    def content(self, status: ReplyStatus) -> RecordDict:
        """The reply's content, with ``status``."""
        content = self._content
        if status.ok and not self.per_client:
            content[keys.ARRAYS] = array_record(self.names, self._mean.mean())
            content[keys.METRICS] = MetricRecord(
                {
                    keys.NUM_EXAMPLES: int(self._mean.total_weight),
                    keys.TRAIN_LOSS: self._loss / self._mean.total_weight,
                    keys.COMPUTE_SECONDS: self._seconds / self._mean.total_weight,
                }
            )
        content[keys.STATUS] = status.to_record()
        return content


def evaluate_reply(
    status: ReplyStatus, num_examples: int, loss_sum: float, correct: float
) -> RecordDict:
    """An evaluate reply: always pre-aggregated (example-weighted means).

    ``loss_sum`` and ``correct`` are sums over the clients' test examples; a
    message whose clients hold no test example reports 0 with weight 0.
    """
    content = RecordDict({keys.STATUS: status.to_record()})
    if status.ok:
        n = num_examples
        content[keys.METRICS] = MetricRecord(
            {
                keys.NUM_EXAMPLES: n,
                keys.EVAL_LOSS: loss_sum / n if n else 0.0,
                keys.EVAL_ACCURACY: correct / n if n else 0.0,
                keys.COMPUTE_SECONDS: status.total_compute_seconds / len(status.ok),
            }
        )
    return content


@dataclass(frozen=True)
class DecodedReply:
    """A reply turned back into what a Flower strategy expects.

    Attributes
    ----------
    status : ReplyStatus
        The reply's status.
    replies : list of (int, Message)
        One reply per successful client (per-client), or one reply for all of
        them keyed by the first (pre-aggregated); then one error reply per
        failed client.
    pre_aggregated : bool
        The successful clients travel as one pre-aggregated reply.
    """

    status: ReplyStatus
    replies: list[tuple[int, Message]]
    pre_aggregated: bool


def decode_reply(reply: Message, *, train: bool) -> DecodedReply:
    """Decode a reply (not an error reply: check ``reply.has_error()`` first).

    Parameters
    ----------
    reply : Message
        A reply built by :class:`TrainReplyEncoder` or :func:`evaluate_reply`.
    train : bool
        A train reply (arrays and metrics) rather than an evaluate reply
        (metrics only).
    """
    content = reply.content
    status = ReplyStatus.from_record(
        content.config_records.get(keys.STATUS, ConfigRecord())
    )
    out: list[tuple[int, Message]] = []
    pre_aggregated = keys.METRICS in content.metric_records
    if pre_aggregated:
        if status.ok:
            rd = RecordDict({keys.METRICS: content[keys.METRICS]})
            if train:
                rd[keys.ARRAYS] = content[keys.ARRAYS]
            out.append((status.ok[0], Message(rd, reply_to=reply)))
    else:
        for cid in status.ok:
            rd = RecordDict({keys.METRICS: content[keys.client_key(keys.METRICS, cid)]})
            if train:
                rd[keys.ARRAYS] = content[keys.client_key(keys.ARRAYS, cid)]
            out.append((cid, Message(rd, reply_to=reply)))
    for cid, reason in zip(status.failed, status.errors, strict=False):
        error = Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason)
        out.append((cid, Message(error, reply_to=reply)))
    return DecodedReply(status, out, pre_aggregated)
