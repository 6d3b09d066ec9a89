"""Non-IID partitioning of a labelled data set over simulated clients.

The partitions come from flwr-datasets' own partitioners, fed the same way
``flwr_datasets.FederatedDataset(..., shuffle=True, seed=s)`` feeds them (the split
shuffled with ``seed``, then the partitioner seeded with ``seed``), so a spec gives
the partition other Flower users get for the same settings. Kinds follow NIID-Bench
(Li, Diao, Chen and He, "Federated Learning on Non-IID Data Silos: An Experimental
Study", ICDE 2022, arXiv:2102.02079):

- ``iid``: equal-sized random shards (``IidPartitioner``).
- ``dirichlet``: label skew, per class proportions ~ Dir(alpha) over clients
  (``DirichletPartitioner``; Hsu, Qi and Brown, arXiv:1909.06335).
- ``pathological``: each client holds ``classes-per-client`` classes, NIID-Bench's
  #C=k (``PathologicalPartitioner``, ``class_assignment_mode="first-deterministic"``:
  client i's first class is ``i % 10``, as in NIID-Bench, so every class is used
  once there are at least 10 clients).
- ``shard``: label-sorted shards, ``shards-per-client`` each (``ShardPartitioner``;
  McMahan et al., "Communication-Efficient Learning of Deep Networks from
  Decentralized Data", AISTATS 2017).
- ``quantity``: quantity skew, IID labels with sizes ~ Dir(alpha) (``SizePartitioner``).

NIID-Bench's own algorithms, which give other partitions than flwr-datasets' for
the same settings, are there too (:mod:`fedtflite.data.niid_bench`), index for
index as NIID-Bench's code draws them for the same seed:

- ``niid-bench-iid``: NIID-Bench's ``homo``.
- ``niid-bench-labeldir``: NIID-Bench's ``noniid-labeldir`` with beta = ``alpha``.
- ``niid-bench-label``: NIID-Bench's ``noniid-#label<k>``, k = ``classes-per-client``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from fedtflite.data.fashion_mnist import CLASS_NAMES
from fedtflite.data.niid_bench import (
    MIN_REQUIRE_SIZE,
    niid_bench_iid,
    niid_bench_label,
    niid_bench_labeldir,
)
from fedtflite.errors import PartitionError, invalid_value
from fedtflite.report import figure, save_figure, write_csv

__all__ = [
    "FLWR_DATASETS_KINDS",
    "NIID_BENCH_KINDS",
    "PARTITION_KINDS",
    "PartitionSpec",
    "check_client_test_fraction",
    "local_test_size",
    "partition_indices",
    "partition_stats",
    "split_local_test",
    "validate_partition_spec",
    "write_partition_stats",
]

FLWR_DATASETS_KINDS: Final = ("iid", "dirichlet", "pathological", "shard", "quantity")
"""Kinds that run flwr-datasets' partitioners."""
NIID_BENCH_KINDS: Final = ("niid-bench-iid", "niid-bench-labeldir", "niid-bench-label")
"""Kinds that run NIID-Bench's own algorithms (:mod:`fedtflite.data.niid_bench`)."""
PARTITION_KINDS: Final = FLWR_DATASETS_KINDS + NIID_BENCH_KINDS
"""Valid values of :attr:`PartitionSpec.kind` (config key ``partitioner``)."""

_NUM_CLASSES: Final = 10
_LABEL: Final = "label"
_INDEX: Final = "index"
_MAX_PLOTTED_CLIENTS: Final = 100


