"""NIID-Bench's Fashion-MNIST grid on fedtflite: partitions x algorithms.

Runs every cell of ``grid.toml`` (5 partitions x FedAvg, FedProx, SCAFFOLD) with
:func:`fedtflite.orchestrator.sweep.run_sweep`, resumably: a finished cell is
never rerun and an unfinished one goes on after its checkpoint's round, so the grid
can be stopped and restarted, split across sessions (``--only``,
``--partitions``) or machines, and run on a Ray cluster (``--set
ray-address=auto``). Then it writes the results table of ``RESULTS.md`` (between
its ``results`` markers; the text around them is kept), next to the numbers
NIID-Bench and Flower's ``baselines/niid_bench`` report (``reference.toml``).

Examples::

    python experiments/niid_bench/run.py                      # the whole grid
    python experiments/niid_bench/run.py --only fedavg,fedprox --set client-cpus=2
    python experiments/niid_bench/run.py --report-only        # just the table
    python experiments/niid_bench/run.py --quick --out /tmp/q # 1 round, 1 epoch

``--grid exact.toml`` runs the exact setting instead (NIID-Bench's own partitions,
PyTorch's initial weights, three seeds per cell; ``--seeds s0,s1`` picks seeds) into
``exact_runs/`` and writes its own table (mean ± std over the seeds) into the
``exact`` block of ``RESULTS.md``, beside the single-seed numbers of ``runs/``.
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import sys
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fedtflite.data import CLASS_NAMES, FashionMnist, load_fashion_mnist
from fedtflite.data.partition_file import cached_partition
from fedtflite.errors import FedTfliteError
from fedtflite.orchestrator.sweep import (
    Cell,
    CellResult,
    load_grid,
    plot_sweep,
    read_sweep,
    run_sweep,
)
from fedtflite.runtime import ClientModel
from fedtflite.simulation import parse_overrides
from fedtflite.simulation.prepare import resolve_model

HERE = Path(__file__).resolve().parent
QUICK = {"num-rounds": 1, "local-epochs": 1}
TAIL = 10
"""Rounds the results table averages over (mean ± sample std)."""


def _pct(value: float) -> str:
    return "—" if math.isnan(value) else f"{100 * value:.1f}"


def results_table(
    results: list[CellResult],
    reference: dict[str, Any],
    elsewhere: Mapping[tuple[str, str], str] | None = None,
) -> str:
    """Markdown, one row per cell: our final and best accuracy, the published ones.

    ``elsewhere`` maps ``(partition, algorithm)`` to where a row ran instead
    (e.g. the exact setting's seeds); a cell that has not started here says so.
    """
    elsewhere = elsewhere or {}
    lines = [
        f"| partition | algorithm | rounds run | final (%) | last {TAIL} rounds (%) "
        "| best (%) | Flower baseline, best (%) | paper (%) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        p, a = r.cell.labels["partition"], r.cell.labels["algorithm"]
        ran = max(len(r.rounds) - 1, 0)
        final = f"**{_pct(r.final_accuracy)}**" if r.complete else "—"
        mean, std = r.last_rounds_accuracy(TAIL)
        tail = "—" if math.isnan(mean) else f"{_pct(mean)} ± {100 * std:.2f}"
        ref = reference.get(p, {}).get(a, {})
        rounds = f"{ran}/{r.config.num_rounds}"
        if ran == 0 and (p, a) in elsewhere:
            rounds += f" (not run here; {elsewhere[p, a]})"
        lines.append(
            f"| {p} | {a} | {rounds} | {final} | {tail} "
            f"| {_pct(r.best_accuracy)} | {ref.get('flower', '—')} "
            f"| {ref.get('paper', 'not retrieved')} |"
        )
    return "\n".join(lines) + "\n"


def _by_row(results: list[CellResult]) -> dict[tuple[str, str], list[CellResult]]:
    """The cells of each table row, ``(partition, algorithm)``, in grid order."""
    rows: dict[tuple[str, str], list[CellResult]] = {}
    for r in results:
        key = (r.cell.labels["partition"], r.cell.labels["algorithm"])
        rows.setdefault(key, []).append(r)
    return rows


def _seeds(results: list[CellResult]) -> str:
    return ", ".join(r.cell.labels.get("seed", "?") for r in results)


def ran_elsewhere(results: list[CellResult]) -> dict[tuple[str, str], str]:
    """``(partition, algorithm)`` -> the seeds of the exact setting complete for it."""
    return {
        key: f"ran on the exact setting, seed{'s' if len(done) > 1 else ''} "
        + _seeds(done)
        for key, done in _by_row([r for r in results if r.complete]).items()
    }


def _mean_std(values: list[float]) -> str:
    """``mean ± sample std`` in percent; the mean alone for one value."""
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "—"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return _pct(mean)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return f"{_pct(mean)} ± {100 * std:.2f}"


def _flower(text: str) -> tuple[float, float] | None:
    """Flower's ``"mean ± std"`` in percent, as fractions."""
    try:
        mean, std = (float(v) / 100 for v in text.split("±"))
    except ValueError:
        return None
    return mean, std


def exact_table(
    results: list[CellResult],
    reference: dict[str, Any],
    single_seed: list[CellResult],
) -> str:
    """Markdown, one row per partition and algorithm, over the seeds run.

    Columns: the seeds whose 50 rounds are complete, mean ± std (across seeds) of
    the best round and of each seed's last-10-rounds mean, Flower's baseline
    (best round, mean ± std), whether our best-round mean lies within Flower's
    mean ± 2 std, and the single-seed best round of ``grid.toml``'s setting.
    """
    lines = [
        f"| partition | algorithm | seeds done | best round (%) | last {TAIL} rounds "
        "(%) | Flower baseline, best (%) | within Flower ± 2 std | flwr-datasets "
        "split, Glorot init, seed 0: best (%) |",
        "|---|---|---|---:|---:|---:|:---:|---:|",
    ]
    complete = [r for r in single_seed if r.complete]
    old = {key: done[-1] for key, done in _by_row(complete).items()}
    for (p, a), group in _by_row(results).items():
        done = [r for r in group if r.complete]
        if not done:
            continue
        best = [r.best_accuracy for r in done]
        tail = [r.last_rounds_accuracy(TAIL)[0] for r in done]
        flower_text = reference.get(p, {}).get(a, {}).get("flower", "—")
        flower = _flower(flower_text)
        within = "—"
        if flower is not None:
            mean = sum(best) / len(best)
            within = "yes" if abs(mean - flower[0]) <= 2 * flower[1] else "**no**"
        seeds = _seeds(done)
        previous = old.get((p, a))
        lines.append(
            f"| {p} | {a} | {seeds} ({len(done)}/{len(group)}) | {_mean_std(best)} "
            f"| {_mean_std(tail)} | {flower_text} | {within} "
            f"| {_pct(previous.best_accuracy) if previous else '—'} |"
        )
    return "\n".join(lines) + "\n"


def planned(cells: list[Cell], plan: list[str]) -> list[Cell]:
    """The cells whose names match one of ``plan``'s patterns (all if empty)."""
    if not plan:
        return cells
    return [c for c in cells if any(fnmatch.fnmatchcase(c.name, p) for p in plan)]


def remaining(results: list[CellResult], plan: list[str] | None = None) -> str:
    """Markdown: the planned cells not complete yet (name and rounds run)."""
    names = {c.name for c in planned([r.cell for r in results], plan or [])}
    mine = [r for r in results if r.cell.name in names]
    left = [
        f"`{r.cell.name}` ({max(len(r.rounds) - 1, 0)}/{r.config.num_rounds})"
        for r in mine
        if not r.complete
    ]
    done = len(mine) - len(left)
    head = f"{done} of {len(mine)} planned cells complete."
    return (f"{head} Not complete yet: " + ", ".join(left) if left else head) + "\n"


def per_class_table(
    results: list[CellResult], out_dir: Path, data: FashionMnist
) -> str:
    """Markdown: each complete cell's final test accuracy per class (%)."""
    test = data.test
    seeded = any("seed" in r.cell.labels for r in results)
    head = "| partition | algorithm | " + ("seed | " if seeded else "")
    lines = [
        head + "all | " + " | ".join(CLASS_NAMES) + " |",
        "|---|---|" + ("---:|" if seeded else "") + "---:|" * (len(CLASS_NAMES) + 1),
    ]
    for r in results:
        if not r.complete:
            continue
        model = ClientModel(resolve_model(r.config))
        names = [p.name for p in model.contract.parameters]
        with np.load(out_dir / r.cell.name / "final_weights.npz") as f:
            model.restore([f[n] for n in names])
        predicted = model.predict(test.images).argmax(axis=1)
        per_class = [
            np.mean(predicted[test.labels == c] == c) for c in range(len(CLASS_NAMES))
        ]
        cells = " | ".join(f"{100 * a:.0f}" for a in per_class)
        overall = np.mean(predicted == test.labels)
        p, a = r.cell.labels["partition"], r.cell.labels["algorithm"]
        seed = f" {r.cell.labels['seed']} |" if seeded else ""
        lines.append(f"| {p} | {a} |{seed} {100 * overall:.1f} | {cells} |")
    return "\n".join(lines) + "\n"


def class_sets(results: list[CellResult], data: FashionMnist) -> str:
    """Markdown: the classes each client holds, for each #C=k partition."""
    labels = data.train.labels
    lines = []
    seen = set()
    for r in results:
        spec = r.config.partition_spec()
        p = r.cell.labels["partition"]
        if "seed" in r.cell.labels:
            p = f"{p}, seed {r.cell.labels['seed']}"
        if spec.kind not in ("pathological", "niid-bench-label") or p in seen:
            continue
        seen.add(p)
        parts = cached_partition(labels, spec)
        sets = [
            "{" + ", ".join(CLASS_NAMES[c] for c in np.unique(labels[idx])) + "}"
            for idx in parts
        ]
        lines.append(
            f"- {p}: " + "; ".join(f"client {i} {s}" for i, s in enumerate(sets))
        )
    return "\n".join(lines) + "\n"


def write_block(path: Path, name: str, content: str) -> None:
    """Replace the text between ``path``'s ``<!-- name:begin/end -->`` markers.

    A missing file is created; a file without the markers gets them at its end.
    """
    begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
    block = f"{begin}\n{content}{end}"
    text = path.read_text() if path.is_file() else "# NIID-Bench on fedtflite\n"
    if begin in text and end in text:
        before, rest = text.split(begin, 1)
        path.write_text(before + block + rest.split(end, 1)[1])
    else:
        path.write_text(f"{text.rstrip()}\n\n{block}\n")


def write_results(path: Path, table: str, note: str) -> None:
    """Replace the text between the results markers of ``path`` (or create it)."""
    write_block(path, "results", f"{note}\n\n{table}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grid", type=Path, default=HERE / "grid.toml")
    p.add_argument("--reference", type=Path, default=HERE / "reference.toml")
    p.add_argument(
        "--out", type=Path, default=None, help="default: runs/ (exact: exact_runs/)"
    )
    p.add_argument("--results", type=Path, default=None, help="default: RESULTS.md")
    p.add_argument("--only", default="", help="algorithms, e.g. fedavg,fedprox")
    p.add_argument("--partitions", default="", help="partitions, e.g. iid,dir05")
    p.add_argument("--seeds", default="", help="seed options, e.g. s0,s1 (exact)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--jobs", type=int, default=1, help="cells at once")
    p.add_argument("--quick", action="store_true", help="1 round of 1 epoch")
    p.add_argument("--report-only", action="store_true", help="run nothing")
    args = p.parse_args(argv)

    base, cells = load_grid(args.grid)
    # An optional [plan] table names the cells (fnmatch patterns) a plain run
    # runs and the report counts; the other cells of the grid run when asked.
    plan = list(tomllib.loads(args.grid.read_text()).get("plan", {}).get("cells", []))
    exact = any("seed" in c.labels for c in cells)
    out = args.out or HERE / ("exact_runs" if exact else "runs")
    if args.quick:
        base.update(QUICK)
    base.update(parse_overrides(args.set))
    grid_cells = cells
    if not (args.partitions or args.only or args.seeds):
        cells = planned(cells, plan)
    for flag, pos in ((args.partitions, 0), (args.only, 1), (args.seeds, 2)):
        if flag:
            keep_list = [[k] for k in flag.split(",")]
            cells = [c for c in cells if c.name.split("-")[pos : pos + 1] in keep_list]
    reference = tomllib.loads(args.reference.read_text())
    results_path = args.results or (
        out / "RESULTS.md" if args.quick else HERE / "RESULTS.md"
    )
    try:
        if not args.report_only:
            run_sweep(base, cells, out, jobs=args.jobs)
        # The table always shows the whole grid (a subset run fills in its cells).
        results = read_sweep(base, grid_cells, out)
    except FedTfliteError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    settings = ", ".join(f"{k} = {v}" for k, v in base.items())
    data = load_fashion_mnist(None)
    if exact:
        flwr_base, flwr_cells = load_grid(HERE / "grid.toml")
        single_seed = read_sweep(flwr_base, flwr_cells, HERE / "runs")
        note = (
            "Centralized test accuracy (%) on the 10k test images, mean ± sample "
            "standard deviation across the seeds whose 50 rounds are complete: of "
            f"the best round (what Flower's baseline reports) and of the last {TAIL} "
            "rounds' mean. Flower's baseline is mean ± std of its best rounds. "
            f"Settings: {settings}."
        )
        table = exact_table(results, reference, single_seed)
        write_block(results_path, "exact", f"{note}\n\n{table}")
        write_block(results_path, "exact-remaining", remaining(results, plan))
        write_block(results_path, "exact-class-sets", class_sets(results, data))
        write_block(
            results_path, "exact-per-class", per_class_table(results, out, data)
        )
        plot = results_path.with_name("accuracy_exact.png")
    else:
        note = (
            "Centralized test accuracy (%) on the 10k test images: after the last "
            "round (final, **bold** when the cell ran all its rounds), the mean ± "
            f"standard deviation of the last {TAIL} rounds, and the best of any "
            "round (what Flower's baseline reports). "
            f"Settings: {settings}."
        )
        # Rows this setting never ran may have run on the exact setting, whose
        # cells live beside this grid's (exact_runs/ next to runs/).
        exact_base, exact_cells = load_grid(HERE / "exact.toml")
        elsewhere = ran_elsewhere(
            read_sweep(exact_base, exact_cells, out.parent / "exact_runs")
        )
        table = results_table(results, reference, elsewhere)
        write_results(results_path, table, note)
        write_block(results_path, "per-class", per_class_table(results, out, data))
        write_block(results_path, "class-sets", class_sets(results, data))
        plot = results_path.with_name("accuracy.png")
    plot_sweep(
        results,
        plot,
        panel_axis="partition",
        title="NIID-Bench Fashion-MNIST on fedtflite"
        + (" (NIID-Bench's partitions, PyTorch init)" if exact else ""),
    )
    print(f"wrote {results_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
