"""The personalization messages' codec: what the ClientApp encodes, the server
decodes (ok clients with their metrics, failed ones in the status)."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, RecordDict

from fedtflite.personalization import PersonalResult
from fedtflite.protocol import keys
from fedtflite.protocol.personalization import (
    MESSAGE_TYPE,
    decode_personalize_reply,
    personalize_content,
    personalize_epochs,
    personalize_reply,
)
from fedtflite.protocol.replies import ReplyStatus, array_record


@pytest.fixture(autouse=True)
def flower_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages need Flower's task identity, which a running app would set."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1, raising=False)


def test_a_message_carries_the_cohort_the_epochs_and_the_weights() -> None:
    weights = [np.arange(3, dtype=np.float32)]
    content = personalize_content(
        ConfigRecord({"run.seed": 3}), array_record(["a0"], weights), [4, 9], 2
    )
    config = content.config_records[keys.CONFIG]
    assert config[keys.COHORT] == [4, 9] and config["run.seed"] == 3
    assert personalize_epochs(config) == 2
    np.testing.assert_array_equal(content[keys.ARRAYS]["a0"].numpy(), weights[0])
    assert MESSAGE_TYPE == "evaluate.personalize"


def test_a_reply_round_trips_ok_and_failed_clients() -> None:
    results = [
        PersonalResult(4, 20, 0.5, 0.75, 1.25, 0.5, 0.01),
        PersonalResult(9, 0, float("nan"), float("nan"), float("nan"), float("nan")),
    ]
    status = ReplyStatus(ok=(4, 9), failed=(7,), errors=("client 7: diverged",))
    content = personalize_reply(status, results)
    reply = Message(content, dst_node_id=1, message_type=MESSAGE_TYPE)
    decoded_status, decoded = decode_personalize_reply(reply)
    assert decoded_status.failed == (7,) and decoded_status.errors == status.errors
    assert decoded[0] == results[0]
    assert decoded[1].client_id == 9 and decoded[1].num_examples == 0
    assert np.isnan(decoded[1].acc_global)


def test_an_empty_reply_decodes_to_no_results() -> None:
    content = personalize_reply(ReplyStatus(ok=()), [])
    reply = Message(content, dst_node_id=1, message_type=MESSAGE_TYPE)
    assert decode_personalize_reply(reply)[1] == []
    assert isinstance(content, RecordDict)
