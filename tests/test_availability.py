"""Availability models by hand: who is online when, and for how long."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest

from fedtflite.devices import (
    AlwaysOnline,
    AvailabilitySpec,
    BernoulliOnline,
    IntervalSchedule,
    diurnal_schedule,
    make_availability,
    parse_availability,
    trace_schedule,
)
from fedtflite.errors import ConfigError

INF = math.inf


def _schedule() -> IntervalSchedule:
    a = np.array
    return IntervalSchedule.build(
        a([100.0, 10.0, 50.0, 100.0]),
        [
            (a([50.0, 10.0]), a([80.0, 20.0])),  # unsorted on purpose
            (a([0.0, 8.0]), a([3.0, 10.0])),  # its evening window wraps to 0..3
            (a([]), a([])),  # never online
            (a([0.0]), a([100.0])),  # always online
        ],
    )


@pytest.mark.parametrize(
    ("t", "online", "remaining"),
    [
        (15.0, [True, False, False, True], [5.0, 0, 0, INF]),
        (115.0, [True, False, False, True], [5.0, 0, 0, INF]),  # period 100
        (20.0, [True, True, False, True], [0.0, 3.0, 0, INF]),  # closed; 20 mod 10
        (9.0, [False, True, False, True], [0, 4.0, 0, INF]),  # 1 s, then 0..3
        (1.0, [False, True, False, True], [0, 2.0, 0, INF]),
        (60.0, [True, True, False, True], [20.0, 3.0, 0, INF]),
        (35.0, [False, False, False, True], [0, 0, 0, INF]),
        (5.0, [False, False, False, True], [0, 0, 0, INF]),
    ],
)
def test_interval_schedule_by_hand(
    t: float, online: list[bool], remaining: list[float]
) -> None:
    s = _schedule()
    np.testing.assert_array_equal(s.online(1, t), online)
    ids = np.flatnonzero(online)
    np.testing.assert_array_equal(s.online_for(ids, 1, t), np.array(remaining)[ids])


def test_overlapping_and_touching_intervals_merge() -> None:
    a = np.array
    s = IntervalSchedule.build(
        a([100.0, 100.0]),
        [(a([0.0, 3.0]), a([5.0, 8.0])), (a([10.0, 15.0]), a([15.0, 17.0]))],
    )
    np.testing.assert_array_equal(s.starts, [0.0, 10.0])
    np.testing.assert_array_equal(s.ends, [8.0, 17.0])
    np.testing.assert_array_equal(s.online_for(np.array([0, 1]), 0, 4.0)[:1], [4.0])
    np.testing.assert_array_equal(s.online_for(np.array([1]), 0, 12.0), [5.0])


def test_always_and_bernoulli() -> None:
    always = AlwaysOnline(3)
    assert always.online(5, 1e9).all()
    np.testing.assert_array_equal(always.online_for(np.array([0, 2]), 5, 0), [INF, INF])

    b = BernoulliOnline(1000, 0.3, seed=1)
    r1 = b.online(1, 0.0)
    np.testing.assert_array_equal(r1, b.online(1, 123.0))  # per round, not time
    assert not np.array_equal(r1, b.online(2, 0.0))
    assert not np.array_equal(r1, BernoulliOnline(1000, 0.3, seed=2).online(1, 0.0))
    share = np.mean([b.online(r, 0.0).mean() for r in range(50)])
    assert share == pytest.approx(0.3, abs=0.01)  # 50k draws: sd 0.002
    assert np.isinf(b.online_for(np.flatnonzero(r1), 1, 0.0)).all()


def test_diurnal_without_spread_is_one_window_around_midnight() -> None:
    # 8 h centred on hour 0: online from 20:00 to 04:00 (wrapping the day).
    s = diurnal_schedule(5, seed=0, hours=8, center=0, spread=0)
    assert s.online(0, 0.0).all()
    np.testing.assert_allclose(s.online_for(np.arange(5), 0, 0.0), 4 * 3600)
    assert not s.online(0, 12 * 3600.0).any()
    np.testing.assert_allclose(s.online_for(np.arange(5), 0, 23 * 3600.0), 5 * 3600)
    assert s.online(0, 86400 + 3 * 3600.0).all()  # the next day too
    assert not s.online(0, 4 * 3600.0 + 1).any()


def test_diurnal_spread_is_seeded_per_client() -> None:
    big = diurnal_schedule(2000, seed=4, hours=6, center=22, spread=3)
    small = diurnal_schedule(10, seed=4, hours=6, center=22, spread=3)
    for t in (0.0, 5000.0, 79200.0):
        np.testing.assert_array_equal(small.online(0, t), big.online(0, t)[:10])
    # most online near the centre (22:00), few twelve hours away (10:00)
    assert big.online(0, 22 * 3600.0).mean() > 0.5
    assert big.online(0, 10 * 3600.0).mean() < 0.05
    other = diurnal_schedule(2000, seed=5, hours=6, center=22, spread=3)
    assert not np.array_equal(other.online(0, 0.0), big.online(0, 0.0))


def test_fedscale_trace_is_assigned_cyclically(tmp_path: Path) -> None:
    path = tmp_path / "client_behave_trace"
    path.write_bytes(
        pickle.dumps(
            {
                1: {"active": [0], "inactive": [10], "finish_time": 100},
                2: {"active": [50], "inactive": [60], "finish_time": 100},
            }
        )
    )
    s = trace_schedule(path, 5)  # clients follow entries 1, 2, 1, 2, 1
    np.testing.assert_array_equal(s.online(0, 5.0), [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(s.online(0, 255.0), [0, 1, 0, 1, 0])
    np.testing.assert_array_equal(s.online_for(np.array([1, 3]), 0, 255.0), [5, 5])


def test_parse_availability(tmp_path: Path) -> None:
    assert parse_availability("always") == AvailabilitySpec("always")
    assert parse_availability("bernoulli:0.25") == AvailabilitySpec("bernoulli", p=0.25)
    assert parse_availability("diurnal") == AvailabilitySpec(
        "diurnal",
        diurnal=(("hours", 8.0), ("center", 0.0), ("spread", 4.0), ("period", 86400.0)),
    )
    spec = parse_availability("diurnal:spread=0,hours=2")
    assert dict(spec.diurnal) == {
        "hours": 2.0,
        "center": 0.0,
        "spread": 0.0,
        "period": 86400.0,
    }
    path = tmp_path / "client_behave_trace"
    path.write_bytes(b"x")
    assert parse_availability(str(path)) == AvailabilitySpec("file", path=str(path))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("sometimes", "expected always, bernoulli:P (0 < P <= 1), diurnal"),
        ("bernoulli:x", "expected always, bernoulli:P"),
        ("bernoulli:0", "expected a probability 0 < P <= 1, not 0"),
        ("bernoulli:1.5", "expected a probability 0 < P <= 1, not 1.5"),
        ("diurnal:width=3", "expected diurnal parameters among hours, center, spread"),
        ("diurnal:width=3", "spread, period ('width' is unknown)"),
        ("diurnal:hours=x", "expected a number as diurnal hours, not 'x'"),
        ("diurnal:hours=30", "expected diurnal hours > 0 that fit in the period"),
        ("diurnal:period=0", "expected a diurnal period > 0 seconds"),
        ("diurnal:spread=-1", "expected a diurnal spread >= 0"),
        ("/no/such/trace", "expected always, bernoulli:P"),
    ],
)
def test_parse_availability_errors(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse_availability(value)
    assert str(e.value).startswith(f"availability = {value!r} is not valid: ")
    assert message in str(e.value)


def test_make_availability_dispatches() -> None:
    assert isinstance(make_availability(AvailabilitySpec("always"), 3, 0), AlwaysOnline)
    b = make_availability(AvailabilitySpec("bernoulli", p=0.5), 3, 7)
    assert b == BernoulliOnline(3, 0.5, 7)
    d = make_availability(parse_availability("diurnal:spread=0"), 3, 0)
    assert isinstance(d, IntervalSchedule) and d.online(0, 0.0).all()


def _reference_online_for(s: IntervalSchedule, c: int, t: float) -> float:
    """Unroll client c's intervals over the periods around t, merge, look up."""
    period = float(s.period[c])
    lo, hi = int(s.offsets[c]), int(s.offsets[c + 1])
    base = math.floor(t / period) * period
    spans: list[list[float]] = []
    for k in range(4):
        for a, b in zip(s.starts[lo:hi], s.ends[lo:hi], strict=True):
            a, b = base + k * period + a, base + k * period + b
            if spans and a <= spans[-1][1]:
                spans[-1][1] = max(spans[-1][1], b)
            else:
                spans.append([a, b])
    for a, b in spans:
        if a <= t <= b:
            return INF if b >= base + 4 * period else b - t
    return 0.0


def test_online_for_matches_an_unrolled_reference() -> None:
    rng = np.random.default_rng(0)
    intervals = []
    periods = rng.choice([10.0, 24.0, 100.0], size=300)
    for p in periods:
        cuts = np.sort(rng.uniform(0, p, size=2 * rng.integers(0, 4)))
        if rng.random() < 0.3 and len(cuts):  # start at 0 / end at the period
            cuts[0] = 0.0
        if rng.random() < 0.3 and len(cuts):
            cuts[-1] = p
        intervals.append((cuts[0::2], cuts[1::2]))
    s = IntervalSchedule.build(periods, intervals)
    for t in rng.uniform(0, 500, size=40):
        ids = np.flatnonzero(s.online(0, t))
        got = s.online_for(ids, 0, t)
        want = [_reference_online_for(s, int(c), float(t)) for c in ids]
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
