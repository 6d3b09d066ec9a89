"""Cohorts: many simulated clients per Flower message, the arithmetic (pure).

A simulated client's on-device work is about a millisecond, a Flower message
about ten. So a round's sampled clients travel in *cohorts*: one message carries
the ids of several clients, the worker runs them back to back on its one
interpreter (``restore`` makes the model each client's in turn), and the reply
carries either every client's update or, for strategies whose aggregate is an
example-weighted mean, the cohort's exactly pre-aggregated weighted mean with the
cohort's example count as its weight (pfl-research's "simulate many users per
worker, reduce once"). Which clients a round reaches never depends on how they
are grouped.
"""

from __future__ import annotations

import enum
import itertools
import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "Phase",
    "WeightedMean",
    "flower_sample_size",
    "sample_clients",
    "split_cohorts",
]


class Phase(enum.IntEnum):
    """What a round's sample is for; its value seeds the sample's stream."""

    TRAIN = 0
    EVALUATE = 1


def flower_sample_size(num_clients: int, fraction: float, minimum: int) -> int:
    """How many clients Flower's ``FedAvg`` samples per round.

    Flower's rule (``configure_train`` / ``configure_evaluate``):
    ``max(int(num_clients * fraction), minimum)``, and 0 when ``fraction`` is 0.
    Used only to size the federation; the strategy itself decides each round.
    """
    if fraction == 0:
        return 0
    return min(max(int(num_clients * fraction), minimum), num_clients)


def sample_clients(
    seed: int, server_round: int, phase: Phase, num_clients: int, k: int
) -> np.ndarray:
    """``k`` distinct client ids drawn uniformly from ``0..num_clients-1``, sorted.

    The stream is ``numpy.random.default_rng([seed, server_round, phase])``, so a
    round's sample depends on the seed, the round and the :class:`Phase` only.

    Raises
    ------
    ValueError
        ``k`` outside ``0..num_clients``.
    """
    if not 0 <= k <= num_clients:
        raise ValueError(f"cannot sample {k} of {num_clients} clients")
    rng = np.random.default_rng([seed, server_round, int(phase)])
    return np.sort(rng.choice(num_clients, size=k, replace=False))


def split_cohorts(
    client_ids: Sequence[int], clients_per_message: int, num_nodes: int
) -> list[list[int]]:
    """Group a round's clients into cohorts (one Flower message each).

    Parameters
    ----------
    client_ids : sequence of int
        The round's clients, in order.
    clients_per_message : int
        Most clients per message; 0 means one message per node, sizes as equal
        as possible.
    num_nodes : int
        Flower nodes (worker lanes) of the federation, >= 1.

    Returns
    -------
    list of list of int
        Consecutive, non-empty groups that together are ``client_ids`` in order.
    """
    n = len(client_ids)
    if n == 0:
        return []
    size = (
        clients_per_message
        if clients_per_message > 0
        else math.ceil(n / max(num_nodes, 1))
    )
    num = math.ceil(n / size)
    bounds = np.linspace(0, n, num + 1).round().astype(int)
    ids = [int(c) for c in client_ids]
    return [ids[a:b] for a, b in itertools.pairwise(bounds.tolist())]


class WeightedMean:
    """Running example-weighted mean of lists of arrays.

    ``add(arrays, w)`` for each client, then ``mean()`` gives
    ``sum_i w_i arrays_i / sum_i w_i``. It accumulates in each array's own dtype
    (float32 weights: the precision of Flower's own float32 weighted mean, which
    sums ``w_i / W * arrays_i``); a float64 accumulator would cost 5x the time
    (300 vs 40 us per ``mlp`` client).
    """

    def __init__(self) -> None:
        self._sum: list[np.ndarray] | None = None
        self._scaled: list[np.ndarray] = []  # w_i * arrays_i, reused per client
        self._dtypes: list[np.dtype[np.generic]] = []
        self.total_weight = 0.0
        self.count = 0

    def add(self, arrays: Sequence[np.ndarray], weight: float) -> None:
        """Add one client's arrays with weight ``weight`` (> 0)."""
        if self._sum is None:
            # np.array copies; 0-d arrays stay arrays, so += below updates them
            # in place (an array times a float would be a numpy scalar).
            self._sum = [np.array(a) for a in arrays]
            self._scaled = [np.empty_like(acc) for acc in self._sum]
            self._dtypes = [acc.dtype for acc in self._sum]
            for acc in self._sum:
                acc *= acc.dtype.type(weight)
        else:
            for acc, tmp, a in zip(self._sum, self._scaled, arrays, strict=True):
                np.multiply(a, acc.dtype.type(weight), out=tmp)
                np.add(acc, tmp, out=acc)
        self.total_weight += weight
        self.count += 1

    def mean(self) -> list[np.ndarray]:
        """The weighted mean.

        Raises
        ------
        ValueError
            Nothing was added, or the weights sum to zero.
        """
        if self._sum is None or self.total_weight <= 0:
            raise ValueError("weighted mean of nothing")
        return [
            np.asarray(acc / dt.type(self.total_weight), dt)
            for acc, dt in zip(self._sum, self._dtypes, strict=True)
        ]
