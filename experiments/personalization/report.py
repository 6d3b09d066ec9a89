"""Personalization against label skew: the table of RESULTS.md.

For every finished cell of the sweep (``grid.toml``), the run's own
personalization (``personalize-epochs = 1``, on the workers after the last round)
and, with ``fedtflite personalize``, the same clients fine-tuning ``--epochs``
local epochs instead (written to ``<cell>/k<epochs>/``). Prints a Markdown table
and writes it to ``table.md`` beside this script.

Usage: ``python experiments/personalization/report.py runs/personalization
[--epochs 5]``
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fedtflite.cli import main as fedtflite
from fedtflite.orchestrator.sweep import load_grid
from fedtflite.personalization import CSV_FILE, read_personalization, summarize
from fedtflite.simulation import read_history

HERE = Path(__file__).resolve().parent


def _pct(v: float) -> str:
    return f"{100 * v:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="the sweep's --out directory")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    _, cells = load_grid(HERE / "grid.toml")
    lines = [
        "| alpha | central test acc. | clients | global: mean / median / p10 "
        f"| 1 epoch: mean / median / p10 | {args.epochs} epochs: mean / median / p10 "
        f"| gain of the mean (1 / {args.epochs} epochs) |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    for cell in cells:
        run_dir = args.runs / cell.name
        if not (run_dir / CSV_FILE).is_file():
            print(f"{cell.name}: no {CSV_FILE} yet, skipped")
            continue
        longer = run_dir / f"k{args.epochs}"
        argv = ["personalize", str(run_dir), "--epochs", str(args.epochs)]
        if fedtflite([*argv, "--out", str(longer)]) != 0:
            raise SystemExit(f"{cell.name}: fedtflite personalize failed")
        one = summarize(read_personalization(run_dir / CSV_FILE))
        many = summarize(read_personalization(longer / CSV_FILE))
        final = read_history(run_dir / "history.csv")[-1].test_accuracy
        lines.append(
            f"| {cell.labels['alpha']} | {_pct(final)} % | {one.clients} "
            f"| {_pct(one.mean)} / {_pct(one.median)} / {_pct(one.p10)} "
            f"| {_pct(one.mean_personal)} / {_pct(one.median_personal)} / "
            f"{_pct(one.p10_personal)} "
            f"| {_pct(many.mean_personal)} / {_pct(many.median_personal)} / "
            f"{_pct(many.p10_personal)} "
            f"| {100 * (one.mean_personal - one.mean):+.1f} / "
            f"{100 * (many.mean_personal - many.mean):+.1f} |"
        )
    table = "\n".join(lines) + "\n"
    (HERE / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
