# The reference runs on NumPy's legacy global generator on purpose (NIID-Bench does).
# ruff: noqa: NPY002
"""NIID-Bench's partitions: the same index sets as NIID-Bench's own code.

The reference below restates ``partition_data`` of NIID-Bench's ``utils.py``
(commit 61b901a) the way NIID-Bench runs it: the *global* generators seeded by
``np.random.seed(s); random.seed(s)`` (``experiments.py``) and drawn from in that
code's order. fedtflite's version draws from private generators instead; equal
index sets for every seed show the streams are consumed identically.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from fedtflite.data import PartitionSpec, load_fashion_mnist, partition_indices
from fedtflite.data.niid_bench import (
    niid_bench_iid,
    niid_bench_label,
    niid_bench_labeldir,
)
from fedtflite.errors import PartitionError

SYNTHETIC = np.random.default_rng(5).integers(0, 10, 3000)


@pytest.fixture(autouse=True)
def _global_rng_restored() -> Iterator[None]:
    np_state, py_state = np.random.get_state(), random.getstate()
    yield
    np.random.set_state(np_state)
    random.setstate(py_state)


def reference(
    labels: np.ndarray, partition: str, n_parties: int, beta: float, seed: int
) -> list[set[int]]:
    """NIID-Bench's partition_data (10 classes), on the global generators."""
    np.random.seed(seed)
    random.seed(seed)
    n_train = labels.shape[0]
    K = 10
    if partition == "homo":
        idxs = np.random.permutation(n_train)
        batches = np.array_split(idxs, n_parties)
        return [set(b.tolist()) for b in batches]
    if partition == "noniid-labeldir":
        min_size = 0
        idx_batch: list[Any] = []
        while min_size < 10:
            idx_batch = [[] for _ in range(n_parties)]
            for k in range(K):
                idx_k = np.where(labels == k)[0]
                np.random.shuffle(idx_k)
                props = np.random.dirichlet(np.repeat(beta, n_parties))
                props = np.array(
                    [
                        p * (len(j) < n_train / n_parties)
                        for p, j in zip(props, idx_batch, strict=True)
                    ]
                )
                props = props / props.sum()
                cut = (np.cumsum(props) * len(idx_k)).astype(int)[:-1]
                idx_batch = [
                    j + i.tolist()
                    for j, i in zip(idx_batch, np.split(idx_k, cut), strict=True)
                ]
                min_size = min(len(j) for j in idx_batch)
        for j in range(n_parties):
            np.random.shuffle(idx_batch[j])
        return [set(b) for b in idx_batch]
    num = int(partition[len("noniid-#label") :])
    out = {i: np.ndarray(0, dtype=np.int64) for i in range(n_parties)}
    if num == 10:
        for i in range(10):
            idx_k = np.where(labels == i)[0]
            np.random.shuffle(idx_k)
            split = np.array_split(idx_k, n_parties)
            for j in range(n_parties):
                out[j] = np.append(out[j], split[j])
        return [set(out[j].tolist()) for j in range(n_parties)]
    times = [0 for _ in range(K)]
    contain = []
    for i in range(n_parties):
        current = [i % K]
        times[i % K] += 1
        j = 1
        while j < num:
            ind = random.randint(0, K - 1)
            if ind not in current:
                j += 1
                current.append(ind)
                times[ind] += 1
        contain.append(current)
    for i in range(K):
        idx_k = np.where(labels == i)[0]
        np.random.shuffle(idx_k)
        split = np.array_split(idx_k, times[i])
        ids = 0
        for j in range(n_parties):
            if i in contain[j]:
                out[j] = np.append(out[j], split[ids])
                ids += 1
    return [set(out[j].tolist()) for j in range(n_parties)]


def as_sets(parts: list[np.ndarray]) -> list[set[int]]:
    return [set(p.tolist()) for p in parts]


@pytest.fixture(scope="module")
def fmnist_labels() -> np.ndarray:
    return load_fashion_mnist(None).train.labels


