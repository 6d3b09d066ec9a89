"""NIID-Bench's own partitions, index for index.

Li, Diao, Chen and He, "Federated Learning on Non-IID Data Silos: An Experimental
Study" (ICDE 2022, arXiv:2102.02079). The algorithms of ``partition_data`` in
NIID-Bench's ``utils.py`` at commit ``61b901ab645e62391772e9898384c2c3485b7a6c``
(github.com/Xtra-Computing/NIID-Bench), for a 10-class data set:

- ``homo`` (:func:`niid_bench_iid`): one permutation, cut into equal blocks.
- ``noniid-labeldir`` (:func:`niid_bench_labeldir`): per class, shuffle its
  indices and draw Dirichlet(beta) shares over the parties; a party that already
  holds ``N / parties`` examples gets no share of later classes; the whole draw is
  repeated until every party holds at least 10 examples; finally each party's
  list is shuffled.
- ``noniid-#label<k>`` (:func:`niid_bench_label`): party ``i`` holds class
  ``i mod 10`` plus ``k - 1`` other classes drawn with Python's ``random``; each
  class (its indices shuffled) is split evenly (``np.array_split``) among the
  parties that hold it. ``k = 10`` gives every party an even share of every class.

NIID-Bench's ``experiments.py`` seeds the global generators right before
partitioning (``np.random.seed(s)``, ``random.seed(s)`` with ``s = init_seed``).
Here each function takes ``seed`` and draws from its own
``numpy.random.RandomState(seed)`` and ``random.Random(seed)``: the same streams
(so the same index sets), without touching global state. The draws happen in
NIID-Bench's order, so the results are identical, including the order of each
party's indices. The returned arrays are in that order; :func:`fedtflite.data.
partition_indices` sorts them like every other partition (the sets are what a
client holds, and clients shuffle every epoch).
"""

from __future__ import annotations

import random
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from fedtflite.errors import PartitionError, invalid_value

__all__ = [
    "MIN_REQUIRE_SIZE",
    "niid_bench_iid",
    "niid_bench_label",
    "niid_bench_labeldir",
]

MIN_REQUIRE_SIZE: Final = 10
"""``noniid-labeldir`` redraws until every party holds at least this many."""
MAX_REDRAWS: Final = 1000
"""Give up (instead of looping forever, as NIID-Bench would) after this many
``noniid-labeldir`` draws; NIID-Bench's own settings need a handful."""

_Labels = NDArray[np.integer[Any]]


def _num_classes(labels: _Labels) -> int:
    return int(labels.max()) + 1 if labels.size else 0


def niid_bench_iid(
    labels: _Labels, num_parties: int, seed: int
) -> list[NDArray[np.int64]]:
    """NIID-Bench's ``homo``: ``array_split`` of one permutation of all indices."""
    rs = np.random.RandomState(seed)
    idxs = rs.permutation(len(labels))
    return [np.asarray(b, np.int64) for b in np.array_split(idxs, num_parties)]


def niid_bench_labeldir(
    labels: _Labels, num_parties: int, beta: float, seed: int
) -> list[NDArray[np.int64]]:
    """NIID-Bench's ``noniid-labeldir``: Dirichlet(``beta``) label skew.

    Parameters
    ----------
    labels : numpy.ndarray
        Class ids ``[N]`` in ``0..9``.
    num_parties : int
        Parties (clients), at most ``N / 10``.
    beta : float
        Dirichlet concentration, > 0.
    seed : int
        NIID-Bench's ``init_seed``.

    Returns
    -------
    list of numpy.ndarray
        Each party's indices, in NIID-Bench's order.

    Raises
    ------
    PartitionError
        No draw in :data:`MAX_REDRAWS` gave every party 10 examples.
    """
    rs = np.random.RandomState(seed)
    n = labels.shape[0]
    num_classes = _num_classes(labels)
    min_size, draws = 0, 0
    idx_batch: list[list[int]] = []
    while min_size < MIN_REQUIRE_SIZE:
        if draws == MAX_REDRAWS:
            raise PartitionError(
                invalid_value(
                    "num-clients",
                    num_parties,
                    f"fewer clients or a larger alpha (now {beta}) for partitioner = "
                    f"'niid-bench-labeldir': no draw of {MAX_REDRAWS} gave every "
                    f"client at least {MIN_REQUIRE_SIZE} examples",
                )
            )
        draws += 1
        idx_batch = [[] for _ in range(num_parties)]
        for k in range(num_classes):
            idx_k = np.where(labels == k)[0]
            rs.shuffle(idx_k)
            proportions = rs.dirichlet(np.repeat(beta, num_parties))
            # A party holding N / parties examples already takes no more.
            proportions = np.array(
                [
                    p * (len(b) < n / num_parties)
                    for p, b in zip(proportions, idx_batch, strict=True)
                ]
            )
            proportions = proportions / proportions.sum()
            cuts = (np.cumsum(proportions) * len(idx_k)).astype(int)[:-1]
            idx_batch = [
                b + part.tolist()
                for b, part in zip(idx_batch, np.split(idx_k, cuts), strict=True)
            ]
            min_size = min(len(b) for b in idx_batch)
    for b in idx_batch:
        rs.shuffle(b)  # a list, as NIID-Bench shuffles it
    return [np.asarray(b, np.int64) for b in idx_batch]


def niid_bench_label(
    labels: _Labels, num_parties: int, classes_per_party: int, seed: int
) -> list[NDArray[np.int64]]:
    """NIID-Bench's ``noniid-#label<k>``: ``k`` classes per party.

    Parameters
    ----------
    labels : numpy.ndarray
        Class ids ``[N]`` in ``0..9``.
    num_parties : int
        Parties (clients).
    classes_per_party : int
        ``k`` in ``1..10``.
    seed : int
        NIID-Bench's ``init_seed``.

    Returns
    -------
    list of numpy.ndarray
        Each party's indices, in NIID-Bench's order.

    Raises
    ------
    PartitionError
        A class no party holds (fewer parties than classes): NIID-Bench's
        ``np.array_split(idx, 0)`` fails there too.
    """
    rs, py = np.random.RandomState(seed), random.Random(seed)
    num_classes = _num_classes(labels)
    parts: list[NDArray[np.int64]] = [np.empty(0, np.int64) for _ in range(num_parties)]
    if classes_per_party == num_classes:
        for k in range(num_classes):
            idx_k = np.where(labels == k)[0]
            rs.shuffle(idx_k)
            for j, split in enumerate(np.array_split(idx_k, num_parties)):
                parts[j] = np.append(parts[j], split)
        return parts
    times = [0] * num_classes
    contain: list[list[int]] = []
    for i in range(num_parties):
        current = [i % num_classes]
        times[i % num_classes] += 1
        while len(current) < classes_per_party:
            ind = py.randint(0, num_classes - 1)
            if ind not in current:
                current.append(ind)
                times[ind] += 1
        contain.append(current)
    unheld = [k for k in range(num_classes) if times[k] == 0]
    if unheld:
        raise PartitionError(
            invalid_value(
                "num-clients",
                num_parties,
                f"at least {num_classes} clients for partitioner = "
                f"'niid-bench-label' with classes-per-client = {classes_per_party}: "
                f"no client holds class(es) {unheld} (seed = {seed})",
            )
        )
    for k in range(num_classes):
        idx_k = np.where(labels == k)[0]
        rs.shuffle(idx_k)
        splits = iter(np.array_split(idx_k, times[k]))
        for j in range(num_parties):
            if k in contain[j]:
                parts[j] = np.append(parts[j], next(splits))
    return parts
