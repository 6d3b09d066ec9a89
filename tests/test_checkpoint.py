"""Checkpoint files, strategy state and clients' stored state, by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedtflite.algorithms.client_state import load_state, save_state
from fedtflite.errors import CheckpointError
from fedtflite.simulation.checkpoint import (
    Checkpoint,
    check_resumable,
    load_checkpoint,
    resume_point,
    save_checkpoint,
)
from fedtflite.simulation.config import config_from_mapping
from fedtflite.simulation.history import CsvHistory, RoundRecord
from server.strategies import load_strategy_state, make_strategy, strategy_state


def _checkpoint() -> Checkpoint:
    return Checkpoint(
        round=7,
        config={"num-rounds": 10, "learning-rate": 0.05, "model": "mlp"},
        weights={
            "a0": np.arange(6, dtype=np.float32).reshape(2, 3),
            "a1": np.ones(3, np.float32),
        },
        strategy_state={
            "m_t": {"a0": np.full((2, 3), 0.5), "a1": np.zeros(3)},
            "momentum_vector": {
                "0": np.ones((2, 3), np.float32),
                "1": np.ones(3, np.float32),
            },
        },
    )


def test_a_checkpoint_reads_back_as_written(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, _checkpoint())
    save_checkpoint(path, _checkpoint())  # replaces it

    got = load_checkpoint(path)

    want = _checkpoint()
    assert got is not None
    assert (got.round, got.config) == (want.round, want.config)
    assert list(got.weights) == ["a0", "a1"]  # export order
    for name, w in want.weights.items():
        assert got.weights[name].dtype == w.dtype
        np.testing.assert_array_equal(got.weights[name], w)
    for attr, values in want.strategy_state.items():
        for key, a in values.items():
            assert got.strategy_state[attr][key].dtype == a.dtype
            np.testing.assert_array_equal(got.strategy_state[attr][key], a)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]  # no temporaries


def test_no_checkpoint_is_none_and_a_broken_one_is_named(tmp_path: Path) -> None:
    assert load_checkpoint(tmp_path / "checkpoint.npz") is None
    broken = tmp_path / "checkpoint.npz"
    broken.write_bytes(b"half a file")
    with pytest.raises(CheckpointError, match=r"checkpoint.npz: not a readable"):
        load_checkpoint(broken)


def test_only_execution_keys_may_change_on_resume(tmp_path: Path) -> None:
    ckpt, path = _checkpoint(), tmp_path / "checkpoint.npz"
    ok = {**ckpt.config, "num-rounds": 20, "ray-address": "auto", "client-cpus": 2}
    check_resumable(ckpt, ok, history_rounds=8, path=path)

    with pytest.raises(CheckpointError, match=r"learning-rate = 0\.05 there, 0\.1 now"):
        check_resumable(ckpt, {**ckpt.config, "learning-rate": 0.1}, 8, path)
    with pytest.raises(CheckpointError, match="nothing to resume for num-rounds = 7"):
        check_resumable(ckpt, {**ckpt.config, "num-rounds": 7}, 8, path)
    with pytest.raises(CheckpointError, match=r"history\.csv beside it ends at"):
        check_resumable(ckpt, ckpt.config, 6, path)


def _write_history(run_dir: Path, rounds: int) -> None:
    history = CsvHistory(run_dir / "history.csv")
    for r in range(rounds):
        history.on_round(RoundRecord(r, 0.5, 0.1 * r, *[0.0] * 3, *[0] * 5, 0.0, 0, 0))


def test_resume_point_is_the_checkpoint_and_the_rows_up_to_it(tmp_path: Path) -> None:
    ckpt = _checkpoint()  # round 7
    assert resume_point(tmp_path, ckpt.config) == (None, ())  # nothing there yet

    _write_history(tmp_path, 9)  # a row past the checkpoint: cut off mid-write
    with pytest.raises(CheckpointError, match=r"has a history\.csv but no checkpoint"):
        resume_point(tmp_path, ckpt.config)

    save_checkpoint(tmp_path / "checkpoint.npz", ckpt)
    got, rows = resume_point(tmp_path, ckpt.config)
    assert got is not None and got.round == 7
    assert [r.round for r in rows] == list(range(8))
    assert rows[-1].test_accuracy == pytest.approx(0.7)

    scaffold = {**ckpt.config, "strategy": "scaffold"}
    save_checkpoint(tmp_path / "checkpoint.npz", Checkpoint(7, scaffold, ckpt.weights))
    with pytest.raises(CheckpointError, match="round 7 of a SCAFFOLD run"):
        resume_point(tmp_path, scaffold)
    (tmp_path / "client_state").mkdir()
    (tmp_path / "client_state" / "client_0.npz").write_bytes(b"")
    assert resume_point(tmp_path, scaffold)[0] is not None


@pytest.mark.parametrize(
    ("strategy", "attrs"),
    [
        ("fedavg", set()),
        ("fedavgm", {"current_arrays", "momentum_vector"}),
        ("fedadam", {"m_t", "v_t"}),
        ("scaffold", {"control"}),
    ],
)
def test_strategy_state_goes_into_a_fresh_strategy(
    strategy: str, attrs: set[str]
) -> None:
    from flwr.app import Array, ArrayRecord

    config = config_from_mapping({"strategy": strategy, "num-clients": 4})
    source = make_strategy(config)
    arrays = {
        "a0": np.full((2, 2), 3.0, np.float32),
        "a1": np.arange(2, dtype=np.float32),
    }
    record = ArrayRecord(array_dict={k: Array(v) for k, v in arrays.items()})
    if strategy == "fedavgm":
        source.current_arrays = record
        source.momentum_vector = [v * 2 for v in arrays.values()]
    elif strategy == "fedadam":
        source.m_t = {k: v + 1.0 for k, v in arrays.items()}
        source.v_t = {k: v * v for k, v in arrays.items()}
        source.current_arrays = dict(arrays)  # reset every round: not state
    elif strategy == "scaffold":
        source.control = record

    state = strategy_state(source)
    target = make_strategy(config)
    load_strategy_state(target, state)

    assert set(state) == attrs
    assert strategy_state(target).keys() == state.keys()
    for attr, values in strategy_state(target).items():
        for key, a in values.items():
            np.testing.assert_array_equal(a, state[attr][key])
    if strategy == "fedavgm":
        assert isinstance(target.momentum_vector, list)
        assert isinstance(target.current_arrays, ArrayRecord)
    if strategy == "fedadam":
        assert isinstance(target.m_t, dict) and target.current_arrays is None


def test_a_client_state_rerun_round_starts_from_the_state_before_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "client_3.npz"
    like = [np.zeros(2, np.float32)]
    a, b, c = ([np.full(2, v, np.float32)] for v in (1.0, 2.0, 3.0))

    assert load_state(path, like, 1)[0].tolist() == [0.0, 0.0]  # first round: zeros
    save_state(path, a, 1)
    save_state(path, b, 4)  # the client skipped rounds 2 and 3
    assert load_state(path, like, 5)[0].tolist() == [2.0, 2.0]
    # Round 4 again (cut off after this client stored b): it starts from a ...
    assert load_state(path, like, 4)[0].tolist() == [1.0, 1.0]
    save_state(path, c, 4)  # ... and its new result replaces b, keeping a
    assert load_state(path, like, 5)[0].tolist() == [3.0, 3.0]
    assert load_state(path, like, 4)[0].tolist() == [1.0, 1.0]
    assert load_state(path, like, 1)[0].tolist() == [0.0, 0.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "client_3.npz",
        "client_3.prev.npz",
    ]


def test_a_client_state_two_rounds_past_the_checkpoint_is_taken_back(
    tmp_path: Path,
) -> None:
    # The server records round k while round k + 1 trains: a crash in round 3's
    # records leaves the checkpoint of round 2, and the client already stored
    # what it did in rounds 3 and 4; the resumed run's round 3 needs round 1's.
    path = tmp_path / "client_3.npz"
    like = [np.zeros(2, np.float32)]
    for server_round in (1, 3, 4):
        save_state(path, [np.full(2, server_round, np.float32)], server_round)
    assert load_state(path, like, 3)[0].tolist() == [1.0, 1.0]
    assert load_state(path, like, 4)[0].tolist() == [3.0, 3.0]
    assert load_state(path, like, 5)[0].tolist() == [4.0, 4.0]
    save_state(path, [np.full(2, 7, np.float32)], 7)  # the oldest version goes
    assert load_state(path, like, 3)[0].tolist() == [0.0, 0.0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "client_3.npz",
        "client_3.prev.npz",
        "client_3.prev2.npz",
    ]
