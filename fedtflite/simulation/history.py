"""A run's per-round record and the callbacks that consume it.

Each side effect of a round (the CSV, the plot, the progress bar) is a
:class:`RoundCallback`; the server calls every callback the same way.
"""

from __future__ import annotations

import csv
import math
from dataclasses import astuple, dataclass, field, fields
from pathlib import Path
from typing import Protocol

from fedtflite.devices import TimeToAccuracy, time_to_accuracy
from fedtflite.report import append_csv, figure, save_figure, write_csv

__all__ = [
    "TIME_COLUMNS",
    "AccuracyPlot",
    "CsvHistory",
    "History",
    "ProgressBar",
    "RoundCallback",
    "RoundRecord",
    "crossings",
    "read_history",
]


@dataclass(frozen=True)
class RoundRecord:
    """One row of ``history.csv``. Round 0 is the initial model (no clients).

    Attributes
    ----------
    round : int
    test_loss, test_accuracy : float
        Centralized evaluation on the 10k test images through ``infer``.
    train_loss : float
        Example-weighted mean of the clients' training losses (NaN at round 0).
    fed_eval_loss, fed_eval_accuracy : float
        Example-weighted federated evaluation on the sampled clients' local
        test splits (NaN when disabled).
    clients_sampled, clients_ok, clients_failed : int
        Simulated clients sampled for training, that succeeded, that failed.
    messages : int
        Flower messages sent (train + evaluate); a message carries a cohort of
        clients (:mod:`fedtflite.algorithms.sampling`).
    seconds : float
        Wall time of the round: from the end of the round before to the end of
        this one's training and federated evaluation. The central evaluation
        runs during the next round (:mod:`server.round_jobs`), so it counts
        only where it held that round up.
    client_compute_seconds : float
        Total on-device seconds of the round's training clients (restore,
        train steps, parameters), summed over clients.
    bytes_down, bytes_up : int
        Weight bytes a real deployment would send to the sampled clients (train +
        evaluate) and receive from the successful ones.
    virtual_seconds : float
        The round's duration on the virtual clock (:mod:`fedtflite.devices`):
        until the ``K``-th update arrives, or the deadline.
    virtual_clock : float
        Virtual seconds since the run started, after this round.
    clients_straggled : int
        Sampled clients not aggregated for time (late for ``round-deadline``, or
        surplus to an ``over-commit``-ted sample); never trained.
    clients_unavailable : int
        Clients offline at the round's start (not sampleable) or, sampled,
        before their update arrived.
    """

    round: int
    test_loss: float
    test_accuracy: float
    train_loss: float
    fed_eval_loss: float
    fed_eval_accuracy: float
    clients_sampled: int
    clients_ok: int
    clients_failed: int
    messages: int
    seconds: float
    client_compute_seconds: float
    bytes_down: int
    bytes_up: int
    virtual_seconds: float = 0.0
    virtual_clock: float = 0.0
    clients_straggled: int = 0
    clients_unavailable: int = 0


TIME_COLUMNS = ("seconds", "client_compute_seconds")
"""Columns that vary between identical runs."""
COLUMNS = tuple(f.name for f in fields(RoundRecord))


@dataclass(frozen=True)
class History:
    """A finished run.

    Attributes
    ----------
    rounds : tuple of RoundRecord
        One per round, round 0 being the initial model.
    run_dir : Path
        Where its files are.
    startup : dict
        Seconds from :func:`~fedtflite.simulation.simulate` to the first round,
        by part: ``model``, ``data``, ``partition``, ``ray`` (start or join),
        ``flower`` (simulation engine, ServerApp, initial evaluation), ``total``.
    """

    rounds: tuple[RoundRecord, ...]
    run_dir: Path
    startup: dict[str, float] = field(default_factory=dict)

    @property
    def final_accuracy(self) -> float:
        """Centralized test accuracy after the last round."""
        return self.rounds[-1].test_accuracy

    def time_to_accuracy(self) -> list[TimeToAccuracy]:
        """First crossings of :data:`~fedtflite.devices.ACCURACY_TARGETS` on the
        virtual clock (central test accuracy)."""
        return crossings(self.rounds)


def crossings(
    rows: tuple[RoundRecord, ...] | list[RoundRecord],
) -> list[TimeToAccuracy]:
    """:func:`fedtflite.devices.time_to_accuracy` of a run's rows."""
    return time_to_accuracy(
        [r.round for r in rows],
        [r.virtual_clock for r in rows],
        [r.test_accuracy for r in rows],
    )


