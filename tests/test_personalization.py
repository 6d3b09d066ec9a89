"""Personalization: the per-client fine-tuning, the seeded choice of clients, the
summary statistics and ``personalization.csv``, and the config keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedtflite.data import FashionMnist
from fedtflite.errors import ConfigError
from fedtflite.personalization import (
    PersonalResult,
    choose_clients,
    personalize_client,
    read_personalization,
    summarize,
    summary_line,
    write_personalization,
)
from fedtflite.runtime import ClientModel
from fedtflite.simulation import load_config


def _result(cid: int, n: int, before: float, after: float) -> PersonalResult:
    return PersonalResult(cid, n, before, after, 1.0 - before, 1.0 - after)


def test_summary_is_mean_median_and_tenth_percentile_of_clients_with_tests() -> None:
    results = [
        _result(0, 10, 0.5, 0.8),
        _result(1, 20, 0.7, 0.9),
        _result(2, 5, 0.9, 1.0),
        _result(3, 0, float("nan"), float("nan")),  # no local test example
    ]
    s = summarize(results)
    assert s.clients == 3
    assert (s.mean, s.median) == pytest.approx((0.7, 0.7))
    assert s.p10 == pytest.approx(0.5 + 0.2 * 0.2)  # 10 % of the way 0 -> 2
    assert (s.mean_personal, s.median_personal) == pytest.approx((0.9, 0.9))
    assert s.p10_personal == pytest.approx(0.8 + 0.2 * 0.1)
    line = summary_line(s, 1)
    assert "1 local epoch, 3 clients" in line
    assert (
        "mean 70.00 -> 90.00 %" in line and "10th percentile 54.00 -> 82.00 %" in line
    )


def test_csv_round_trips_sorted_by_client(tmp_path: Path) -> None:
    results = [_result(7, 3, 0.25, 0.5), _result(2, 4, 0.75, 1.0)]
    path = tmp_path / "personalization.csv"
    write_personalization(results, path)
    assert path.read_text().splitlines()[0] == (
        "client_id,num_examples,acc_global,acc_personal,loss_global,loss_personal"
    )
    assert read_personalization(path) == sorted(results, key=lambda r: r.client_id)


def test_clients_are_a_seeded_sorted_draw_and_zero_means_all() -> None:
    a = choose_clients(100, 10, seed=0)
    assert a == choose_clients(100, 10, seed=0) != choose_clients(100, 10, seed=1)
    assert a == sorted(a) and len(set(a)) == 10 and a[0] >= 0 and a[-1] < 100
    assert choose_clients(5, 0, seed=0) == [0, 1, 2, 3, 4]
    assert choose_clients(5, 5, seed=3) == [0, 1, 2, 3, 4]


def test_a_client_starts_from_the_global_model_and_fine_tunes_on_its_data(
    data: FashionMnist, mlp_bytes: bytes
) -> None:
    model = ClientModel(mlp_bytes)
    # A "skewed" client: classes 0 and 1 only; the global model: the initial one.
    pick = np.flatnonzero(data.train.labels < 2)[:300]
    images, labels = data.train.images[pick], data.train.labels[pick]
    train, test = (images[:240], labels[:240]), (images[240:], labels[240:])
    global_weights = model.parameters()
    expected = model.evaluate(*test)

    def run() -> PersonalResult:
        return personalize_client(
            model,
            5,
            global_weights,
            train,
            test,
            epochs=1,
            batch_size=32,
            learning_rate=0.05,
            seed=0,
        )

    first = run()  # the model was trained in between: restore starts it over
    second = run()
    assert first == PersonalResult(**{**second.__dict__, "seconds": first.seconds})
    assert (first.num_examples, first.acc_global) == (60, expected.accuracy)
    assert first.loss_global == pytest.approx(expected.loss)
    assert first.acc_personal > first.acc_global
    assert first.loss_personal < first.loss_global


def test_config_keys_are_validated() -> None:
    c = load_config(None, ["personalize-epochs=2", "personalize-clients=10"])
    assert (c.personalize_epochs, c.personalize_clients) == (2, 10)
    assert load_config(None, []).personalize_epochs == 0  # off by default
    with pytest.raises(ConfigError, match="personalize-epochs = -1 is not valid"):
        load_config(None, ["personalize-epochs=-1"])
    with pytest.raises(ConfigError, match="at most num-clients = 100"):
        load_config(None, ["personalize-clients=101"])


def test_a_client_without_local_test_examples_reports_nan_not_a_crash(
    data: FashionMnist, mlp_bytes: bytes
) -> None:
    model = ClientModel(mlp_bytes)
    images, labels = data.train.images[:1], data.train.labels[:1]
    r = personalize_client(
        model,
        0,
        model.parameters(),
        (images, labels),
        (images[:0], labels[:0]),
        epochs=1,
        batch_size=32,
        learning_rate=0.05,
        seed=0,
    )
    assert r.num_examples == 0 and np.isnan(r.acc_global) and np.isnan(r.acc_personal)
    assert summarize([r]).clients == 0
