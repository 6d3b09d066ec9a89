"""A real federated run end to end, its run directory, and its determinism.

One small run (6 clients, 3 train + 3 evaluate per round, 2 rounds) is shared by
the assertions; a second run of the same config checks that the seed alone fixes
the result.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord

from fedtflite.data import load_fashion_mnist
from fedtflite.orchestrator import simulate
from fedtflite.runtime import ClientModel
from fedtflite.simulation import History, SimulationConfig, read_history
from fedtflite.simulation.history import COLUMNS, TIME_COLUMNS

pytestmark = pytest.mark.integration

NUM_CLIENTS, TRAIN_PER_ROUND, EVAL_PER_ROUND = 6, 3, 3  # conftest.SMALL


@pytest.fixture(scope="module")
def config(small_config: Callable[..., SimulationConfig]) -> SimulationConfig:
    return small_config()


@pytest.fixture(scope="module")
def run(config: SimulationConfig, tmp_path_factory: pytest.TempPathFactory) -> History:
    return simulate(config, tmp_path_factory.mktemp("run") / "a", progress=False)


@pytest.fixture(scope="module")
def rerun(
    config: SimulationConfig, tmp_path_factory: pytest.TempPathFactory
) -> History:
    return simulate(config, tmp_path_factory.mktemp("rerun") / "b", progress=False)


def _parameter_names(run_dir: Path) -> list[str]:
    return [p.name for p in ClientModel(run_dir / "model.tflite").contract.parameters]


def _final_weights(run_dir: Path) -> list[np.ndarray]:
    with np.load(run_dir / "final_weights.npz") as f:
        return [f[n] for n in _parameter_names(run_dir)]


def test_history_has_one_row_per_round_and_every_column(run: History) -> None:
    with (run.run_dir / "history.csv").open(newline="") as f:
        header = next(csv.reader(f))

    assert tuple(header) == COLUMNS
    assert {
        "round",
        "test_loss",
        "test_accuracy",
        "train_loss",
        "fed_eval_accuracy",
        "clients_sampled",
        "clients_ok",
        "clients_failed",
        "seconds",
        "bytes_down",
        "bytes_up",
    } <= set(header)
    assert [r.round for r in run.rounds] == [0, 1, 2]
    assert read_history(run.run_dir / "history.csv")[1:] == list(run.rounds)[1:]


def test_round_zero_is_the_initial_model_and_later_rounds_use_clients(
    run: History,
) -> None:
    first, *later = run.rounds

    assert (first.clients_sampled, first.bytes_down, first.bytes_up) == (0, 0, 0)
    assert math.isnan(first.train_loss) and math.isnan(first.fed_eval_accuracy)
    for r in later:
        assert (r.clients_sampled, r.clients_ok, r.clients_failed) == (
            TRAIN_PER_ROUND,
            TRAIN_PER_ROUND,
            0,
        )
        assert math.isfinite(r.train_loss) and 0.0 < r.fed_eval_accuracy <= 1.0
        assert r.seconds > 0


def test_accuracy_improves_over_the_initial_model(run: History) -> None:
    first, last = run.rounds[0], run.rounds[-1]

    assert first.test_accuracy < 0.3  # an untrained 10-class model
    assert last.test_accuracy > first.test_accuracy + 0.3
    assert last.test_loss < first.test_loss


def test_run_directory_holds_every_output(
    run: History, config: SimulationConfig
) -> None:
    files = {p.name for p in run.run_dir.iterdir()}

    assert {
        "config.toml",
        "model.tflite",
        "history.csv",
        "accuracy.png",
        "partition.npz",
        "partition.csv",
        "partition.png",
        "final_weights.npz",
        "workers.csv",
    } <= files
    assert "num-clients = 6" in (run.run_dir / "config.toml").read_text()
    with (run.run_dir / "partition.csv").open(newline="") as f:
        assert len(list(csv.DictReader(f))) >= config.num_clients
    with (run.run_dir / "workers.csv").open(newline="") as f:
        workers = list(csv.DictReader(f))
    # Every sampled client (3 train + 3 evaluate per round) ran in a worker
    # process without TensorFlow.
    assert sum(int(w["clients"]) for w in workers) == 2 * 6
    assert {w["tensorflow"] for w in workers} == {"0"}


def test_final_weights_reproduce_the_last_test_accuracy(run: History) -> None:
    model = ClientModel(run.run_dir / "model.tflite")
    initial = model.parameters()
    test = load_fashion_mnist().test

    final = _final_weights(run.run_dir)
    model.restore(final)
    result = model.evaluate(test.images, test.labels)

    assert all(np.isfinite(w).all() for w in final)
    assert not all(np.array_equal(a, b) for a, b in zip(initial, final, strict=True))
    assert result.accuracy == run.final_accuracy
    assert result.loss == pytest.approx(run.rounds[-1].test_loss, rel=1e-6)


def test_bytes_count_the_weights_of_every_message(run: History) -> None:
    model = ClientModel(run.run_dir / "model.tflite")
    names = [p.name for p in model.contract.parameters]
    record = ArrayRecord(
        array_dict={n: Array(w) for n, w in zip(names, model.parameters(), strict=True)}
    )
    per_message = int(record.count_bytes())

    # The weights dominate: names and dtype/shape strings add a few hundred bytes.
    assert model.contract.parameter_bytes <= per_message
    assert per_message < model.contract.parameter_bytes + 1024
    for r in run.rounds[1:]:
        assert r.bytes_down == (r.clients_sampled + EVAL_PER_ROUND) * per_message
        assert r.bytes_up == r.clients_ok * per_message


def test_same_config_and_seed_give_the_same_run(run: History, rerun: History) -> None:
    def without_time(path: Path) -> list[dict[str, str]]:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
        return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in rows]

    assert without_time(run.run_dir / "history.csv") == without_time(
        rerun.run_dir / "history.csv"
    )
    for a, b in zip(
        _final_weights(run.run_dir), _final_weights(rerun.run_dir), strict=True
    ):
        np.testing.assert_array_equal(a, b)
