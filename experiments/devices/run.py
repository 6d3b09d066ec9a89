"""Real devices: FedAvg vs FedProx under deadlines, over-commitment and partial work.

Runs every cell of ``grid.toml`` with :func:`fedtflite.orchestrator.sweep.run_sweep`
(resumably: a finished cell is never rerun), then draws test accuracy against
the virtual clock of every cell in one plot (``accuracy_vs_time.png``) and
writes the numbers into ``RESULTS.md`` (between its ``results`` markers; the
text around them is kept).

Examples::

    python experiments/devices/run.py                  # the grid, then the report
    python experiments/devices/run.py --report-only    # just the report
    python experiments/devices/run.py --quick --out /tmp/q   # 3 rounds
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
from pathlib import Path

from fedtflite.devices import format_duration, time_to_accuracy
from fedtflite.orchestrator.sweep import CellResult, load_grid, read_sweep, run_sweep

HERE = Path(__file__).resolve().parent
TARGETS = (0.6, 0.7, 0.75, 0.8)
MARKERS = ("<!-- results -->", "<!-- /results -->")


def _time_to(result: CellResult, target: float) -> str:
    rows = result.rounds
    for c in time_to_accuracy(
        [r.round for r in rows],
        [r.virtual_clock for r in rows],
        [r.test_accuracy for r in rows],
        [target],
    ):
        return f"{format_duration(c.virtual_seconds)} (r{c.round})"
    return "—"


def _accuracy_at(result: CellResult, seconds: float) -> float:
    """Test accuracy of the last evaluated round ending by ``seconds``."""
    best = math.nan
    for r in result.rounds:
        if r.virtual_clock <= seconds and not math.isnan(r.test_accuracy):
            best = r.test_accuracy
    return best


def results_table(results: list[CellResult]) -> str:
    """One row per cell: accuracy, virtual time, time to targets, who took part."""
    done = [r for r in results if r.rounds]
    budget = min(r.rounds[-1].virtual_clock for r in done) if done else 0.0
    head = [
        "rounds",
        "strategy",
        "final acc. (%)",
        f"acc. at {format_duration(budget)} (%)",
        "virtual time",
        *(f"to {t * 100:g} %" for t in TARGETS),
        "aggregated / round",
        "straggled / round",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in done:
        trained = r.rounds[1:]
        lines.append(
            "| "
            + " | ".join(
                [
                    r.cell.labels["rounds"],
                    r.cell.labels["strategy"],
                    f"{100 * r.rounds[-1].test_accuracy:.1f}",
                    f"{100 * _accuracy_at(r, budget):.1f}",
                    format_duration(r.rounds[-1].virtual_clock),
                    *(_time_to(r, t) for t in TARGETS),
                    f"{statistics.mean(x.clients_ok for x in trained):.1f}",
                    f"{statistics.mean(x.clients_straggled for x in trained):.1f}",
                ]
            )
            + " |"
        )
    return "\n".join(lines) + "\n"


def participation_table(results: list[CellResult], out: Path) -> str:
    """Per cell: rounds sampled / aggregated of the fastest and slowest quarter
    of the clients by compute factor, and the clients never aggregated."""
    head = ["rounds", "strategy", "fastest quarter", "slowest quarter"]
    head.append("never aggregated")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        path = out / r.cell.name / "participation.csv"
        if not path.is_file():
            continue
        with path.open(newline="") as f:
            rows = sorted(csv.DictReader(f), key=lambda x: float(x["compute_factor"]))
        q = len(rows) // 4

        def counts(group: list[dict[str, str]]) -> str:
            sampled = sum(int(x["rounds_sampled"]) for x in group)
            return f"{sampled} / {sum(int(x['rounds_aggregated']) for x in group)}"

        never = sum(1 for x in rows if int(x["rounds_aggregated"]) == 0)
        cells = [r.cell.labels["rounds"], r.cell.labels["strategy"]]
        cells += [counts(rows[:q]), counts(rows[-q:]), f"{never} of {len(rows)}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results: list[CellResult], path: Path) -> None:
    """Test accuracy against the virtual clock, every cell in one plot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    modes = sorted({r.cell.labels["rounds"] for r in results})
    colours = {m: f"C{k}" for k, m in enumerate(modes)}
    for r in results:
        rows = [x for x in r.rounds if not math.isnan(x.test_accuracy)]
        ax.plot(
            [x.virtual_clock for x in rows],
            [100 * x.test_accuracy for x in rows],
            color=colours[r.cell.labels["rounds"]],
            ls="-" if r.cell.labels["strategy"].startswith("FedAvg") else "--",
            label=f"{r.cell.labels['strategy']}, {r.cell.labels['rounds']}",
        )
    ax.set(
        xlabel="virtual time (s)",
        ylabel="central test accuracy (%)",
        title="log-normal devices: accuracy against virtual time",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _write_results(table: str, path: Path) -> None:
    text = path.read_text() if path.is_file() else f"{MARKERS[0]}\n{MARKERS[1]}\n"
    head, _, rest = text.partition(MARKERS[0])
    _, _, tail = rest.partition(MARKERS[1])
    path.write_text(f"{head}{MARKERS[0]}\n{table}{MARKERS[1]}{tail}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", type=Path, default=HERE / "grid.toml")
    p.add_argument("--out", type=Path, default=HERE / "runs")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--quick", action="store_true", help="3 rounds, a smoke test")
    args = p.parse_args()
    base, cells = load_grid(args.grid)
    if args.quick:
        base["num-rounds"] = 3
    if not args.report_only:
        run_sweep(base, cells, args.out)
    results = read_sweep(base, cells, args.out)
    summary = args.out if args.quick else HERE
    plot(results, summary / "accuracy_vs_time.png")
    table = results_table(results) + "\n" + participation_table(results, args.out)
    _write_results(table, summary / "RESULTS.md")
    print(table)


if __name__ == "__main__":
    main()
