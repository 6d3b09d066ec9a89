"""Sweeps: run a grid of simulations, resumably, and gather their histories.

A sweep is a base config plus named *cells*, each a set of ``key = value``
overrides (kebab-case, as ``--set``). Each cell runs in ``out_dir/<cell>/`` with
:func:`fedtflite.simulation.simulate`; a cell whose ``history.csv`` already holds
every round is skipped, and a cell cut off mid-run goes on after the last round of
its checkpoint (:mod:`fedtflite.simulation.checkpoint`), so an interrupted sweep
picks up where it stopped. Cells run one after another in this
process (each simulation already uses every core through Ray), or ``jobs`` at a
time as ``fedtflite simulate`` subprocesses; with ``ray-address`` set, every cell
joins the same Ray cluster.
"""

from __future__ import annotations

import itertools
import math
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedtflite.errors import CheckpointError, ConfigError, invalid_value
from fedtflite.report import figure, save_figure
from fedtflite.simulation.checkpoint import CHECKPOINT_FILE, resume_point
from fedtflite.simulation.config import (
    SimulationConfig,
    config_from_mapping,
    config_to_toml,
)
from fedtflite.simulation.history import RoundRecord, read_history

__all__ = [
    "Cell",
    "CellResult",
    "grid_cells",
    "load_grid",
    "plot_sweep",
    "read_sweep",
    "run_sweep",
    "sweep_table",
]


@dataclass(frozen=True)
class Cell:
    """One simulation of a sweep.

    Attributes
    ----------
    name : str
        Directory name of the cell under the sweep's output directory.
    overrides : dict
        ``{kebab-key: value}`` applied on top of the sweep's base config.
    labels : dict
        ``{axis: option}`` naming the cell in tables (e.g. ``{"alpha": "0.1"}``).
    """

    name: str
    overrides: Mapping[str, Any]
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CellResult:
    """A finished (or unfinished) cell read back from its run directory.

    Attributes
    ----------
    cell : Cell
    config : SimulationConfig
        The resolved config of the cell.
    rounds : tuple of RoundRecord
        Rows of its ``history.csv`` (empty when it has not run).
    complete : bool
        True when every round is there.
    """

    cell: Cell
    config: SimulationConfig
    rounds: tuple[RoundRecord, ...]
    complete: bool

    @property
    def final_accuracy(self) -> float:
        """Centralized test accuracy after the last round (NaN if incomplete)."""
        return self.rounds[-1].test_accuracy if self.complete else math.nan

    @property
    def best_accuracy(self) -> float:
        """Highest centralized test accuracy of any round (NaN if none ran)."""
        return max((r.test_accuracy for r in self.rounds[1:]), default=math.nan)

    def last_rounds_accuracy(self, n: int = 10) -> tuple[float, float]:
        """Mean and sample standard deviation of the last ``n`` rounds' accuracy.

        A non-IID run's accuracy swings from round to round, so its final round
        alone is a noisy number; this is the level and the size of the swing.
        NaN (both) unless the cell is complete with at least ``n`` rounds.
        """
        if n < 2:
            raise ValueError(f"n = {n}: need at least 2 rounds for a spread")
        trained = self.rounds[1:]
        if not self.complete or len(trained) < n:
            return math.nan, math.nan
        tail = [r.test_accuracy for r in trained[-n:]]
        mean = sum(tail) / n
        return mean, math.sqrt(sum((a - mean) ** 2 for a in tail) / (n - 1))

    @property
    def seconds(self) -> float:
        """Wall time of all rounds recorded."""
        return sum(r.seconds for r in self.rounds)


