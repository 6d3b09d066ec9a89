"""Tests of fedtflite.data.partition against flwr-datasets and hand counts."""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from datasets import Dataset
from flwr_datasets import partitioner as fp

from fedtflite.data import (
    FLWR_DATASETS_KINDS,
    PARTITION_KINDS,
    PartitionSpec,
    partition_indices,
    partition_stats,
    split_local_test,
    validate_partition_spec,
    write_partition_stats,
)
from fedtflite.errors import PartitionError

# 1000 examples, 100 per class, in a scrambled but fixed order.
LABELS = np.random.default_rng(0).permutation(np.arange(1000) % 10)


def spec(kind: str, num_clients: int = 10, **kwargs: Any) -> PartitionSpec:
    return PartitionSpec(kind=kind, num_clients=num_clients, **kwargs)


@pytest.mark.parametrize("kind", PARTITION_KINDS)
def test_every_example_goes_to_exactly_one_client(kind: str) -> None:
    parts = partition_indices(LABELS, spec(kind))

    assert len(parts) == 10
    for part in parts:
        assert part.dtype == np.int64
        assert part.size > 0
        assert np.all(np.diff(part) > 0)  # sorted, no repeats
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(1000))


@pytest.mark.parametrize("kind", PARTITION_KINDS)
def test_same_seed_same_partition_other_seed_other(kind: str) -> None:
    first = partition_indices(LABELS, spec(kind, seed=1))
    again = partition_indices(LABELS, spec(kind, seed=1))
    other = partition_indices(LABELS, spec(kind, seed=2))

    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other, strict=True))


def flwr_reference(s: PartitionSpec, part: fp.Partitioner) -> list[set[int]]:
    """What FederatedDataset(shuffle=True, seed=s.seed) hands out, via the API."""
    data = Dataset.from_dict({"label": LABELS, "index": np.arange(len(LABELS))})
    part.dataset = data.shuffle(seed=s.seed)
    return [set(part.load_partition(c)["index"]) for c in range(s.num_clients)]


@pytest.mark.filterwarnings("ignore:Specifying null_placement:FutureWarning")
@pytest.mark.parametrize("kind", FLWR_DATASETS_KINDS)
def test_equals_flwr_datasets_load_partition(kind: str) -> None:
    s = spec(kind, seed=7)
    parts = partition_indices(LABELS, s)
    n, label = s.num_clients, "label"
    reference = {
        "iid": lambda: fp.IidPartitioner(n),
        "dirichlet": lambda: fp.DirichletPartitioner(n, label, s.alpha, seed=7),
        "pathological": lambda: fp.PathologicalPartitioner(
            n, label, 2, class_assignment_mode="first-deterministic", seed=7
        ),
        "shard": lambda: fp.ShardPartitioner(n, label, 2, seed=7),
        "quantity": lambda: fp.SizePartitioner([len(p) for p in parts]),
    }[kind]()

    assert [set(p.tolist()) for p in parts] == flwr_reference(s, reference)


@pytest.mark.parametrize("k", [1, 2])
def test_pathological_gives_each_client_k_classes(k: int) -> None:
    parts = partition_indices(LABELS, spec("pathological", classes_per_client=k))
    for part in parts:
        assert len(np.unique(LABELS[part])) == k


def test_quantity_sizes_respect_the_minimum() -> None:
    parts = partition_indices(LABELS, spec("quantity", alpha=0.1, min_partition_size=7))
    sizes = [len(p) for p in parts]
    assert min(sizes) >= 7
    assert sum(sizes) == 1000
    assert max(sizes) > 300  # alpha=0.1 is strongly skewed


@pytest.mark.parametrize(
    ("kind", "fields", "message"),
    [
        ("zipf", {}, r"^partitioner = 'zipf' is not valid: expected one of iid, dir"),
        ("iid", {"num_clients": 0}, r"^num-clients = 0 is not valid: expected >= 1$"),
        (
            "iid",
            {"num_clients": 1001},
            r"^num-clients = 1001 is not valid: .*1\.\.1000 ",
        ),
        ("dirichlet", {"alpha": 0.0}, r"^alpha = 0\.0 is not valid: expected > 0"),
        ("dirichlet", {"alpha": -1.0}, r"^alpha = -1\.0 is not valid"),
        ("quantity", {"alpha": math.nan}, r"^alpha = nan is not valid"),
        ("dirichlet", {"alpha": math.inf}, r"^alpha = inf is not valid"),
        ("pathological", {"classes_per_client": 0}, r"^classes-per-client = 0 "),
        ("pathological", {"classes_per_client": 11}, r"^classes-per-client = 11 "),
        ("shard", {"shards_per_client": 3}, r"^shards-per-client = 3 .*\(30\) to div"),
        ("shard", {"shards_per_client": 0}, r"^shards-per-client = 0 is not valid"),
        ("iid", {"seed": -1}, r"^seed = -1 is not valid: expected 0\.\.4294967295$"),
        (
            "dirichlet",
            {"min_partition_size": 101},
            r"^min-partition-size = 101 is not valid: expected 0\.\.100 ",
        ),
    ],
)
def test_bad_spec_names_its_key(
    kind: str, fields: dict[str, Any], message: str
) -> None:
    # What needs no data is refused when the spec is built, the rest by validation.
    with pytest.raises(PartitionError, match=message):
        validate_partition_spec(spec(kind, **fields), num_examples=1000)
    with pytest.raises(PartitionError, match=message):
        partition_indices(LABELS, spec(kind, **fields))


