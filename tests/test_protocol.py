"""The wire protocol round trip, without Ray: settings, replies (ok, failed,
per-client, pre-aggregated), ArrayRecord helpers."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from flwr.app import ConfigRecord, Message, RecordDict

from fedtflite.data import PartitionSpec
from fedtflite.errors import ConfigError, WeightsMismatchError
from fedtflite.protocol import keys
from fedtflite.protocol.replies import (
    ReplyStatus,
    TrainReplyEncoder,
    array_record,
    arrays_of,
    decode_reply,
    evaluate_reply,
    message_config,
    step_budgets,
)
from fedtflite.protocol.settings import ClientSettings

NAMES = ["a0", "a1"]


@pytest.fixture(autouse=True)
def flower_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages need Flower's task identity, which a running app would set."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1, raising=False)


def _request() -> Message:
    content = RecordDict({keys.CONFIG: ConfigRecord({"server-round": 1})})
    return Message(content=content, message_type="train", dst_node_id=1)


def _reply(content: RecordDict) -> Message:
    return Message(content=content, reply_to=_request())


def _weights(x: float) -> list[np.ndarray]:
    return [np.full((2, 3), x, np.float32), np.full(3, -x, np.float32)]


def _settings() -> ClientSettings:
    return ClientSettings(
        model_path="/runs/x/model.tflite",
        model_sha256="ab" * 32,
        partition_path="/runs/x/partition.npz",
        partition=PartitionSpec(
            kind="shard",
            num_clients=7,
            alpha=0.3,
            classes_per_client=2,
            shards_per_client=3,
            min_partition_size=4,
            seed=11,
        ),
        client_test_fraction=0.25,
        data_dir="",
        local_epochs=2,
        batch_size=16,
        learning_rate=0.05,
        state_dir="/runs/x/client_state",
    )


def test_settings_round_trip_through_a_config_record() -> None:
    settings = _settings()
    record = ConfigRecord(settings.to_config())

    assert ClientSettings.from_config(record) == settings
    assert record["run.partition.kind"] == "shard"
    assert record["run.partition.seed"] == 11


def test_settings_without_a_learning_rate_round_trip() -> None:
    settings = dataclasses.replace(_settings(), learning_rate=None)
    record = ConfigRecord(settings.to_config())

    assert "run.learning_rate" not in record  # ConfigRecords hold no None
    assert ClientSettings.from_config(record) == settings


def test_settings_from_a_foreign_config_name_the_missing_key() -> None:
    with pytest.raises(ConfigError, match=r"lacks 'run\.model_path'.*ServerApp"):
        ClientSettings.from_config({"server-round": 1})


def test_array_helpers_round_trip_and_name_a_missing_array() -> None:
    record = array_record(NAMES, _weights(1.5))

    got = arrays_of(record, NAMES, "message")
    for a, b in zip(got, _weights(1.5), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(WeightsMismatchError, match=r"message lacks \['a2'\]"):
        arrays_of(record, [*NAMES, "a2"], "message")


def test_message_config_names_the_clients_and_keeps_the_rest() -> None:
    config = message_config(ConfigRecord({"server-round": 3}), [4, 9], per_client=True)

    assert config[keys.COHORT] == [4, 9]
    assert config[keys.PER_CLIENT] == 1
    assert config["server-round"] == 3


def test_step_budgets_round_trip() -> None:
    base = ConfigRecord({"server-round": 3})
    full = message_config(base, [4, 9], per_client=False, max_steps={})
    assert keys.MAX_STEPS not in full and step_budgets(full) == {}
    other = message_config(base, [4, 9], per_client=False, max_steps={5: 2})
    assert keys.MAX_STEPS not in other  # budgets of clients in other messages
    cut = message_config(base, [4, 9, 11], per_client=False, max_steps={9: 3, 11: 0})
    assert cut[keys.MAX_STEPS] == [-1, 3, 0]
    assert step_budgets(cut) == {9: 3, 11: 0}
    cut[keys.MAX_STEPS] = [1, 2]
    with pytest.raises(ConfigError, match="does not pair with its 3 clients"):
        step_budgets(cut)


def test_status_round_trip() -> None:
    status = ReplyStatus(
        ok=(1, 4),
        failed=(2,),
        errors=("client 2: loss nan",),
        total_compute_seconds=0.25,
        worker="node:17",
        tensorflow=False,
    )

    assert ReplyStatus.from_record(status.to_record()) == status
    assert ReplyStatus.from_record(ConfigRecord()) == ReplyStatus(ok=())


def test_per_client_train_reply_round_trip_with_a_failed_client() -> None:
    encoder = TrainReplyEncoder(NAMES, per_client=True)
    encoder.add(5, _weights(5.0), num_examples=30, loss=0.5, seconds=0.01)
    encoder.add(
        1,
        _weights(1.0),
        num_examples=10,
        loss=0.25,
        seconds=0.02,
        control_delta=_weights(0.1),
    )
    status = ReplyStatus(ok=(5, 1), failed=(3,), errors=("client 3: loss nan",))

    decoded = decode_reply(_reply(encoder.content(status)), train=True)

    assert not decoded.pre_aggregated
    assert decoded.status == status
    assert [cid for cid, _ in decoded.replies] == [5, 1, 3]
    five, one, three = (m for _, m in decoded.replies)
    assert five.content[keys.METRICS][keys.NUM_EXAMPLES] == 30
    assert five.content[keys.METRICS][keys.TRAIN_LOSS] == 0.5
    np.testing.assert_array_equal(five.content[keys.ARRAYS]["a0"].numpy(), 5.0)
    assert "dc.a0" not in five.content[keys.ARRAYS]
    np.testing.assert_array_equal(
        one.content[keys.ARRAYS][keys.CONTROL_DELTA_PREFIX + "a1"].numpy(),
        np.full(3, -0.1, np.float32),
    )
    assert three.has_error()
    assert three.error.reason == "client 3: loss nan"


def test_pre_aggregated_train_reply_is_the_weighted_mean() -> None:
    encoder = TrainReplyEncoder(NAMES, per_client=False)
    encoder.add(0, _weights(1.0), num_examples=10, loss=1.0, seconds=0.1)
    encoder.add(2, _weights(4.0), num_examples=30, loss=2.0, seconds=0.3)
    status = ReplyStatus(ok=(0, 2), total_compute_seconds=0.4)

    decoded = decode_reply(_reply(encoder.content(status)), train=True)

    assert decoded.pre_aggregated
    ((cid, reply),) = decoded.replies
    assert cid == 0
    metrics = reply.content[keys.METRICS]
    assert metrics[keys.NUM_EXAMPLES] == 40
    # (10 * 1 + 30 * 4) / 40 = 3.25; loss (10 * 1 + 30 * 2) / 40 = 1.75
    np.testing.assert_allclose(reply.content[keys.ARRAYS]["a0"].numpy(), 3.25)
    np.testing.assert_allclose(reply.content[keys.ARRAYS]["a1"].numpy(), -3.25)
    assert metrics[keys.TRAIN_LOSS] == pytest.approx(1.75)
    assert metrics[keys.COMPUTE_SECONDS] == pytest.approx(0.25)


def test_a_message_whose_clients_all_failed_decodes_to_errors_only() -> None:
    encoder = TrainReplyEncoder(NAMES, per_client=False)
    status = ReplyStatus(ok=(), failed=(3, 8), errors=("client 3: x", "client 8: y"))

    decoded = decode_reply(_reply(encoder.content(status)), train=True)

    assert [cid for cid, _ in decoded.replies] == [3, 8]
    assert all(m.has_error() for _, m in decoded.replies)


def test_evaluate_reply_round_trip() -> None:
    status = ReplyStatus(ok=(1, 2), failed=(), total_compute_seconds=0.5)
    # two clients: 10 examples at loss 1.0, 7 correct; 30 at loss 2.0, 15 correct
    content = evaluate_reply(status, num_examples=40, loss_sum=70.0, correct=22.0)

    decoded = decode_reply(_reply(content), train=False)

    ((cid, reply),) = decoded.replies
    assert cid == 1
    assert keys.ARRAYS not in reply.content
    metrics = reply.content[keys.METRICS]
    assert metrics[keys.NUM_EXAMPLES] == 40
    assert metrics[keys.EVAL_LOSS] == pytest.approx(1.75)
    assert metrics[keys.EVAL_ACCURACY] == pytest.approx(0.55)
    assert metrics[keys.COMPUTE_SECONDS] == pytest.approx(0.25)


def test_evaluate_reply_without_test_examples_weighs_zero() -> None:
    content = evaluate_reply(ReplyStatus(ok=(4,)), 0, 0.0, 0.0)

    assert content[keys.METRICS][keys.NUM_EXAMPLES] == 0
    assert content[keys.METRICS][keys.EVAL_LOSS] == 0.0
