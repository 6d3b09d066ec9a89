"""Planning rounds for a run, and counting who took part."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest

from fedtflite.algorithms.sampling import sample_clients
from fedtflite.devices import (
    PARTICIPATION_COLUMNS,
    AlwaysOnline,
    BernoulliOnline,
    DeviceSpec,
    Outcome,
    Participation,
    RoundPlanner,
    make_profiles,
    parse_devices,
    plot_participation,
    sample_online,
    write_participation,
)


def test_sampling_all_online_is_the_plain_sample() -> None:
    for seed, r, n, k in [(0, 1, 100, 10), (3, 7, 50, 13), (1, 2, 1000, 1000)]:
        np.testing.assert_array_equal(
            sample_online(seed, r, 0, np.ones(n, bool), k),
            sample_clients(seed, r, 0, n, k),
        )


def test_sampling_draws_online_clients_only() -> None:
    online = np.zeros(20, bool)
    online[[2, 3, 5, 11, 17]] = True
    got = sample_online(0, 1, 0, online, 4)
    assert set(got.tolist()) <= {2, 3, 5, 11, 17} and len(set(got.tolist())) == 4
    assert got.tolist() == sorted(got.tolist())
    with pytest.raises(ValueError, match="cannot sample 6 of 5 online clients"):
        sample_online(0, 1, 0, online, 6)


def _planner(**kwargs: object) -> RoundPlanner:
    n = 100
    values: dict[str, object] = {
        "profiles": make_profiles(DeviceSpec("none"), n, seed=0),
        "availability": AlwaysOnline(n),
        "full_steps": np.arange(n, dtype=np.int64) % 7 + 1,
        "step_seconds": 0.01,
        "seed": 5,
    }
    values.update(kwargs)
    return RoundPlanner(**values)  # type: ignore[arg-type]


def test_no_devices_is_todays_sample_timed_by_compute() -> None:
    planner = _planner()
    got = planner.plan(
        server_round=3, start=0.0, target=10, bytes_down=1e6, bytes_up=1e6
    )
    ids = sample_clients(5, 3, 0, 100, 10)
    np.testing.assert_array_equal(got.plan.aggregated, ids)
    assert got.num_online == 100
    # free network, factor 1: the slowest client's steps * 0.01 s
    assert got.plan.seconds == pytest.approx(0.01 * (ids % 7 + 1).max())
    assert (got.plan.steps == got.plan.full_steps).all()


def test_over_commit_and_availability() -> None:
    avail = BernoulliOnline(100, 0.5, seed=5)
    planner = _planner(availability=avail, over_commit=1.5)
    got = planner.plan(4, start=0.0, target=10, bytes_down=0, bytes_up=0)
    online = avail.online(4, 0.0)
    assert got.num_online == int(online.sum())
    assert len(got.plan.client_ids) == 15 and online[got.plan.client_ids].all()
    assert len(got.plan.aggregated) == 10 and got.plan.num_surplus == 5
    again = planner.plan(4, start=0.0, target=10, bytes_down=0, bytes_up=0)
    np.testing.assert_array_equal(again.plan.aggregated, got.plan.aggregated)


def test_fewer_online_than_wanted() -> None:
    avail = BernoulliOnline(100, 0.05, seed=1)
    got = _planner(availability=avail).plan(2, 0.0, 30, 0, 0)
    assert len(got.plan.client_ids) == got.num_online < 30
    assert len(got.plan.aggregated) == got.num_online


def test_deadline_plans_use_the_devices() -> None:
    half_slow = make_profiles(DeviceSpec("none"), 100, 0)
    half_slow.compute_factor[1::2] = 10.0  # odd clients ten times slower
    planner = _planner(
        profiles=half_slow,
        full_steps=np.full(100, 10),
        deadline=0.5,  # fast: 0.1 s, slow: 1.0 s
        policy="partial",
    )
    got = planner.plan(1, 0.0, 20, 0, 0).plan
    slow = got.client_ids % 2 == 1
    assert (got.steps[slow] == 5).all() and (got.steps[~slow] == 10).all()
    assert got.seconds == pytest.approx(0.5)


def test_participation_counts() -> None:
    planner = _planner(
        full_steps=np.full(100, 10),
        over_commit=2.0,
        deadline=0.05,  # nobody's 0.1 s fits: all late
    )
    counts = Participation.zeros(100)
    plans = [planner.plan(r, 0.0, 5, 0, 0).plan for r in (1, 2)]
    for plan in plans:
        counts = counts.add(plan)
    assert counts.sampled.sum() == 20 and counts.straggled.sum() == 20
    assert counts.aggregated.sum() == 0 and counts.offline.sum() == 0
    ok = _planner(over_commit=2.0).plan(1, 0.0, 5, 0, 0).plan
    counts = counts.add(ok)
    assert counts.aggregated.sum() == 5 and counts.straggled.sum() == 25
    for c in ok.client_ids[ok.outcome == Outcome.AGGREGATED].tolist():
        assert counts.aggregated[c] == 1
    back = Participation.from_arrays(counts.to_arrays())
    np.testing.assert_array_equal(back.straggled, counts.straggled)


def test_participation_file_and_plot(tmp_path: Path) -> None:
    profiles = make_profiles(parse_devices("tiers"), 4, seed=0)
    counts = Participation(
        np.array([3, 2, 0, 1]),
        np.array([2, 2, 0, 0]),
        np.array([1, 0, 0, 1]),
        np.array([0, 0, 0, 0]),
    )
    write_participation(tmp_path / "participation.csv", counts, profiles)
    with (tmp_path / "participation.csv").open() as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == PARTICIPATION_COLUMNS
    assert rows[1][:5] == ["0", "3", "2", "1", "0"]
    assert float(rows[1][5]) == profiles.compute_factor[0]
    assert rows[1][8] == profiles.label[0]
    plot_participation(tmp_path / "p.png", counts, profiles, "t")
    assert (tmp_path / "p.png").stat().st_size > 1000
    none = make_profiles(DeviceSpec("none"), 4, seed=0)
    write_participation(tmp_path / "n.csv", counts, none)
    assert (tmp_path / "n.csv").read_text().splitlines()[1].endswith(",1.0,inf,inf,")
    plot_participation(tmp_path / "n.png", counts, none, "t")  # one panel, no log
    assert math.isinf(none.upload_kbps[0])
