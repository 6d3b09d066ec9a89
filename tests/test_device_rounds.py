"""Round planning by hand: durations, over-commitment, deadlines, partial work."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedtflite.devices import (
    Outcome,
    RoundRules,
    local_steps,
    overcommit_size,
    plan_round,
    transfer_seconds,
)

A, S, L, OFF = (
    Outcome.AGGREGATED,
    Outcome.SURPLUS,
    Outcome.STRAGGLED,
    Outcome.OFFLINE,
)
INF = math.inf

# Four sampled clients, steps of 0.01 s on this machine, 1000 bytes each way.
#   client  steps  factor  down/up kbps   network           compute  finish
#   3       10     1       8 / 4          1000*8/8000 = 1   0.1      3.1
#                                         + 1000*8/4000 = 2
#   7       10     2       8 / 4          3                 0.2      3.2
#   1       20     1       8 / 4          3                 0.2      3.2
#   9       5      10      inf / inf      0                 0.5      0.5
IDS = np.array([3, 7, 1, 9])
STEPS = np.array([10, 10, 20, 5])
FACTOR = np.array([1.0, 2.0, 1.0, 10.0])
DOWN = np.array([8.0, 8.0, 8.0, INF])
UP = np.array([4.0, 4.0, 4.0, INF])


def _plan(
    rules: RoundRules, online_for: list[float] | None = None
) -> tuple[list[int], list[int], list[float], float]:
    plan = plan_round(
        IDS,
        STEPS,
        FACTOR,
        DOWN,
        UP,
        1000,
        1000.0,
        np.array(online_for or [INF] * 4),
        step_seconds=0.01,
        rules=rules,
    )
    return (
        plan.outcome.tolist(),
        plan.steps.tolist(),
        [round(f, 9) for f in plan.finish.tolist()],
        round(plan.seconds, 9),
    )


def test_everyone_arrives_without_deadline() -> None:
    outcome, steps, finish, seconds = _plan(RoundRules(target=4))
    assert outcome == [A, A, A, A]
    assert steps == [10, 10, 20, 5]
    assert finish == [3.1, 3.2, 3.2, 0.5]
    assert seconds == 3.2  # the last (4th) update


@pytest.mark.parametrize(
    ("target", "outcome", "seconds"),
    [
        (2, [A, S, S, A], 3.1),  # first two: client 9 (0.5 s), client 3 (3.1 s)
        (3, [A, S, A, A], 3.2),  # clients 1 and 7 tie at 3.2 s: the lower id wins
        (1, [S, S, S, A], 0.5),
    ],
)
def test_over_commitment_keeps_the_first_k(
    target: int, outcome: list[int], seconds: float
) -> None:
    got, steps, _, duration = _plan(RoundRules(target=target))
    assert got == outcome and duration == seconds
    assert [s for s, o in zip(steps, got, strict=True) if o == S] == [0] * got.count(S)


def test_deadline_drops_the_late_and_waits_for_it() -> None:
    outcome, steps, finish, seconds = _plan(RoundRules(4, deadline=3.15))
    assert outcome == [A, L, L, A]
    assert steps == [10, 0, 0, 5]  # late clients are not run at all
    assert finish == [3.1, INF, INF, 0.5]
    assert seconds == 3.15  # fewer than K arrived: the round waits to its deadline


def test_deadline_met_by_k_ends_at_the_kth() -> None:
    outcome, _, _, seconds = _plan(RoundRules(2, deadline=3.15))
    assert outcome == [A, L, L, A] and seconds == 3.1


def test_partial_work_fits_the_deadline() -> None:
    # client 7: floor((3.155 - 3) / 0.02) = 7 steps -> 3.14 s;
    # client 1: floor((3.155 - 3) / 0.01) = 15 steps -> 3.15 s.
    rules = RoundRules(4, deadline=3.155, policy="partial")
    plan = plan_round(
        IDS, STEPS, FACTOR, DOWN, UP, 1000, 1000, np.full(4, INF),
        step_seconds=0.01, rules=rules,
    )  # fmt: skip
    assert plan.outcome.tolist() == [A, A, A, A]
    assert plan.steps.tolist() == [10, 7, 15, 5]
    np.testing.assert_allclose(plan.finish, [3.1, 3.14, 3.15, 0.5])
    assert plan.seconds == pytest.approx(3.15)
    assert plan.budget() == {7: 7, 1: 15}
    assert plan.num_partial == 2 and plan.num_late == 0


def test_partial_straggles_when_not_one_step_fits() -> None:
    # the network alone (3 s) exceeds a 2.5 s deadline
    outcome, steps, _, seconds = _plan(RoundRules(4, deadline=2.5, policy="partial"))
    assert outcome == [L, L, L, A] and steps == [0, 0, 0, 5] and seconds == 2.5


def test_partial_never_crosses_the_deadline() -> None:
    rng = np.random.default_rng(0)
    n = 2000
    factor = np.exp(rng.normal(1, 0.6, n))
    steps = rng.integers(1, 60, n)
    deadline = 0.37
    plan = plan_round(
        np.arange(n), steps, factor, np.full(n, 20000.0), np.full(n, 5000.0),
        40_000, 40_000, np.full(n, INF), step_seconds=0.0031,
        rules=RoundRules(n, deadline=deadline, policy="partial"),
    )  # fmt: skip
    run = plan.outcome == A
    assert (plan.finish[run] <= deadline).all()
    # one more step would not have fitted for anyone cut short
    cut = run & (plan.steps < steps)
    network = 40_000 * 8 / 20e6 + 40_000 * 8 / 5e6
    assert (network + (plan.steps[cut] + 1) * 0.0031 * factor[cut] > deadline).all()
    assert plan.num_partial == int(cut.sum()) > 0


def test_clients_going_offline_are_lost() -> None:
    # client 7 leaves at 3.0 s (before 3.2), client 9 at 0.4 s (before 0.5)
    outcome, steps, _, seconds = _plan(RoundRules(4), [INF, 3.0, INF, 0.4])
    assert outcome == [A, OFF, A, OFF] and steps == [10, 0, 20, 0]
    # no deadline, fewer than K: until everyone arrived or left
    assert seconds == 3.2


def test_leaving_after_the_deadline_is_straggling() -> None:
    # 7 would be late anyway and leaves after the deadline: straggled;
    # 1 leaves before both the deadline and its finish: offline.
    outcome, *_ = _plan(RoundRules(4, deadline=3.15), [INF, 3.18, 3.0, INF])
    assert outcome == [A, L, OFF, A]


def test_counts() -> None:
    plan = plan_round(
        IDS, STEPS, FACTOR, DOWN, UP, 1000, 1000, np.array([INF, INF, INF, 0.1]),
        step_seconds=0.01, rules=RoundRules(1, deadline=3.15),
    )  # fmt: skip
    assert (plan.num_offline, plan.num_late, plan.num_surplus) == (1, 2, 0)
    assert plan.aggregated.tolist() == [3]
    assert plan.seconds == pytest.approx(3.1)


def test_empty_round() -> None:
    e = np.array([], dtype=np.int64)
    plan = plan_round(
        e, e, e, e, e, 0, 0, e, step_seconds=0.01, rules=RoundRules(3, deadline=5)
    )
    assert plan.seconds == 0.0 and len(plan.aggregated) == 0


def test_transfer_and_steps_and_sizes() -> None:
    np.testing.assert_allclose(transfer_seconds(1e6, np.array([8000.0, INF])), [1, 0])
    np.testing.assert_array_equal(
        local_steps(np.array([0, 1, 32, 33, 70]), 32, 2), [0, 2, 2, 4, 6]
    )
    assert overcommit_size(10, 1.3, 100) == 13  # not ceil(13.000000000000002)
    assert overcommit_size(10, 1.3, 12) == 12
    assert overcommit_size(3, 1.5, 100) == 5
    assert overcommit_size(7, 1.0, 100) == 7


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"target": -1}, "target must be >= 0"),
        ({"target": 1, "deadline": 0.0}, "deadline must be > 0"),
        ({"target": 1, "policy": "wait"}, "policy 'wait'; expected one of"),
    ],
)
def test_bad_rules(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RoundRules(**kwargs)  # type: ignore[arg-type]
