"""The virtual clock of a run, its checkpoint state, and the device config keys."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from fedtflite.devices import ParticipationFiles, VirtualRun, make_planner
from fedtflite.errors import CheckpointError, ConfigError
from fedtflite.simulation import SimulationConfig, config_from_mapping
from fedtflite.simulation.checkpoint import (
    Checkpoint,
    check_resumable,
    load_checkpoint,
    save_checkpoint,
)


def _planner(**kwargs: object) -> VirtualRun:
    values: dict[str, object] = {
        "devices": "none",
        "availability": "always",
        "num_clients": 4,
        "seed": 0,
        # 1, 2, 3 and 4 steps of 10 examples at batch 10
        "train_sizes": np.array([10, 20, 30, 40]),
        "batch_size": 10,
        "local_epochs": 1,
        "step_seconds": 0.5,
    }
    values.update(kwargs)
    return VirtualRun(make_planner(**values))  # type: ignore[arg-type]


def test_no_devices_clock_runs_on_compute_alone() -> None:
    run = _planner()
    plan, timing = run.plan_round(1, 4, bytes_down=1e6, bytes_up=1e6)
    # every client sampled; the slowest does 4 steps of 0.5 s; the network is free
    assert plan.aggregated.tolist() == [0, 1, 2, 3]
    assert timing.virtual_seconds == 2.0 and timing.virtual_clock == 2.0
    assert (timing.clients_straggled, timing.clients_unavailable) == (0, 0)
    _, timing = run.plan_round(2, 4, 1e6, 1e6)
    assert timing.virtual_clock == 4.0 == run.clock
    assert run.counts.sampled.tolist() == [2, 2, 2, 2]


def test_deadline_drops_and_partial_gives_budgets() -> None:
    drop = _planner(round_deadline=1.2)
    plan, timing = drop.plan_round(1, 4, 0, 0)
    # 0.5 and 1.0 s fit, 1.5 and 2.0 s are late; the round lasts to the deadline
    assert plan.aggregated.tolist() == [0, 1]
    assert (timing.clients_straggled, timing.virtual_seconds) == (2, 1.2)
    partial = _planner(round_deadline=1.2, straggler_policy="partial")
    plan, timing = partial.plan_round(1, 4, 0, 0)
    assert plan.aggregated.tolist() == [0, 1, 2, 3]
    assert plan.budget() == {2: 2, 3: 2}  # floor(1.2 / 0.5) steps
    assert timing.clients_straggled == 0 and timing.virtual_seconds == 1.0


def test_over_commit_aggregates_the_first_to_finish() -> None:
    run = _planner(over_commit=2.0)
    plan, timing = run.plan_round(1, 2, 0, 0)
    assert len(plan.client_ids) == 4 and plan.aggregated.tolist() == [0, 1]
    assert timing.clients_straggled == 2  # surplus: finished after the 2nd
    assert timing.virtual_seconds == 1.0


def test_offline_clients_count_as_unavailable() -> None:
    run = _planner(num_clients=4, availability="bernoulli:0.5", seed=1)
    online = run.planner.availability.online(1, 0.0)
    _, timing = run.plan_round(1, 1, 0, 0)
    assert timing.clients_unavailable == 4 - int(online.sum())


def test_state_round_trips_through_a_checkpoint(tmp_path: Path) -> None:
    run = _planner(devices="lognormal", round_deadline=1.2)
    for r in (1, 2, 3):
        run.plan_round(r, 2, 1e5, 1e5)
    path = tmp_path / "checkpoint.npz"
    weights = {"a0": np.zeros(2, np.float32)}
    save_checkpoint(path, Checkpoint(3, {}, weights, {}, run.state()))
    back = load_checkpoint(path)
    assert back is not None
    again = VirtualRun.from_state(run.planner, back.devices)
    assert again.clock == run.clock
    np.testing.assert_array_equal(again.counts.aggregated, run.counts.aggregated)
    a, _ = again.plan_round(4, 2, 1e5, 1e5)
    b, _ = run.plan_round(4, 2, 1e5, 1e5)
    np.testing.assert_array_equal(a.outcome, b.outcome)
    assert VirtualRun.from_state(run.planner, {}).clock == 0.0


def test_participation_files(tmp_path: Path) -> None:
    run = _planner(round_deadline=1.2)
    run.plan_round(1, 4, 0, 0)
    files = ParticipationFiles(tmp_path, run, "test")
    files.on_round(None)
    files.on_end()
    lines = (tmp_path / "participation.csv").read_text().splitlines()
    assert lines[0].startswith("client_id,rounds_sampled,rounds_aggregated,")
    assert [line.split(",")[:3] for line in lines[1:]] == [
        ["0", "1", "1"],
        ["1", "1", "1"],
        ["2", "1", "0"],
        ["3", "1", "0"],
    ]
    assert (tmp_path / "participation.png").stat().st_size > 0


def test_device_keys_default_to_todays_behaviour() -> None:
    c = SimulationConfig()
    assert (c.devices, c.availability, c.over_commit) == ("none", "always", 1.0)
    assert (c.round_deadline, c.straggler_policy, c.step_seconds) == (0.0, "drop", 0.0)
    planner = make_planner(
        devices=c.devices,
        availability=c.availability,
        num_clients=3,
        seed=0,
        train_sizes=np.array([5, 5, 5]),
        batch_size=2,
        local_epochs=1,
        step_seconds=0.1,
        round_deadline=c.round_deadline,
    )
    assert math.isinf(planner.deadline)
    with pytest.raises(ValueError, match="step_seconds"):
        make_planner(**{**planner_kwargs(), "step_seconds": 0.0})


def planner_kwargs() -> dict[str, object]:
    return {
        "devices": "none",
        "availability": "always",
        "num_clients": 1,
        "seed": 0,
        "train_sizes": np.array([1]),
        "batch_size": 1,
        "local_epochs": 1,
        "step_seconds": 1.0,
    }


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("devices", "phones", r"^devices = 'phones' is not valid: expected none"),
        ("devices", "tiers:high=2", r"^devices = 'tiers:high=2' is not valid: "),
        ("availability", "diurnal:x=1", r"^availability = 'diurnal:x=1' is not "),
        ("over-commit", 0.9, r"^over-commit = 0\.9 is not valid: expected >= 1$"),
        ("round-deadline", -2, r"^round-deadline = -2\.0 is not valid"),
        ("straggler-policy", "keep", r"^straggler-policy = 'keep' is not valid"),
        ("step-seconds", -1, r"^step-seconds = -1\.0 is not valid"),
    ],
)
def test_bad_device_keys_name_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_mapping({key: value})


def test_a_resume_that_measures_takes_the_checkpoints_step() -> None:
    recorded = {**SimulationConfig(step_seconds=0.003).to_mapping()}
    checkpoint = Checkpoint(1, recorded, {})
    path = Path("checkpoint.npz")
    check_resumable(checkpoint, SimulationConfig().to_mapping(), 2, path)
    check_resumable(checkpoint, recorded, 2, path)
    other = SimulationConfig(step_seconds=0.004).to_mapping()
    with pytest.raises(CheckpointError, match=r"step-seconds = 0\.003 there"):
        check_resumable(checkpoint, other, 2, path)
