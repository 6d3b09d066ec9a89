"""The codec of the personalization messages (encode and decode side by side).

After the last round the server sends the chosen clients, in cohorts like a
round's, an ``evaluate.personalize`` message (:data:`MESSAGE_TYPE`): the final
global weights under :data:`~fedtflite.protocol.keys.ARRAYS` and a config with
the cohort and :data:`~fedtflite.protocol.keys.PERSONALIZE_EPOCHS`. The reply
holds a :class:`~fedtflite.protocol.replies.ReplyStatus` and one MetricRecord
per successful client, ``metrics.<id>``, with ``num-examples`` (its local test
examples), the accuracy and loss before and after fine-tuning, and its
on-device seconds.
"""

from __future__ import annotations

from collections.abc import Sequence

from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType

from fedtflite.personalization import PersonalResult
from fedtflite.protocol import keys
from fedtflite.protocol.replies import ReplyStatus, message_config

__all__ = [
    "MESSAGE_TYPE",
    "decode_personalize_reply",
    "personalize_content",
    "personalize_epochs",
    "personalize_reply",
]

MESSAGE_TYPE = f"{MessageType.EVALUATE}.{keys.PERSONALIZE}"
"""Flower message type of a personalization message (an evaluate action)."""


def personalize_content(
    config: ConfigRecord, arrays: ArrayRecord, client_ids: Sequence[int], epochs: int
) -> RecordDict:
    """A personalization message's content for ``client_ids``."""
    cfg = message_config(config, client_ids, per_client=True)
    cfg[keys.PERSONALIZE_EPOCHS] = int(epochs)
    return RecordDict({keys.CONFIG: cfg, keys.ARRAYS: arrays})


def personalize_epochs(config: ConfigRecord) -> int:
    """The fine-tuning epochs a personalization message asks for."""
    epochs = config[keys.PERSONALIZE_EPOCHS]
    assert isinstance(epochs, int)
    return epochs


def personalize_reply(
    status: ReplyStatus, results: Sequence[PersonalResult]
) -> RecordDict:
    """A personalization reply: ``status`` and every successful client's metrics."""
    content = RecordDict({keys.STATUS: status.to_record()})
    for r in results:
        content[keys.client_key(keys.METRICS, r.client_id)] = MetricRecord(
            {
                keys.NUM_EXAMPLES: r.num_examples,
                keys.ACC_GLOBAL: r.acc_global,
                keys.ACC_PERSONAL: r.acc_personal,
                keys.LOSS_GLOBAL: r.loss_global,
                keys.LOSS_PERSONAL: r.loss_personal,
                keys.COMPUTE_SECONDS: r.seconds,
            }
        )
    return content


def decode_personalize_reply(
    reply: Message,
) -> tuple[ReplyStatus, list[PersonalResult]]:
    """The status and results of a reply (not an error reply: check first)."""
    content = reply.content
    status = ReplyStatus.from_record(
        content.config_records.get(keys.STATUS, ConfigRecord())
    )
    results = []
    for cid in status.ok:
        m = content.metric_records[keys.client_key(keys.METRICS, cid)]

        def value(key: str, m: MetricRecord = m) -> float:
            v = m[key]
            assert isinstance(v, int | float)
            return float(v)

        results.append(
            PersonalResult(
                client_id=cid,
                num_examples=int(value(keys.NUM_EXAMPLES)),
                acc_global=value(keys.ACC_GLOBAL),
                acc_personal=value(keys.ACC_PERSONAL),
                loss_global=value(keys.LOSS_GLOBAL),
                loss_personal=value(keys.LOSS_PERSONAL),
                seconds=value(keys.COMPUTE_SECONDS),
            )
        )
    return status, results
