"""The one way fedtflite draws a figure and writes a table.

Figures are matplotlib's object API on an Agg canvas: no ``pyplot``, no global
backend switch, so drawing never changes the caller's matplotlib state and
works in any thread. Every PNG a run writes (``accuracy.png``,
``partition.png``, ``participation.png``, a sweep's and a personalization's
plots) uses :func:`figure` and :func:`save_figure`; every CSV :func:`write_csv`
(and :func:`append_csv`, for one that grows row by row, as ``history.csv``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["append_csv", "figure", "save_figure", "write_csv"]

DPI = 100
"""Resolution of every saved figure."""


def figure(width: float, height: float) -> Any:
    """A new ``matplotlib.figure.Figure`` of ``width`` x ``height`` inches on an
    Agg canvas (matplotlib is imported on first use: ~1 s)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: Path, title: str | None = None) -> None:
    """Lay out ``fig`` (with a ``title`` above it) and write it as a PNG."""
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)


def write_csv(
    path: Path, header: Sequence[str], rows: Iterable[Sequence[object]]
) -> None:
    """Write a CSV table: ``header``, then ``rows``."""
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def append_csv(path: Path, rows: Iterable[Sequence[object]]) -> None:
    """Append ``rows`` to a CSV table :func:`write_csv` started; the file is
    closed (flushed) before returning, so a crashed run keeps every row."""
    with path.open("a", newline="") as f:
        csv.writer(f).writerows(rows)