def test_labels_must_be_a_1d_integer_array() -> None:
    with pytest.raises(PartitionError, match=r"shape \(2, 500\).*1-D integer"):
        partition_indices(LABELS.reshape(2, 500), spec("iid"))


def test_empty_client_is_named() -> None:
    skewed = spec("dirichlet", num_clients=90, alpha=0.05, min_partition_size=0)
    with pytest.raises(
        PartitionError, match=r"^num-clients = 90 is not valid: .*client \d+ got none"
    ):
        partition_indices(LABELS[:100], skewed)


def test_flwr_datasets_rejection_becomes_partition_error() -> None:
    # DirichletPartitioner gives up after 10 draws that leave a client below 5.
    hopeless = spec("dirichlet", num_clients=20, alpha=0.01, min_partition_size=5)
    with pytest.raises(
        PartitionError,
        match=r"^partitioner = 'dirichlet' is not valid: expected settings flwr",
    ):
        partition_indices(LABELS[:100], hopeless)


def test_split_local_test_hand_counts() -> None:
    indices = np.arange(100, 110, dtype=np.int64)

    train, test = split_local_test(indices, 0.2, seed=3, client_id=4)

    assert (len(train), len(test)) == (8, 2)
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), indices)
    assert np.all(np.diff(train) > 0)
    again = split_local_test(indices, 0.2, seed=3, client_id=4)
    np.testing.assert_array_equal(again[1], test)
    other_clients = [
        split_local_test(indices, 0.2, 3, client_id=c)[1] for c in range(5)
    ]
    assert len({tuple(t) for t in other_clients}) > 1


@pytest.mark.parametrize(
    ("n", "fraction", "sizes"),
    [
        (10, 0.0, (10, 0)),
        (2, 0.9, (1, 1)),
        (10, 0.01, (9, 1)),
        (1, 0.5, (1, 0)),
        (0, 0.5, (0, 0)),
    ],
)
def test_split_local_test_edge_sizes(
    n: int, fraction: float, sizes: tuple[int, int]
) -> None:
    train, test = split_local_test(np.arange(n, dtype=np.int64), fraction, seed=0)
    assert (len(train), len(test)) == sizes


@pytest.mark.parametrize("fraction", [-0.1, 1.0])
def test_split_local_test_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(PartitionError, match=r"^client-test-fraction = .* not valid: "):
        split_local_test(np.arange(5, dtype=np.int64), fraction, seed=0)


def test_partition_stats_hand_counts() -> None:
    labels = np.array([0, 1, 1, 2, 0, 2])
    parts = [np.array([0, 1]), np.array([2, 3, 4]), np.array([5])]

    stats = partition_stats(labels, parts, num_classes=3)

    np.testing.assert_array_equal(stats, [[1, 1, 0], [1, 1, 1], [0, 0, 1]])
    assert stats.dtype == np.int64
    np.testing.assert_array_equal(stats.sum(axis=1), [len(p) for p in parts])


def test_partition_stats_rejects_labels_out_of_range() -> None:
    with pytest.raises(PartitionError, match=r"labels range 0\.\.3; expected 0\.\.2"):
        partition_stats(np.array([0, 3]), [np.array([0, 1])], num_classes=3)


@pytest.mark.parametrize("num_clients", [3, 150])
def test_write_partition_stats(tmp_path: Path, num_clients: int) -> None:
    stats = np.arange(num_clients * 10, dtype=np.int64).reshape(num_clients, 10)

    csv_path, png_path = write_partition_stats(stats, tmp_path / "out")

    with csv_path.open(newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["client", *(f"class_{k}" for k in range(10)), "total"]
    assert rows[1] == ["0", *map(str, range(10)), "45"]
    assert len(rows) == num_clients + 1
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
