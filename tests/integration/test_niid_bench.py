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