@dataclass(frozen=True)
class PartitionSpec:
    """How to split a data set over clients.

    Building one checks every field that needs no data (a bad one raises
    :class:`~fedtflite.errors.PartitionError` naming its config key);
    :func:`validate_partition_spec` checks the rest against a data set's size.

    Attributes
    ----------
    kind : str
        One of :data:`PARTITION_KINDS` (config key ``partitioner``).
    num_clients : int
        Number of clients, >= 1 and at most the number of examples
        (``num-clients``).
    alpha : float
        Dirichlet concentration for ``dirichlet`` and ``niid-bench-labeldir``
        (label skew) and ``quantity`` (size skew); smaller is more skewed, > 0
        (``alpha``). Default 0.5.
    classes_per_client : int
        Classes per client for ``pathological`` and ``niid-bench-label``, in
        ``1..10`` (``classes-per-client``). Default 2.
    shards_per_client : int
        Label-sorted shards per client for ``shard``; ``num_clients *
        shards_per_client`` must divide the number of examples so that none is
        dropped (``shards-per-client``). Default 2.
    seed : int
        Seeds the shuffle and the partitioner, >= 0 (``seed``); for the
        ``niid-bench-*`` kinds, NIID-Bench's ``init_seed``. Default 42, the
        flwr-datasets default.
    min_partition_size : int
        For ``dirichlet``: resample (at most 10 times, as flwr-datasets does) until
        every client has at least this many examples. For ``quantity``: every client
        gets at least this many. Ignored by the other kinds; ``niid-bench-labeldir``
        always asks for 10, as NIID-Bench (``min-partition-size``). Default 10,
        flwr-datasets' default; with more than ``num_examples / 10`` clients use a
        smaller value.
    """

    kind: str
    num_clients: int
    alpha: float = 0.5
    classes_per_client: int = 2
    shards_per_client: int = 2
    seed: int = 42
    min_partition_size: int = 10

    def __post_init__(self) -> None:
        """Check what needs no data; :func:`validate_partition_spec` the rest."""
        for ok, key, value, expected in (
            (
                self.kind in PARTITION_KINDS,
                "partitioner",
                self.kind,
                f"one of {', '.join(PARTITION_KINDS)}",
            ),
            (self.num_clients >= 1, "num-clients", self.num_clients, ">= 1"),
            (
                math.isfinite(self.alpha) and self.alpha > 0,
                "alpha",
                self.alpha,
                "> 0",
            ),
            (
                1 <= self.classes_per_client <= _NUM_CLASSES,
                "classes-per-client",
                self.classes_per_client,
                f"1..{_NUM_CLASSES}",
            ),
            (
                self.shards_per_client >= 1,
                "shards-per-client",
                self.shards_per_client,
                ">= 1",
            ),
            (
                self.min_partition_size >= 0,
                "min-partition-size",
                self.min_partition_size,
                ">= 0",
            ),
            (0 <= self.seed < 2**32, "seed", self.seed, f"0..{2**32 - 1}"),
        ):
            if not ok:
                raise PartitionError(invalid_value(key, value, expected))


def validate_partition_spec(spec: PartitionSpec, num_examples: int) -> None:
    """Reject settings that cannot work with ``num_examples`` examples, before
    any partitioning is done (what needs no data, :class:`PartitionSpec` checks
    when it is built).

    Parameters
    ----------
    spec : PartitionSpec
        The settings.
    num_examples : int
        Size of the data set to partition.

    Raises
    ------
    PartitionError
        Naming the config key (``num-clients``, ``min-partition-size``,
        ``shards-per-client``) and the valid range.
    """
    if not spec.num_clients <= num_examples:
        raise PartitionError(
            invalid_value(
                "num-clients",
                spec.num_clients,
                f"1..{num_examples} (the number of examples)",
            )
        )
    if spec.kind == "niid-bench-labeldir" and not (
        spec.num_clients * MIN_REQUIRE_SIZE <= num_examples
    ):
        raise PartitionError(
            invalid_value(
                "num-clients",
                spec.num_clients,
                f"at most {num_examples // MIN_REQUIRE_SIZE} clients for "
                f"partitioner = {spec.kind!r} (every client needs "
                f"{MIN_REQUIRE_SIZE} examples)",
            )
        )
    if spec.kind in ("dirichlet", "quantity") and not (
        spec.min_partition_size * spec.num_clients <= num_examples
    ):
        raise PartitionError(
            invalid_value(
                "min-partition-size",
                spec.min_partition_size,
                f"0..{num_examples // spec.num_clients} for num-clients = "
                f"{spec.num_clients} ({num_examples} examples)",
            )
        )
    shards = spec.num_clients * spec.shards_per_client
    if spec.kind == "shard" and num_examples % shards:
        raise PartitionError(
            invalid_value(
                "shards-per-client",
                spec.shards_per_client,
                f"num-clients x shards-per-client ({shards}) to divide the "
                f"{num_examples} examples",
            )
        )