class RoundCallback(Protocol):
    """Called by the server after each round (and once at the end).

    Rounds come in order, one call at a time, from the thread that records
    them while the next round trains; an exception a callback raises stops
    the run when that next round ends (the round it was given gets no
    checkpoint).
    """

    def on_round(self, record: RoundRecord) -> None:
        """Consume one round."""

    def on_end(self) -> None:
        """The run is over."""


class CsvHistory:
    """Writes ``history.csv`` row by row through :mod:`fedtflite.report`
    (flushed: a crashed run keeps its rows)."""

    def __init__(self, path: Path):
        self.path = path
        write_csv(path, COLUMNS, ())

    def on_round(self, record: RoundRecord) -> None:
        # csv writes a float as its repr (NaN as "nan"): read_history reads it back.
        append_csv(self.path, [astuple(record)])

    def on_end(self) -> None:
        pass


def read_history(path: Path) -> list[RoundRecord]:
    """Read a ``history.csv`` back."""
    types: dict[str, type[int] | type[float]] = {
        f.name: (int if f.type == "int" else float) for f in fields(RoundRecord)
    }
    with path.open(newline="") as f:
        return [
            RoundRecord(**{k: types[k](v) for k, v in row.items()})  # type: ignore[arg-type]
            for row in csv.DictReader(f)
        ]


_TIME_UNITS = (
    ("s", 1.0, 600.0),
    ("min", 60.0, 36_000.0),
    ("h", 3600.0, 10 * 86_400.0),
    ("d", 86_400.0, math.inf),
)
"""The virtual-time axis' unit: ``(name, seconds, up to this many seconds)``."""


class AccuracyPlot:
    """Draws ``accuracy.png`` at the end: test accuracy and loss per round, and
    test accuracy against the virtual clock (dotted: the targets crossed)."""

    def __init__(self, path: Path, title: str):
        self.path, self.title = path, title
        self.rows: list[RoundRecord] = []

    def on_round(self, record: RoundRecord) -> None:
        self.rows.append(record)

    def on_end(self) -> None:
        r = [row.round for row in self.rows]
        fig = figure(15, 4)
        ax1, ax2, ax3 = fig.subplots(1, 3)
        ax1.plot(
            r, [row.test_accuracy for row in self.rows], "o-", label="central test"
        )
        fed = [row.fed_eval_accuracy for row in self.rows]
        if any(not math.isnan(v) for v in fed):
            ax1.plot(r, fed, "s--", label="federated eval")
        ax1.set(xlabel="round", ylabel="accuracy", title="accuracy")
        ax1.grid(alpha=0.3)
        ax1.legend()
        ax2.plot(r, [row.test_loss for row in self.rows], "o-", label="central test")
        ax2.plot(r, [row.train_loss for row in self.rows], "^--", label="client train")
        ax2.set(xlabel="round", ylabel="cross-entropy", title="loss")
        ax2.grid(alpha=0.3)
        ax2.legend()
        evaluated = [row for row in self.rows if not math.isnan(row.test_accuracy)]
        end = max((row.virtual_clock for row in self.rows), default=0.0)
        unit, scale = next(
            (u, k) for u, k, most in _TIME_UNITS if end <= most or u == "d"
        )
        ax3.plot(
            [row.virtual_clock / scale for row in evaluated],
            [row.test_accuracy for row in evaluated],
            "o-",
        )
        for c in crossings(self.rows):
            ax3.axhline(c.target, color="grey", lw=0.5, ls=":")
        ax3.set(
            xlabel=f"virtual time ({unit})",
            ylabel="central test accuracy",
            title="accuracy on the virtual clock",
        )
        ax3.grid(alpha=0.3)
        save_figure(fig, self.path, self.title)


class ProgressBar:
    """A tqdm bar over rounds showing the latest accuracy."""

    def __init__(self, num_rounds: int, enabled: bool = True):
        from tqdm import tqdm

        self.bar = tqdm(
            total=num_rounds, desc="rounds", unit="round", disable=not enabled
        )

    def on_round(self, record: RoundRecord) -> None:
        if record.round == 0:
            self.bar.set_postfix_str(f"acc {record.test_accuracy:.4f} (initial)")
            return
        failed = f" failed {record.clients_failed}" if record.clients_failed else ""
        if not math.isnan(record.test_accuracy):  # evaluated this round
            self.bar.set_postfix_str(
                f"acc {record.test_accuracy:.4f} loss {record.test_loss:.3f}{failed}"
            )
        self.bar.update(1)

    def on_end(self) -> None:
        self.bar.close()
