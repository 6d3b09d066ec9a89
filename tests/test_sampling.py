"""Cohort arithmetic by hand: sample sizes, sampling, grouping, the weighted mean."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, MetricRecord, RecordDict
from flwr.serverapp.strategy.strategy_utils import aggregate_arrayrecords

from fedtflite.algorithms.sampling import (
    Phase,
    WeightedMean,
    flower_sample_size,
    sample_clients,
    split_cohorts,
)


@pytest.mark.parametrize(
    ("num_clients", "fraction", "minimum", "expected"),
    [
        (100, 0.1, 2, 10),  # int(100 * 0.1)
        (10, 0.1, 2, 2),  # the minimum wins
        (10, 0.25, 1, 2),  # int() rounds down, as Flower
        (5, 1.0, 10, 5),  # never more than there are
        (100, 0.0, 2, 0),  # fraction 0 disables the phase
    ],
)
def test_flower_sample_size(
    num_clients: int, fraction: float, minimum: int, expected: int
) -> None:
    assert flower_sample_size(num_clients, fraction, minimum) == expected


def test_sample_is_seeded_sorted_and_distinct() -> None:
    a = sample_clients(seed=7, server_round=3, phase=Phase.TRAIN, num_clients=50, k=10)

    assert a.tolist() == sorted(set(a.tolist()))
    assert len(a) == 10 and a.min() >= 0 and a.max() < 50
    np.testing.assert_array_equal(a, sample_clients(7, 3, Phase.TRAIN, 50, 10))
    assert not np.array_equal(
        a, sample_clients(7, 4, Phase.TRAIN, 50, 10)
    )  # another round
    assert not np.array_equal(
        a, sample_clients(7, 3, Phase.EVALUATE, 50, 10)
    )  # evaluate phase
    assert not np.array_equal(
        a, sample_clients(8, 3, Phase.TRAIN, 50, 10)
    )  # another seed


def test_sample_is_uniform() -> None:
    # 4000 rounds of 5 out of 20: each client is drawn 4000 * 5/20 = 1000 times
    # on average, with a standard deviation of about sqrt(1000 * 0.75) = 27.
    counts = np.zeros(20, int)
    for r in range(4000):
        counts[sample_clients(0, r, Phase.TRAIN, 20, 5)] += 1

    assert counts.sum() == 20_000
    assert np.abs(counts - 1000).max() < 5 * 27


def test_sample_rejects_impossible_sizes() -> None:
    with pytest.raises(ValueError, match="cannot sample 11 of 10"):
        sample_clients(0, 1, Phase.TRAIN, 10, 11)


@pytest.mark.parametrize(
    ("clients_per_message", "nodes", "expected"),
    [
        (0, 3, [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]),  # one per node
        (0, 1, [list(range(10))]),
        (0, 20, [[c] for c in range(10)]),  # never an empty cohort
        (4, 1, [[0, 1, 2], [3, 4, 5, 6], [7, 8, 9]]),  # ceil(10 / 4) = 3 cohorts
        (1, 2, [[c] for c in range(10)]),  # one message per client
    ],
)
def test_split_cohorts(
    clients_per_message: int, nodes: int, expected: list[list[int]]
) -> None:
    assert split_cohorts(list(range(10)), clients_per_message, nodes) == expected


def test_split_nothing() -> None:
    assert split_cohorts([], 0, 4) == []


def test_weighted_mean_by_hand() -> None:
    m = WeightedMean()
    m.add([np.array([1.0, 2.0], np.float32), np.array(4.0, np.float32)], 30)
    m.add([np.array([3.0, 6.0], np.float32), np.array(8.0, np.float32)], 10)
    mean = m.mean()

    # (30 * 1 + 10 * 3) / 40 = 1.5, (30 * 2 + 10 * 6) / 40 = 3,
    # (30 * 4 + 10 * 8) / 40 = 5 (a 0-d array, as a scalar weight or a loss)
    np.testing.assert_array_equal(mean[0], [1.5, 3.0])
    assert mean[0].dtype == np.float32 and mean[1] == 5.0 and mean[1].shape == ()
    assert (m.total_weight, m.count) == (40, 2)


def test_weighted_mean_of_nothing() -> None:
    with pytest.raises(ValueError, match="nothing"):
        WeightedMean().mean()


def _reply(arrays: list[np.ndarray], n: float) -> RecordDict:
    return RecordDict(
        {
            "arrays": ArrayRecord(
                array_dict={f"a{i}": Array(a) for i, a in enumerate(arrays)}
            ),
            "metrics": MetricRecord({"num-examples": n}),
        }
    )


def test_cohort_means_aggregate_like_their_clients() -> None:
    """Flower's weighted mean of cohort means (weight = the cohort's examples)
    is Flower's weighted mean of the clients' own replies."""
    rng = np.random.default_rng(0)
    clients = [
        ([rng.normal(size=(3, 2)).astype(np.float32)], int(n))
        for n in rng.integers(1, 100, size=7)
    ]
    per_client = aggregate_arrayrecords(
        [_reply(w, n) for w, n in clients], "num-examples"
    )
    cohort_replies = []
    for cohort in (clients[:3], clients[3:5], clients[5:]):
        m = WeightedMean()
        for w, n in cohort:
            m.add(w, n)
        cohort_replies.append(_reply(m.mean(), m.total_weight))
    by_cohort = aggregate_arrayrecords(cohort_replies, "num-examples")

    np.testing.assert_allclose(
        by_cohort["a0"].numpy(), per_client["a0"].numpy(), rtol=0, atol=1e-6
    )


class _LateGrid:
    """A grid whose nodes connect on the third look."""

    def __init__(self) -> None:
        self.looks = 0

    def get_node_ids(self) -> list[int]:
        self.looks += 1
        return [12, 11] if self.looks >= 3 else []


def test_a_round_waits_for_the_first_nodes_to_connect() -> None:
    from server.messaging import _wait_for_nodes

    grid = _LateGrid()
    assert _wait_for_nodes(grid) == [11, 12]  # type: ignore[arg-type]
    assert grid.looks == 3
    never = _LateGrid()
    never.looks = -(10**9)
    with pytest.raises(RuntimeError, match="no Flower node connected within 0 s"):
        _wait_for_nodes(never, timeout=0.0)  # type: ignore[arg-type]
