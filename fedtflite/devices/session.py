"""A run on the virtual clock: the planner, the clock, and who took part so far.

:class:`VirtualRun` is the one stateful piece of the device model. The server
asks it, as each training round starts, for the round's plan
(:meth:`VirtualRun.plan_round`); it plans the round at the current virtual time
(:class:`~fedtflite.devices.RoundPlanner`), advances the clock by the round's
duration and adds the round to the participation counts. Its whole state (the
clock and the counts) goes into the checkpoint (:meth:`VirtualRun.state`); the
planner is pure, so a resumed run plans every later round exactly as an
uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedtflite.devices.availability import make_availability, parse_availability
from fedtflite.devices.participation import (
    Participation,
    plot_participation,
    write_participation,
)
from fedtflite.devices.planner import RoundPlanner
from fedtflite.devices.profiles import make_profiles, parse_devices
from fedtflite.devices.rounds import RoundPlan, local_steps

__all__ = ["ParticipationFiles", "RoundTiming", "VirtualRun", "make_planner"]


@dataclass(frozen=True)
class RoundTiming:
    """A training round on the virtual clock (``history.csv``'s columns).

    Attributes
    ----------
    virtual_seconds : float
        The round's duration.
    virtual_clock : float
        The clock after the round.
    clients_sampled : int
        Clients sampled (``ceil(over-commit * K)``, at most the online ones).
    clients_straggled : int
        Sampled clients not aggregated for time: late for the deadline, or
        surplus to an over-committed sample.
    clients_unavailable : int
        Clients the round could not use because they were offline: at its start
        (never sampled) or, sampled, before their update arrived.
    """

    virtual_seconds: float
    virtual_clock: float
    clients_sampled: int
    clients_straggled: int
    clients_unavailable: int


def make_planner(
    *,
    devices: str,
    availability: str,
    num_clients: int,
    seed: int,
    train_sizes: np.ndarray,
    batch_size: int,
    local_epochs: int,
    step_seconds: float,
    over_commit: float = 1.0,
    round_deadline: float = 0.0,
    straggler_policy: str = "drop",
) -> RoundPlanner:
    """The :class:`RoundPlanner` of a run's device settings (config keys).

    Parameters
    ----------
    devices, availability : str
        The ``devices`` and ``availability`` values.
    num_clients, seed : int
        The run's.
    train_sizes : np.ndarray
        Every client's local training examples.
    batch_size, local_epochs : int
        Local training (they give each client's full work in steps).
    step_seconds : float
        This model's ``train`` step on this machine (> 0).
    over_commit, round_deadline, straggler_policy
        The round rules (``round_deadline`` 0: none).

    Raises
    ------
    ConfigError
        A bad ``devices`` or ``availability`` value.
    DeviceFileError
        A device or trace file that cannot be read.
    """
    if not step_seconds > 0:
        raise ValueError(f"step_seconds must be > 0, got {step_seconds}")
    return RoundPlanner(
        profiles=make_profiles(parse_devices(devices), num_clients, seed),
        availability=make_availability(
            parse_availability(availability), num_clients, seed
        ),
        full_steps=local_steps(train_sizes, batch_size, local_epochs),
        step_seconds=step_seconds,
        over_commit=over_commit,
        deadline=round_deadline if round_deadline > 0 else math.inf,
        policy=straggler_policy,
        seed=seed,
    )


class VirtualRun:
    """The virtual clock and participation of one run (see the module docstring).

    Parameters
    ----------
    planner : RoundPlanner
        The run's devices, availability and round rules.
    clock : float
        Virtual seconds already elapsed (a resumed run's).
    counts : Participation, optional
        Participation so far (a resumed run's); default none.
    """

    def __init__(
        self,
        planner: RoundPlanner,
        clock: float = 0.0,
        counts: Participation | None = None,
    ):
        self.planner = planner
        self.clock = float(clock)
        n = planner.profiles.num_clients
        self.counts = Participation.zeros(n) if counts is None else counts

    def plan_round(
        self, server_round: int, target: int, bytes_down: float, bytes_up: float
    ) -> tuple[RoundPlan, RoundTiming]:
        """Plan ``server_round`` at the current clock, then advance the clock.

        Parameters
        ----------
        server_round : int
            The round.
        target : int
            ``K``, the strategy's sample size.
        bytes_down, bytes_up : float
            Bytes each client receives and sends back.
        """
        planned = self.planner.plan(
            server_round, self.clock, target, bytes_down, bytes_up
        )
        plan = planned.plan
        self.clock += plan.seconds
        self.counts = self.counts.add(plan)
        timing = RoundTiming(
            virtual_seconds=plan.seconds,
            virtual_clock=self.clock,
            clients_sampled=len(plan.client_ids),
            clients_straggled=plan.num_late + plan.num_surplus,
            clients_unavailable=(self.planner.profiles.num_clients - planned.num_online)
            + plan.num_offline,
        )
        return plan, timing

    def state(self) -> dict[str, np.ndarray]:
        """The clock and counts as arrays (for a checkpoint)."""
        return {"clock": np.array(self.clock), **self.counts.to_arrays()}

    @classmethod
    def from_state(
        cls, planner: RoundPlanner, state: dict[str, np.ndarray]
    ) -> VirtualRun:
        """Back from :meth:`state` (an empty ``state``: a fresh run)."""
        if not state:
            return cls(planner)
        return cls(
            planner,
            float(state["clock"]),
            Participation.from_arrays({k: v for k, v in state.items() if k != "clock"}),
        )


class ParticipationFiles:
    """A round callback that writes ``participation.csv`` and
    ``participation.png`` of a :class:`VirtualRun` when the run ends.

    Parameters
    ----------
    run_dir : Path
        Where to write them.
    virtual : VirtualRun
        The run's clock and counts.
    title : str
        The plot's title.
    """

    def __init__(self, run_dir: Path, virtual: VirtualRun, title: str):
        self.run_dir, self.virtual, self.title = run_dir, virtual, title

    def on_round(self, record: Any) -> None:
        """Nothing per round: the counts are the run's."""

    def on_end(self) -> None:
        """Write both files."""
        counts, profiles = self.virtual.counts, self.virtual.planner.profiles
        write_participation(self.run_dir / "participation.csv", counts, profiles)
        plot_participation(
            self.run_dir / "participation.png", counts, profiles, self.title
        )