def grid_cells(axes: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[Cell]:
    """The cartesian product of named option sets.

    Parameters
    ----------
    axes : mapping
        ``{axis: {option: {kebab-key: value}}}``, e.g.
        ``{"alpha": {"a01": {"alpha": 0.1}}, "strategy": {"fedavg": {...}}}``. An
        option's ``label`` entry (default: the option's name) names it in tables
        and plots and is not a config key.

    Returns
    -------
    list of Cell
        One per combination, named ``<option>-<option>...`` in axis order
        (characters other than letters, digits, ``.``, ``_`` and ``=`` become
        ``_``), with overrides merged in axis order.
    """
    names = list(axes)
    cells = []
    for combo in itertools.product(*(list(axes[a].items()) for a in names)):
        overrides: dict[str, Any] = {}
        labels = {}
        for axis, (option, values) in zip(names, combo, strict=True):
            overrides.update({k: v for k, v in values.items() if k != "label"})
            labels[axis] = str(values.get("label", option))
        name = "-".join(_safe(option) for option, _ in combo)
        cells.append(Cell(name, overrides, labels))
    return cells


def load_grid(path: str | Path) -> tuple[dict[str, Any], list[Cell]]:
    """A sweep file: ``[base]`` (shared keys) and ``[axes.<axis>.<option>]`` tables.

    Returns
    -------
    (base, cells)
        The base config mapping and :func:`grid_cells` of the axes.

    Raises
    ------
    ConfigError
        Unreadable file, bad TOML, or no ``[base]`` / ``[axes]`` table.
    """
    p = Path(path)
    try:
        grid = tomllib.loads(p.read_text())
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the sweep file: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    if not isinstance(grid.get("base"), dict) or not isinstance(grid.get("axes"), dict):
        raise ConfigError(
            f"{p}: a sweep file needs a [base] table and [axes.<axis>.<option>] tables"
        )
    return dict(grid["base"]), grid_cells(grid["axes"])


def _safe(text: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._=" else "_" for ch in text)


def _cell_config(base: Mapping[str, Any], cell: Cell) -> SimulationConfig:
    try:
        return config_from_mapping({**base, **cell.overrides})
    except ConfigError as e:
        raise ConfigError(f"sweep cell {cell.name!r}: {e}") from None


def _is_complete(run_dir: Path, config: SimulationConfig) -> bool:
    history = run_dir / "history.csv"
    if not (history.is_file() and (run_dir / "final_weights.npz").is_file()):
        return False
    try:
        rows = read_history(history)
    except (OSError, ValueError, TypeError):
        return False
    return len(rows) == config.num_rounds + 1


def _resume_round(
    run_dir: Path, config: SimulationConfig, log: Callable[[str], None]
) -> int | None:
    """The round a partial cell's checkpoint holds, or None when it cannot go on."""
    if not (run_dir / CHECKPOINT_FILE).is_file():
        return None  # cut off before its first checkpoint: round 0
    try:
        checkpoint, _ = resume_point(run_dir, config.to_mapping())
    except CheckpointError as e:
        log(f"{run_dir.name}: starts again from round 0 ({e})")
        return None
    return None if checkpoint is None else checkpoint.round


def read_sweep(
    base: Mapping[str, Any], cells: Sequence[Cell], out_dir: Path
) -> list[CellResult]:
    """Read every cell's history back (cells that have not run have no rounds)."""
    results = []
    for cell in cells:
        config = _cell_config(base, cell)
        history = out_dir / cell.name / "history.csv"
        rows: tuple[RoundRecord, ...] = ()
        if history.is_file():
            try:
                rows = tuple(read_history(history))
            except (ValueError, TypeError):
                rows = ()
        results.append(
            CellResult(cell, config, rows, _is_complete(out_dir / cell.name, config))
        )
    return results


def run_sweep(
    base: Mapping[str, Any],
    cells: Sequence[Cell],
    out_dir: str | Path,
    *,
    jobs: int = 1,
    log: Callable[[str], None] = print,
) -> list[CellResult]:
    """Run every cell that is not complete yet; return all cells' results.

    Parameters
    ----------
    base : mapping
        ``{kebab-key: value}`` shared by every cell (e.g. a TOML file's contents).
    cells : sequence of Cell
        What to run; names must be unique.
    out_dir : path
        The sweep directory; cell ``c`` runs in ``out_dir/c``.
    jobs : int, default 1
        Cells run at once. 1 runs them in this process; more run each as a
        ``fedtflite simulate`` subprocess (give each ``client-cpus`` so that
        ``jobs`` simulations share the cores, or a ``ray-address``).
    log : callable
        Receives one line per cell started, skipped or finished.

    Raises
    ------
    ConfigError
        A cell's config is invalid (checked for every cell before any runs),
        or two cells share a name.
    RuntimeError
        A subprocess cell failed (the others still run first).
    """
    out = Path(out_dir)
    names = [c.name for c in cells]
    if len(set(names)) != len(names):
        raise ConfigError(f"sweep cells need unique names, got {names}")
    if jobs < 1:
        raise ConfigError(invalid_value("jobs", jobs, ">= 1"))
    configs = {c.name: _cell_config(base, c) for c in cells}  # all checked up front
    todo = []
    for cell in cells:
        cell_dir = out / cell.name
        if _is_complete(cell_dir, configs[cell.name]):
            log(f"{cell.name}: complete, skipped")
            continue
        after = _resume_round(cell_dir, configs[cell.name], log)
        if after is not None:
            log(f"{cell.name}: goes on after round {after}")
        elif cell_dir.exists():
            shutil.rmtree(cell_dir)  # a partial run without checkpoint: round 0
        todo.append(cell)
    if jobs == 1:
        from fedtflite.orchestrator import simulate

        for cell in todo:
            start = time.perf_counter()
            log(f"{cell.name}: running")
            history = simulate(
                configs[cell.name], out / cell.name, progress=False, resume=True
            )
            log(
                f"{cell.name}: test accuracy {history.final_accuracy:.4f} "
                f"({time.perf_counter() - start:.0f} s)"
            )
    else:
        _run_subprocesses(todo, configs, out, jobs, log)
    return read_sweep(base, cells, out)


def _run_subprocesses(
    todo: Sequence[Cell],
    configs: Mapping[str, SimulationConfig],
    out: Path,
    jobs: int,
    log: Callable[[str], None],
) -> None:
    pending = list(todo)
    running: dict[str, subprocess.Popen[bytes]] = {}
    failed = []
    while pending or running:
        while pending and len(running) < jobs:
            cell = pending.pop(0)
            cell_dir = out / cell.name
            cell_dir.mkdir(parents=True, exist_ok=True)
            request = cell_dir / "requested.toml"
            request.write_text(config_to_toml(configs[cell.name]))
            with (cell_dir / "simulate.log").open("wb") as logfile:
                running[cell.name] = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "fedtflite.cli",
                        "simulate",
                        str(request),
                        "--out",
                        str(cell_dir),
                        "--no-progress",
                        "--resume",
                    ],
                    stdout=logfile,
                    stderr=subprocess.STDOUT,
                )
            log(f"{cell.name}: started (log {cell_dir / 'simulate.log'})")
        time.sleep(1.0)
        for name, proc in list(running.items()):
            if proc.poll() is None:
                continue
            del running[name]
            if proc.returncode:
                failed.append(name)
                log(f"{name}: FAILED (exit {proc.returncode}); see its simulate.log")
            else:
                log(f"{name}: finished")
    if failed:
        raise RuntimeError(f"sweep cells failed: {', '.join(failed)} (see logs)")


