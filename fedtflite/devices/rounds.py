"""A round on real devices, planned before anything is sent (pure arithmetic).

Every sampled client's time is known from the model before it trains:

    seconds = download + steps * step_seconds * compute_factor + upload
    download = bytes_down * 8 / (download_kbps * 1000), upload likewise

(``step_seconds`` is this model's calibrated ``train`` step on this machine,
:mod:`fedtflite.devices.calibrate`; the bytes are the round's real weight
bytes). So the server decides, before sending, what each sampled client will
do (:func:`plan_round`):

- **offline**: it goes offline before its update would arrive (and before the
  deadline): lost for the round;
- **straggled**: its update would arrive after the round's deadline. With the
  ``drop`` policy it is discarded; with ``partial`` it is told a step budget,
  the most steps that fit before the deadline (FedProx's variable local work,
  Li et al., MLSys 2020), and straggles only when not even one step fits;
- **surplus**: over-commitment (FedScale, Lai et al. 2022; Bonawitz et al.
  2019 sample 130 % of the target) samples ``ceil(over_commit * K)`` clients
  and aggregates the first ``K`` to finish; the later ones are surplus;
- **aggregated**: the rest, at most ``K``, trained (fully or up to their
  budget) and aggregated.

Only aggregated clients are computed: the others' updates would be discarded,
so the simulation never runs them. The round lasts until the ``K``-th update
arrives; when fewer than ``K`` arrive, until the deadline, or without one until
every sampled client has finished or gone offline. Ties are broken by client id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

__all__ = [
    "STRAGGLER_POLICIES",
    "Outcome",
    "RoundPlan",
    "RoundRules",
    "local_steps",
    "overcommit_size",
    "plan_round",
    "transfer_seconds",
]

STRAGGLER_POLICIES = ("drop", "partial")


class Outcome(IntEnum):
    """What a sampled client does in a planned round."""

    AGGREGATED = 0
    """Trains (its full work, or its step budget) and is aggregated."""
    SURPLUS = 1
    """Over-committed: it would finish, but after the ``K``-th; not run."""
    STRAGGLED = 2
    """It would miss the deadline (nothing fits, with ``partial``); not run."""
    OFFLINE = 3
    """It goes offline before it would finish; not run."""


@dataclass(frozen=True)
class RoundRules:
    """How a round treats time.

    Attributes
    ----------
    target : int
        ``K``: updates aggregated at most (Flower's per-round sample size).
    deadline : float
        Seconds after the round's start after which updates are late
        (``inf``: none).
    policy : str
        ``drop`` or ``partial`` (:data:`STRAGGLER_POLICIES`).
    """

    target: int
    deadline: float = math.inf
    policy: str = "drop"

    def __post_init__(self) -> None:
        if self.target < 0:
            raise ValueError(f"target must be >= 0, got {self.target}")
        if not self.deadline > 0:
            raise ValueError(f"deadline must be > 0 seconds, got {self.deadline}")
        if self.policy not in STRAGGLER_POLICIES:
            raise ValueError(
                f"policy {self.policy!r}; expected one of {STRAGGLER_POLICIES}"
            )


@dataclass(frozen=True, eq=False)
class RoundPlan:
    """A planned round.

    Attributes
    ----------
    client_ids : np.ndarray
        int64, the sampled clients, in the order given.
    outcome : np.ndarray
        int8 :class:`Outcome` per client.
    steps : np.ndarray
        int64 steps each aggregated client runs (0 for the others).
    full_steps : np.ndarray
        int64 steps of each client's full local work.
    finish : np.ndarray
        float64 seconds after the round's start at which each client's update
        would arrive (with its budget); ``inf`` for offline and straggled ones.
    seconds : float
        The round's duration.
    """

    client_ids: np.ndarray
    outcome: np.ndarray
    steps: np.ndarray
    full_steps: np.ndarray
    finish: np.ndarray
    seconds: float

    def _count(self, outcome: Outcome) -> int:
        return int(np.count_nonzero(self.outcome == outcome))

    @property
    def aggregated(self) -> np.ndarray:
        """Ids of the clients to run, in the given order."""
        ids: np.ndarray = self.client_ids[self.outcome == Outcome.AGGREGATED]
        return ids

    @property
    def num_offline(self) -> int:
        """Sampled clients lost because they went offline."""
        return self._count(Outcome.OFFLINE)

    @property
    def num_late(self) -> int:
        """Sampled clients discarded for the deadline."""
        return self._count(Outcome.STRAGGLED)

    @property
    def num_surplus(self) -> int:
        """Over-committed clients that finished after the ``K``-th."""
        return self._count(Outcome.SURPLUS)

    @property
    def num_partial(self) -> int:
        """Aggregated clients that run fewer steps than their full work."""
        partial = (self.outcome == Outcome.AGGREGATED) & (self.steps < self.full_steps)
        return int(np.count_nonzero(partial))

    def budget(self) -> dict[int, int]:
        """``{client id: steps}`` of the aggregated clients cut short."""
        cut = (self.outcome == Outcome.AGGREGATED) & (self.steps < self.full_steps)
        return dict(
            zip(self.client_ids[cut].tolist(), self.steps[cut].tolist(), strict=True)
        )


def transfer_seconds(num_bytes: np.ndarray | float, kbps: np.ndarray) -> np.ndarray:
    """Seconds to move ``num_bytes`` at ``kbps`` kilobits (1000 bits) per second.

    ``inf`` bandwidth costs 0 s.
    """
    result: np.ndarray = (
        np.asarray(num_bytes, dtype=np.float64)
        * 8.0
        / (np.asarray(kbps, dtype=np.float64) * 1000.0)
    )
    return result


def local_steps(num_examples: np.ndarray, batch_size: int, epochs: int) -> np.ndarray:
    """``train`` steps of full local work: ``epochs * ceil(n / batch_size)``.

    The schedule of :meth:`fedtflite.runtime.ClientModel.fit` (the last partial
    batch is a step too).
    """
    n = np.asarray(num_examples, dtype=np.int64)
    result: np.ndarray = epochs * (-(-n // batch_size))
    return result


def overcommit_size(target: int, over_commit: float, available: int) -> int:
    """Clients to sample: ``ceil(over_commit * target)``, at most ``available``.

    The product is rounded to 9 decimals first, so that 1.3 * 10 samples 13
    (not the 14 that ``ceil(13.000000000000002)`` would give).
    """
    return min(math.ceil(round(over_commit * target, 9)), available)


def plan_round(
    client_ids: np.ndarray,
    full_steps: np.ndarray,
    compute_factor: np.ndarray,
    download_kbps: np.ndarray,
    upload_kbps: np.ndarray,
    bytes_down: np.ndarray | float,
    bytes_up: np.ndarray | float,
    online_for: np.ndarray,
    *,
    step_seconds: float,
    rules: RoundRules,
) -> RoundPlan:
    """Decide every sampled client's part in a round (see the module docstring).

    Parameters
    ----------
    client_ids : np.ndarray
        The sampled clients (all online at the round's start).
    full_steps : np.ndarray
        Each one's full local work in steps (:func:`local_steps`).
    compute_factor, download_kbps, upload_kbps : np.ndarray
        Each one's device (:class:`~fedtflite.devices.DeviceProfiles` rows).
    bytes_down, bytes_up : np.ndarray or float
        Bytes each one receives and sends.
    online_for : np.ndarray
        Seconds each one stays online from the round's start (``inf``: all
        round).
    step_seconds : float
        Seconds of one ``train`` step on this machine.
    rules : RoundRules
        Target, deadline and straggler policy.
    """
    ids = np.asarray(client_ids, dtype=np.int64)
    n = len(ids)
    steps = np.asarray(full_steps, dtype=np.int64)
    per_step = step_seconds * np.asarray(compute_factor, dtype=np.float64)
    network = transfer_seconds(bytes_down, download_kbps) + transfer_seconds(
        bytes_up, upload_kbps
    )
    network = np.broadcast_to(network, (n,))
    deadline = rules.deadline
    budget = steps.copy()
    if rules.policy == "partial" and math.isfinite(deadline):
        with np.errstate(divide="ignore", invalid="ignore"):
            fits = np.floor((deadline - network) / per_step)
        fits = np.where(per_step > 0, fits, steps)
        budget = np.clip(np.nan_to_num(fits, nan=0.0), 0, steps).astype(np.int64)
        # floor() can round up across the deadline by one ulp: step back once
        budget = np.where(network + budget * per_step > deadline, budget - 1, budget)
        budget = np.maximum(budget, 0)
    finish = network + budget * per_step
    no_work = (budget == 0) & (steps > 0)
    late = (finish > deadline) | no_work
    online = np.asarray(online_for, dtype=np.float64)
    offline = (online < finish) & (online < deadline)
    late &= ~offline
    ok = ~late & ~offline
    outcome = np.full(n, Outcome.SURPLUS, dtype=np.int8)
    outcome[late] = Outcome.STRAGGLED
    outcome[offline] = Outcome.OFFLINE
    candidates = np.flatnonzero(ok)
    order = candidates[np.lexsort((ids[candidates], finish[candidates]))]
    k = min(rules.target, n)
    first = order[:k]
    outcome[first] = Outcome.AGGREGATED
    if len(first) >= k and k > 0:
        seconds = float(finish[first[-1]])
    elif math.isfinite(deadline) and n:
        seconds = deadline
    elif n:  # no deadline: until the last one arrives or goes offline
        seconds = float(np.max(np.minimum(finish, online)))
    else:
        seconds = 0.0
    run = outcome == Outcome.AGGREGATED
    return RoundPlan(
        client_ids=ids,
        outcome=outcome,
        steps=np.where(run, budget, 0),
        full_steps=steps,
        finish=np.where(late | offline, np.inf, finish),
        seconds=seconds,
    )
