"""Who took part: per-client counts over a run, ``participation.csv`` and its plot.

Deadlines and over-commitment bias a model toward fast phones (FedScale, Lai
et al. 2022; Oort, Lai et al. OSDI 2021); the counts against each client's
device show by how much.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedtflite.devices.profiles import DeviceProfiles
from fedtflite.devices.rounds import Outcome, RoundPlan
from fedtflite.report import figure, save_figure

__all__ = [
    "PARTICIPATION_COLUMNS",
    "Participation",
    "plot_participation",
    "write_participation",
]

PARTICIPATION_COLUMNS = (
    "client_id",
    "rounds_sampled",
    "rounds_aggregated",
    "rounds_straggled",
    "rounds_offline",
    "compute_factor",
    "download_kbps",
    "upload_kbps",
    "device",
)


@dataclass(frozen=True, eq=False)
class Participation:
    """Per-client counts (int64 ``[num_clients]`` each).

    Attributes
    ----------
    sampled : np.ndarray
        Rounds a client was sampled for training.
    aggregated : np.ndarray
        Rounds it was run and its update aggregated (failed clients included:
        they were sent work).
    straggled : np.ndarray
        Rounds it was late for the deadline or surplus to an over-committed
        sample.
    offline : np.ndarray
        Rounds it went offline before finishing.
    """

    sampled: np.ndarray
    aggregated: np.ndarray
    straggled: np.ndarray
    offline: np.ndarray

    @classmethod
    def zeros(cls, num_clients: int) -> Participation:
        """No round yet."""
        z = np.zeros(num_clients, dtype=np.int64)
        return cls(z, z.copy(), z.copy(), z.copy())

    def add(self, plan: RoundPlan) -> Participation:
        """The counts after one more planned round."""
        out = Participation(
            self.sampled.copy(),
            self.aggregated.copy(),
            self.straggled.copy(),
            self.offline.copy(),
        )
        ids, o = plan.client_ids, plan.outcome
        np.add.at(out.sampled, ids, 1)
        np.add.at(out.aggregated, ids[o == Outcome.AGGREGATED], 1)
        late = (o == Outcome.STRAGGLED) | (o == Outcome.SURPLUS)
        np.add.at(out.straggled, ids[late], 1)
        np.add.at(out.offline, ids[o == Outcome.OFFLINE], 1)
        return out

    def to_arrays(self) -> dict[str, np.ndarray]:
        """For a checkpoint."""
        return {
            "sampled": self.sampled,
            "aggregated": self.aggregated,
            "straggled": self.straggled,
            "offline": self.offline,
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Participation:
        """Back from :meth:`to_arrays`."""
        return cls(
            *(
                np.asarray(arrays[k], dtype=np.int64)
                for k in ("sampled", "aggregated", "straggled", "offline")
            )
        )


def _fmt(x: float) -> str:
    return "inf" if math.isinf(x) else repr(float(x))


def write_participation(
    path: Path, counts: Participation, profiles: DeviceProfiles
) -> None:
    """Write ``participation.csv`` (:data:`PARTICIPATION_COLUMNS`)."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(PARTICIPATION_COLUMNS)
        for c in range(profiles.num_clients):
            w.writerow(
                [
                    c,
                    int(counts.sampled[c]),
                    int(counts.aggregated[c]),
                    int(counts.straggled[c]),
                    int(counts.offline[c]),
                    _fmt(profiles.compute_factor[c]),
                    _fmt(profiles.download_kbps[c]),
                    _fmt(profiles.upload_kbps[c]),
                    profiles.label[c],
                ]
            )


def plot_participation(
    path: Path, counts: Participation, profiles: DeviceProfiles, title: str
) -> None:
    """Draw rounds aggregated against each client's compute factor and upload
    bandwidth (one point per client; log axes), with the sampled rounds."""
    has_network = bool(np.isfinite(profiles.upload_kbps).any())
    fig = figure(10, 4)
    axes = fig.subplots(1, 2 if has_network else 1, squeeze=False)
    panels = [("compute factor (step time / this machine's)", profiles.compute_factor)]
    if has_network:
        panels.append(("upload bandwidth (kbit/s)", profiles.upload_kbps))
    for ax, (label, x) in zip(axes[0], panels, strict=True):
        ax.scatter(x, counts.sampled, s=12, marker="x", alpha=0.5, label="sampled")
        ax.scatter(x, counts.aggregated, s=12, alpha=0.7, label="aggregated")
        if np.all(x > 0) and np.ptp(x) > 0:
            ax.set_xscale("log")
        ax.set(xlabel=label, ylabel="rounds", title="participation")
        ax.grid(alpha=0.3)
        ax.legend()
    save_figure(fig, path, title)
