"""The NIID-Bench research script in --quick mode: one round of one epoch, real CNN."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "experiments" / "niid_bench" / "run.py"


def test_quick_grid_writes_the_results_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = ["--quick", "--only", "fedavg,scaffold", "--partitions", "c2", "--out"]
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args, str(tmp_path)])

    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(SCRIPT), run_name="__main__")

    assert done.value.code == 0
    text = (tmp_path / "RESULTS.md").read_text()
    results = text.split("<!-- results:end -->")[0]
    rows = [line for line in results.splitlines() if line.startswith("| #C=2 |")]
    assert len(rows) == 3
    assert rows[0].startswith("| #C=2 | FedAvg | 1/1 | **")
    assert rows[0].split(" | ")[4] == "—"  # no last-10-rounds spread after 1 round
    assert "| 78.10 ± 2.51 |" in rows[0]  # Flower's FedAvg #C=2, next to ours
    assert rows[1].startswith("| #C=2 | FedProx | 0/1 | — |")  # not in this subset
    assert rows[2].startswith("| #C=2 | SCAFFOLD | 1/1 | **")
    table = [line for line in results.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 15  # header, rule and the whole grid
    per_class = text.split("<!-- per-class:begin -->")[1].split("<!-- per-class:end")[0]
    rows = [line for line in per_class.splitlines() if line.startswith("| #C=2 |")]
    assert [r.split(" | ")[1] for r in rows] == ["FedAvg", "SCAFFOLD"]  # run ones
    assert len(rows[0].split(" | ")) == 2 + 1 + 10  # partition, algorithm, all, 10
    sets = text.split("<!-- class-sets:begin -->")[1].split("<!-- class-sets:end")[0]
    c2 = next(line for line in sets.splitlines() if line.startswith("- #C=2:"))
    assert c2.count("client ") == 10 and c2.count(",") == 10  # 2 classes each
    assert (tmp_path / "accuracy.png").stat().st_size > 0
    assert (tmp_path / "c2-scaffold" / "client_state").is_dir()  # c_i on "device"


def test_quick_exact_grid_reports_seeds_as_mean_and_std(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    grid = SCRIPT.parent / "exact.toml"
    args = ["--grid", str(grid), "--quick", "--partitions", "c2", "--only", "fedavg"]
    args += ["--seeds", "s0,s1", "--out", str(tmp_path)]
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), *args])

    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(SCRIPT), run_name="__main__")

    assert done.value.code == 0
    text = (tmp_path / "RESULTS.md").read_text()
    exact = text.split("<!-- exact:begin -->")[1].split("<!-- exact:end")[0]
    row = next(
        line for line in exact.splitlines() if line.startswith("| #C=2 | FedAvg")
    )
    cols = row.split(" | ")
    assert cols[2] == "0, 1 (2/3)"  # the seeds run, of the three planned
    assert " ± " in cols[3]  # two seeds: mean ± std of the best round
    assert "| 78.10 ± 2.51 |" in row  # Flower's FedAvg #C=2, next to ours
    left = text.split("<!-- exact-remaining:begin -->\n")[1]
    assert left.startswith("2 of 30 planned cells complete.")
    assert "`c2-fedavg-s2` (0/1)" in left
    sets = text.split("<!-- exact-class-sets:begin -->")[1].split(
        "<!-- exact-class-sets:end"
    )[0]
    assert "- #C=2, seed 0: " in sets and "- #C=2, seed 1: " in sets
    per_class = text.split("<!-- exact-per-class:begin -->")[1].split("-->")[0]
    rows = [line for line in per_class.splitlines() if line.startswith("| #C=2 |")]
    assert [r.split(" | ")[2] for r in rows] == ["0", "1"]  # a row per seed run
    assert (
        len(rows[0].split(" | ")) == 3 + 1 + 10
    )  # partition, algorithm, seed, all, 10
    assert (tmp_path / "accuracy_exact.png").stat().st_size > 0
