"""One round on the virtual clock: who is online, who is sampled, what each does.

:class:`RoundPlanner` holds what is fixed for a run (the devices, the
availability model, every client's full local work, the step price and the
round rules) and, given a round, the virtual time it starts at and the
strategy's sample size ``K``, returns the round's :class:`~fedtflite.devices.
RoundPlan`: the clients to run and their step budgets, and the round's
duration. It is pure: the same round at the same virtual time always gives the
same plan, so a resumed run needs only the virtual clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedtflite.devices.availability import Availability
from fedtflite.devices.profiles import DeviceProfiles
from fedtflite.devices.rounds import RoundPlan, RoundRules, overcommit_size, plan_round

__all__ = ["PlannedRound", "RoundPlanner", "sample_online"]


def sample_online(
    seed: int, server_round: int, phase: int, online: np.ndarray, k: int
) -> np.ndarray:
    """``k`` distinct clients drawn uniformly from the online ones, sorted.

    The stream is ``numpy.random.default_rng([seed, server_round, phase])``;
    with every client online it draws exactly what
    :func:`fedtflite.algorithms.sampling.sample_clients` draws (``Generator.choice``
    of ``n`` and of ``arange(n)`` are the same draw).

    Raises
    ------
    ValueError
        ``k`` outside ``0..online clients``.
    """
    ids = np.flatnonzero(online)
    if not 0 <= k <= len(ids):
        raise ValueError(f"cannot sample {k} of {len(ids)} online clients")
    rng = np.random.default_rng([seed, server_round, phase])
    return np.sort(rng.choice(ids, size=k, replace=False))


@dataclass(frozen=True, eq=False)
class PlannedRound:
    """A round's plan and the population it was drawn from.

    Attributes
    ----------
    plan : RoundPlan
        The sampled clients and what each does.
    num_online : int
        Clients online at the round's start.
    """

    plan: RoundPlan
    num_online: int


@dataclass(frozen=True, eq=False)
class RoundPlanner:
    """Plans rounds for one run (see the module docstring).

    Attributes
    ----------
    profiles : DeviceProfiles
        Every client's device.
    availability : Availability
        Who is online when.
    full_steps : np.ndarray
        int64 ``[num_clients]``: each client's full local work in ``train``
        steps (:func:`~fedtflite.devices.local_steps`).
    step_seconds : float
        This model's step on this machine.
    over_commit : float
        Sample ``ceil(over_commit * K)`` (>= 1).
    deadline : float
        Round deadline in seconds (``inf``: none).
    policy : str
        ``drop`` or ``partial``.
    seed : int
        The run's seed (sampling stream ``[seed, round, 0]``).
    """

    profiles: DeviceProfiles
    availability: Availability
    full_steps: np.ndarray
    step_seconds: float
    over_commit: float = 1.0
    deadline: float = math.inf
    policy: str = "drop"
    seed: int = 0

    def plan(
        self,
        server_round: int,
        start: float,
        target: int,
        bytes_down: float,
        bytes_up: float,
    ) -> PlannedRound:
        """Plan ``server_round`` starting at virtual time ``start``.

        Parameters
        ----------
        server_round : int
            The round (it seeds the sample and per-round availability).
        start : float
            The virtual clock when the round starts.
        target : int
            ``K``, the strategy's sample size.
        bytes_down, bytes_up : float
            Bytes each client receives (the weights, and SCAFFOLD's ``c``) and
            sends back.
        """
        online = self.availability.online(server_round, start)
        n = overcommit_size(target, self.over_commit, int(online.sum()))
        ids = sample_online(self.seed, server_round, 0, online, n)
        p = self.profiles
        plan = plan_round(
            ids,
            self.full_steps[ids],
            p.compute_factor[ids],
            p.download_kbps[ids],
            p.upload_kbps[ids],
            bytes_down,
            bytes_up,
            self.availability.online_for(ids, server_round, start),
            step_seconds=self.step_seconds,
            rules=RoundRules(target, self.deadline, self.policy),
        )
        return PlannedRound(plan, int(online.sum()))
