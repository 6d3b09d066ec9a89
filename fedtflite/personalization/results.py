"""``personalization.csv``, its summary line and its chart.

The summary gives the mean, the median and the 10th percentile of the clients'
local test accuracy before and after fine-tuning: the bottom decile is what
fairness studies of federated learning look at (Li et al., "Fair Resource
Allocation in Federated Learning", ICLR 2020).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedtflite.personalization.client import PersonalResult
from fedtflite.report import figure, save_figure

__all__ = [
    "COLUMNS",
    "CSV_FILE",
    "PLOT_FILE",
    "AccuracySummary",
    "plot_personalization",
    "plot_title",
    "read_personalization",
    "summarize",
    "summary_line",
    "write_personalization",
]

CSV_FILE = "personalization.csv"
PLOT_FILE = "personalization.png"
COLUMNS = (
    "client_id",
    "num_examples",
    "acc_global",
    "acc_personal",
    "loss_global",
    "loss_personal",
)


@dataclass(frozen=True)
class AccuracySummary:
    """Spread of per-client accuracy over the clients with test examples.

    Attributes
    ----------
    clients : int
        Clients counted (those with at least one local test example).
    mean, median, p10 : float
        Of the global model's accuracy.
    mean_personal, median_personal, p10_personal : float
        Of the fine-tuned models' accuracy.
    """

    clients: int
    mean: float
    median: float
    p10: float
    mean_personal: float
    median_personal: float
    p10_personal: float


def summarize(results: Sequence[PersonalResult]) -> AccuracySummary:
    """Mean, median and 10th percentile (numpy's linear interpolation) of both."""
    counted = [r for r in results if r.num_examples > 0]
    before = np.array([r.acc_global for r in counted], np.float64)
    after = np.array([r.acc_personal for r in counted], np.float64)

    def spread(a: np.ndarray) -> tuple[float, float, float]:
        if not len(a):
            return math.nan, math.nan, math.nan
        return float(a.mean()), float(np.median(a)), float(np.percentile(a, 10))

    return AccuracySummary(len(counted), *spread(before), *spread(after))


def summary_line(s: AccuracySummary, epochs: int) -> str:
    """One line: both accuracies' mean, median and 10th percentile, in %."""

    def pct(v: float) -> str:
        return f"{100 * v:.2f}"

    return (
        f"personalization ({epochs} local epoch{'s' if epochs != 1 else ''}, "
        f"{s.clients} clients): local test accuracy global -> personalized: "
        f"mean {pct(s.mean)} -> {pct(s.mean_personal)} %, "
        f"median {pct(s.median)} -> {pct(s.median_personal)} %, "
        f"10th percentile {pct(s.p10)} -> {pct(s.p10_personal)} %"
    )


def write_personalization(results: Sequence[PersonalResult], path: Path) -> None:
    """Write ``results`` (sorted by client) as ``personalization.csv``."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in sorted(results, key=lambda r: r.client_id):
            w.writerow([getattr(r, c) for c in COLUMNS])


def read_personalization(path: Path) -> list[PersonalResult]:
    """Read a ``personalization.csv`` back (``seconds`` is not stored: 0)."""
    with path.open(newline="") as f:
        return [
            PersonalResult(
                client_id=int(row["client_id"]),
                num_examples=int(row["num_examples"]),
                acc_global=float(row["acc_global"]),
                acc_personal=float(row["acc_personal"]),
                loss_global=float(row["loss_global"]),
                loss_personal=float(row["loss_personal"]),
            )
            for row in csv.DictReader(f)
        ]


_ALPHA_PARTITIONERS = ("dirichlet", "quantity", "niid-bench-labeldir")


def plot_title(
    model: str, strategy: str, partitioner: str, alpha: float, epochs: int
) -> str:
    """The chart's title: what was trained, on which split, fine-tuned how long."""
    split = (
        f"{partitioner}({alpha:g})"
        if partitioner in _ALPHA_PARTITIONERS
        else partitioner
    )
    return (
        f"{model} · {strategy} · {split} · {epochs} epoch{'s' if epochs != 1 else ''}"
    )


def plot_personalization(
    results: Sequence[PersonalResult], path: Path, title: str
) -> None:
    """Per-client accuracy after fine-tuning against before (the diagonal: no gain)."""
    counted = [r for r in results if r.num_examples > 0]
    before = [100 * r.acc_global for r in counted]
    after = [100 * r.acc_personal for r in counted]
    fig = figure(5, 5)
    ax = fig.add_subplot()
    ax.plot([0, 100], [0, 100], color="grey", lw=1, label="no change")
    sizes = [max(4.0, min(60.0, r.num_examples / 2)) for r in counted]
    ax.scatter(before, after, s=sizes, alpha=0.6, label="client (size: test examples)")
    ax.set(
        xlabel="global model accuracy (%)",
        ylabel="personalized accuracy (%)",
        xlim=(0, 100),
        ylim=(0, 100),
        title=title,
    )
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    save_figure(fig, path)