def partition_indices(
    labels: NDArray[np.integer[Any]], spec: PartitionSpec
) -> list[NDArray[np.int64]]:
    """Split example indices over clients (flwr-datasets' or NIID-Bench's algorithms).

    Every example goes to exactly one client, except with ``pathological`` when
    fewer clients than classes leave a class unassigned (flwr-datasets warns).

    Parameters
    ----------
    labels : numpy.ndarray
        Integer class ids ``[n]`` in ``0..9``.
    spec : PartitionSpec
        The settings; validated first (:func:`validate_partition_spec`).

    Returns
    -------
    list of numpy.ndarray
        ``spec.num_clients`` int64 arrays of indices into ``labels``, each sorted
        ascending. Same spec, same result.

    Raises
    ------
    PartitionError
        Invalid settings, settings flwr-datasets rejects, or a client left with no
        example (the message names it and how to avoid it).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise PartitionError(
            f"labels have shape {labels.shape} and dtype {labels.dtype}; "
            "expected a 1-D integer array"
        )
    validate_partition_spec(spec, len(labels))
    try:
        parts = _run_partitioner(labels, spec)
    except (ValueError, TypeError) as err:
        reason = " ".join(str(err).split())
        raise PartitionError(
            invalid_value(
                "partitioner",
                spec.kind,
                f"settings flwr-datasets accepts with num-clients = "
                f"{spec.num_clients}; it rejected them: {reason} (try fewer "
                "num-clients, a larger alpha or a smaller min-partition-size)",
            )
        ) from err
    for client, part in enumerate(parts):
        if part.size == 0:
            raise PartitionError(
                invalid_value(
                    "num-clients",
                    spec.num_clients,
                    f"clients that each get an example with partitioner = "
                    f"{spec.kind!r}, but client {client} got none; use fewer "
                    "num-clients, a larger alpha, min-partition-size >= 1 "
                    "(dirichlet), or partitioner = 'shard'",
                )
            )
    return parts


def _run_partitioner(
    labels: NDArray[np.integer[Any]], spec: PartitionSpec
) -> list[NDArray[np.int64]]:
    if spec.kind == "niid-bench-iid":
        parts = niid_bench_iid(labels, spec.num_clients, spec.seed)
    elif spec.kind == "niid-bench-labeldir":
        parts = niid_bench_labeldir(labels, spec.num_clients, spec.alpha, spec.seed)
    elif spec.kind == "niid-bench-label":
        parts = niid_bench_label(
            labels, spec.num_clients, spec.classes_per_client, spec.seed
        )
    else:
        return _run_flwr_partitioner(labels, spec)
    return [np.sort(p) for p in parts]


def _run_flwr_partitioner(
    labels: NDArray[np.integer[Any]], spec: PartitionSpec
) -> list[NDArray[np.int64]]:
    # Imported here: `datasets` costs ~1 s to import and only partitioning needs it.
    from datasets import Dataset
    from flwr_datasets import partitioner as fp

    n = len(labels)
    # The arrow format makes column reads vectorised; the default format converts
    # row by row (about 1 s per column of 60 000 rows).
    dataset = (
        Dataset.from_dict({_LABEL: labels, _INDEX: np.arange(n, dtype=np.int64)})
        .shuffle(seed=spec.seed)
        .with_format("arrow")
    )
    if spec.kind == "iid":
        # IidPartitioner.load_partition(i) is dataset.shard(num_clients, i,
        # contiguous=True): exactly np.array_split's blocks, without building one
        # Dataset per client (~1 ms each, 10 s for 10 000 clients).
        order = np.asarray(dataset[_INDEX], dtype=np.int64)
        return [np.sort(block) for block in np.array_split(order, spec.num_clients)]
    common: dict[str, Any] = {
        "num_partitions": spec.num_clients,
        "partition_by": _LABEL,
        "seed": spec.seed,
    }
    part: Any
    if spec.kind == "dirichlet":
        part = fp.DirichletPartitioner(
            **common, alpha=spec.alpha, min_partition_size=spec.min_partition_size
        )
    elif spec.kind == "pathological":
        part = fp.PathologicalPartitioner(
            **common,
            num_classes_per_partition=spec.classes_per_client,
            class_assignment_mode="first-deterministic",
        )
    elif spec.kind == "shard":
        part = fp.ShardPartitioner(
            **common, num_shards_per_partition=spec.shards_per_client
        )
    else:  # quantity
        part = fp.SizePartitioner(_quantity_sizes(n, spec))
    part.dataset = dataset
    with warnings.catch_warnings():
        # DirichletPartitioner warns on every resampling; a final failure raises.
        warnings.filterwarnings("ignore", "The specified min_partition_size")
        # datasets' sort (ShardPartitioner) uses a pyarrow option deprecated in 25.
        warnings.filterwarnings("ignore", "Specifying null_placement", FutureWarning)
        part.num_partitions  # noqa: B018 - the property runs the partitioning
    # ShardPartitioner re-sorts its dataset, so map rows back through its own copy.
    rows = np.asarray(part.dataset[_INDEX], dtype=np.int64)
    # flwr-datasets 0.6.1 has no public accessor for all partitions at once, and
    # load_partition() per client is too slow at 10 000 clients; the equality with
    # load_partition() is checked in tests/test_partition.py.
    assigned: dict[int, list[int]] = part._partition_id_to_indices
    return [
        np.sort(rows[np.asarray(assigned[c], dtype=np.int64)])
        for c in range(spec.num_clients)
    ]


def _quantity_sizes(num_examples: int, spec: PartitionSpec) -> list[int]:
    """Client sizes: ``min_partition_size`` each plus a Dir(alpha) share of the rest.

    NIID-Bench draws proportions ~ Dir(beta) and resamples until every client has
    10 examples; guaranteeing the minimum up front instead cannot fail at 10 000
    clients. Rounding by largest remainder, so the sizes sum to ``num_examples``.
    """
    rng = np.random.default_rng(spec.seed)
    rest = num_examples - spec.min_partition_size * spec.num_clients
    share = rng.dirichlet(np.full(spec.num_clients, float(spec.alpha))) * rest
    sizes = np.floor(share).astype(np.int64)
    remainder_order = np.argsort(-(share - sizes), kind="stable")
    sizes[remainder_order[: rest - int(sizes.sum())]] += 1
    return [int(s) + spec.min_partition_size for s in sizes]


def local_test_size(n: int, fraction: float) -> int:
    """Examples a client of ``n`` holds out (:func:`split_local_test`'s rule)."""
    if fraction > 0 and n >= 2:
        return int(min(max(math.floor(fraction * n + 0.5), 1), n - 1))
    return 0


def check_client_test_fraction(fraction: float) -> None:
    """Refuse a ``client-test-fraction`` outside ``[0, 1)``.

    Raises
    ------
    PartitionError
        Naming the key and the valid range.
    """
    if not 0 <= fraction < 1:
        raise PartitionError(
            invalid_value("client-test-fraction", fraction, "a fraction in [0, 1)")
        )


def split_local_test(
    indices: NDArray[np.int64], fraction: float, seed: int, *, client_id: int = 0
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Split one client's indices into a local train and a local test part.

    The test part has ``round(fraction * n)`` examples, but at least 1 and at most
    ``n - 1`` when ``fraction > 0`` and ``n >= 2``: a client keeps at least one
    example to train on. With ``fraction == 0`` or ``n < 2`` the test part is empty.
    Drawn from ``numpy.random.default_rng([seed, client_id])``.

    Parameters
    ----------
    indices : numpy.ndarray
        The client's example indices ``[n]``.
    fraction : float
        Share held out for local evaluation, in ``[0, 1)``
        (``client-test-fraction``).
    seed : int
        Run seed, >= 0.
    client_id : int, optional
        The client, >= 0, so that each client gets its own stream. Default 0.

    Returns
    -------
    tuple of numpy.ndarray
        ``(train, test)`` int64 indices, each sorted ascending, disjoint, together
        ``indices``.

    Raises
    ------
    PartitionError
        ``fraction`` outside ``[0, 1)``.
    """
    check_client_test_fraction(fraction)
    indices = np.asarray(indices, dtype=np.int64)
    n = len(indices)
    num_test = local_test_size(n, fraction)
    rng = np.random.default_rng([seed, client_id])
    order = rng.permutation(n)
    return np.sort(indices[order[num_test:]]), np.sort(indices[order[:num_test]])


def partition_stats(
    labels: NDArray[np.integer[Any]],
    parts: list[NDArray[np.int64]],
    num_classes: int = _NUM_CLASSES,
) -> NDArray[np.int64]:
    """Count examples per client and class.

    Parameters
    ----------
    labels : numpy.ndarray
        Class ids ``[n]`` in ``0..num_classes-1``.
    parts : list of numpy.ndarray
        Index arrays per client, as from :func:`partition_indices`.
    num_classes : int, optional
        Number of classes. Default 10.

    Returns
    -------
    numpy.ndarray
        int64 ``[len(parts), num_classes]``; row ``c`` sums to ``len(parts[c])``.

    Raises
    ------
    PartitionError
        A label of a partitioned example outside ``0..num_classes-1``.
    """
    sizes = np.array([len(p) for p in parts], dtype=np.int64)
    flat = np.concatenate([np.asarray(p, dtype=np.int64) for p in parts] + [sizes[:0]])
    chosen = np.asarray(labels)[flat].astype(np.int64)
    if chosen.size and (chosen.min() < 0 or chosen.max() >= num_classes):
        raise PartitionError(
            f"labels range {chosen.min()}..{chosen.max()}; "
            f"expected 0..{num_classes - 1}"
        )
    owner = np.repeat(np.arange(len(parts), dtype=np.int64), sizes)
    counts = np.bincount(
        owner * num_classes + chosen, minlength=len(parts) * num_classes
    )
    return counts.reshape(len(parts), num_classes).astype(np.int64)


def write_partition_stats(stats: NDArray[np.int64], out_dir: Path) -> tuple[Path, Path]:
    """Write the per-client class counts as ``partition.csv`` and ``partition.png``.

    The CSV has the header ``client,class_0,...,class_{C-1},total`` and one row per
    client. The PNG stacks each client's class counts in one bar (legend with the
    Fashion-MNIST class names when there are 10 classes); with more than 100
    clients only the first 100 are drawn and the title says so.

    Parameters
    ----------
    stats : numpy.ndarray
        int ``[num_clients, num_classes]``, as from :func:`partition_stats`.
    out_dir : pathlib.Path
        Directory to write into; created if missing.

    Returns
    -------
    tuple of pathlib.Path
        ``(csv_path, png_path)``.
    """
    from matplotlib import colormaps

    out_dir.mkdir(parents=True, exist_ok=True)
    num_clients, num_classes = stats.shape
    csv_path, png_path = out_dir / "partition.csv", out_dir / "partition.png"
    write_csv(
        csv_path,
        ["client", *(f"class_{k}" for k in range(num_classes)), "total"],
        ([client, *row, sum(row)] for client, row in enumerate(stats.tolist())),
    )

    shown = stats[:_MAX_PLOTTED_CLIENTS]
    names = (
        [f"{k} {name}" for k, name in enumerate(CLASS_NAMES)]
        if num_classes == len(CLASS_NAMES)
        else [f"class {k}" for k in range(num_classes)]
    )
    fig = figure(max(6.0, 0.12 * len(shown) + 3.0), 4.5)
    ax = fig.add_subplot()
    clients = np.arange(len(shown))
    bottom = np.zeros(len(shown), dtype=np.int64)
    colors = colormaps["tab10" if num_classes <= 10 else "tab20"]
    for k in range(num_classes):
        ax.bar(
            clients,
            shown[:, k],
            bottom=bottom,
            width=0.9,
            label=names[k],
            color=colors(k % colors.N),
        )
        bottom += shown[:, k]
    title = f"Examples per class for {num_clients} clients"
    if num_clients > len(shown):
        title += f" (first {len(shown)} shown)"
    ax.set(
        title=title, xlabel="client", ylabel="examples", xlim=(-0.6, len(shown) - 0.4)
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    save_figure(fig, png_path)
    return csv_path, png_path