@pytest.mark.parametrize("seed", [0, 1, 2, 7])
@pytest.mark.parametrize(
    ("kind", "partition", "key", "value"),
    [
        ("niid-bench-label", "noniid-#label1", "classes_per_client", 1),
        ("niid-bench-label", "noniid-#label2", "classes_per_client", 2),
        ("niid-bench-label", "noniid-#label3", "classes_per_client", 3),
        ("niid-bench-labeldir", "noniid-labeldir", "alpha", 0.5),
        ("niid-bench-iid", "homo", "alpha", 0.5),
    ],
)
def test_fashion_mnist_partitions_equal_niid_bench(
    fmnist_labels: np.ndarray,
    kind: str,
    partition: str,
    key: str,
    value: float,
    seed: int,
) -> None:
    spec = PartitionSpec(kind=kind, num_clients=10, seed=seed, **{key: value})
    beta = value if key == "alpha" else 0.5

    ours = as_sets(partition_indices(fmnist_labels, spec))

    assert ours == reference(fmnist_labels, partition, 10, beta, seed)


@pytest.mark.parametrize(
    ("parties", "k", "beta"), [(13, 2, 0.1), (25, 4, 1.0), (10, 10, 5.0), (40, 9, 0.3)]
)
def test_other_party_counts_equal_niid_bench(parties: int, k: int, beta: float) -> None:
    for seed in (0, 3):
        label = niid_bench_label(SYNTHETIC, parties, k, seed)
        labeldir = niid_bench_labeldir(SYNTHETIC, parties, beta, seed)
        iid = niid_bench_iid(SYNTHETIC, parties, seed)

        assert as_sets(label) == reference(
            SYNTHETIC, f"noniid-#label{k}", parties, beta, seed
        )
        assert as_sets(labeldir) == reference(
            SYNTHETIC, "noniid-labeldir", parties, beta, seed
        )
        assert as_sets(iid) == reference(SYNTHETIC, "homo", parties, beta, seed)


def test_global_generators_are_left_alone() -> None:
    np.random.seed(123)
    random.seed(123)
    expected = (np.random.random(), random.random())
    np.random.seed(123)
    random.seed(123)

    niid_bench_labeldir(SYNTHETIC, 10, 0.5, 0)
    niid_bench_label(SYNTHETIC, 10, 2, 0)

    assert (np.random.random(), random.random()) == expected


def test_label_partition_hand_counts() -> None:
    # 10 parties, k = 1: party i holds all of class i (no random draw is needed).
    labels = np.repeat(np.arange(10), 3)
    parts = niid_bench_label(labels, 10, 1, seed=0)

    assert [sorted(p.tolist()) for p in parts] == [
        [3 * i, 3 * i + 1, 3 * i + 2] for i in range(10)
    ]


def test_labeldir_caps_a_party_at_its_fair_share() -> None:
    # A party past N / parties examples takes no share of later classes.
    parts = niid_bench_labeldir(SYNTHETIC, 10, 0.05, seed=0)
    fair = len(SYNTHETIC) / 10
    # Capping happens class by class, so a party can pass the share by at most
    # one class's worth (the class during which it crossed it).
    largest_class = np.bincount(SYNTHETIC).max()
    assert max(len(p) for p in parts) < fair + largest_class
    assert min(len(p) for p in parts) >= 10


def test_unheld_class_is_refused() -> None:
    with pytest.raises(
        PartitionError,
        match=r"^num-clients = 3 is not valid: expected at least 10 .*no client holds",
    ):
        partition_indices(
            SYNTHETIC,
            PartitionSpec(kind="niid-bench-label", num_clients=3, classes_per_client=1),
        )


def test_labeldir_with_too_many_clients_is_refused() -> None:
    with pytest.raises(PartitionError, match="at most 300 clients"):
        partition_indices(
            SYNTHETIC, PartitionSpec(kind="niid-bench-labeldir", num_clients=301)
        )