def sweep_table(results: Sequence[CellResult], axes: Sequence[str]) -> str:
    """A Markdown table: one row per cell, its axes, final/best accuracy, time."""
    head = [*axes, "rounds", "final acc. (%)", "best acc. (%)", "time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        ran = max(len(r.rounds) - 1, 0)
        final = f"{100 * r.final_accuracy:.2f}" if r.complete else "—"
        best = "—" if math.isnan(r.best_accuracy) else f"{100 * r.best_accuracy:.2f}"
        cells = [r.cell.labels.get(a, "") for a in axes]
        done = f"{ran}/{r.config.num_rounds}"
        lines.append(
            "| " + " | ".join([*cells, done, final, best, f"{r.seconds:.0f}"]) + " |"
        )
    return "\n".join(lines) + "\n"


def plot_sweep(
    results: Sequence[CellResult],
    path: Path,
    *,
    panel_axis: str | None = None,
    title: str = "",
) -> Path:
    """Test accuracy per round of every cell, one panel per option of ``panel_axis``.

    Within a panel, one line per cell that has rounds, labelled with the cell's
    other axes (a cell that has not run is marked "not run" in the legend).
    """
    panels: dict[str, list[CellResult]] = {}
    for r in results:
        key = r.cell.labels.get(panel_axis, "") if panel_axis else ""
        panels.setdefault(key, []).append(r)
    fig = figure(4.2 * len(panels), 3.8)
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=True)[0]
    for ax, (key, group) in zip(axes, panels.items(), strict=True):
        for r in group:
            label = (
                ", ".join(v for a, v in r.cell.labels.items() if a != panel_axis)
                or r.cell.name
            )
            if not r.rounds:
                label += " (not run)"
            ax.plot(
                [row.round for row in r.rounds],
                [100 * row.test_accuracy for row in r.rounds],
                label=label,
            )
        ax.set(
            title=f"{panel_axis} = {key}" if panel_axis else title,
            xlabel="round",
            xlim=(0, max(r.config.num_rounds for r in group)),
        )
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    axes[0].set_ylabel("test accuracy (%)")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_figure(fig, path, title if panel_axis else None)
    return path
