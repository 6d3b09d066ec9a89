"""The NIID-Bench script's earlier-setting table points unrun rows at the exact runs."""

from __future__ import annotations

import runpy
from pathlib import Path
from typing import Any

from fedtflite.orchestrator.sweep import Cell, CellResult
from fedtflite.simulation.config import config_from_mapping
from fedtflite.simulation.history import RoundRecord

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "niid_bench" / "run.py"
RUN: dict[str, Any] = runpy.run_path(str(SCRIPT))


def _result(labels: dict[str, str], accuracies: list[float]) -> CellResult:
    rounds = tuple(
        RoundRecord(r, 1.0, a, *[0.0] * 3, *[0] * 5, 0.0, 0, 0)
        for r, a in enumerate(accuracies)
    )
    config = config_from_mapping({"num-rounds": 2})
    return CellResult(Cell("c", {}, labels), config, rounds, len(rounds) == 3)


def test_a_row_never_run_here_names_the_exact_seeds_that_ran_it() -> None:
    exact = [
        _result({"partition": "#C=1", "algorithm": "SCAFFOLD", "seed": s}, acc)
        for s, acc in (("0", [0.1, 0.1, 0.1]), ("1", [0.1, 0.2]), ("2", [0.1] * 3))
    ]
    never = {"partition": "#C=2", "algorithm": "FedAvg", "seed": "0"}
    exact.append(_result(never, [0.1]))
    elsewhere = RUN["ran_elsewhere"](exact)
    # seed 1 stopped after round 1 and #C=2 FedAvg never started: not counted
    assert elsewhere == {("#C=1", "SCAFFOLD"): "ran on the exact setting, seeds 0, 2"}

    here = [
        _result({"partition": "#C=1", "algorithm": "SCAFFOLD"}, []),
        _result({"partition": "#C=1", "algorithm": "FedAvg"}, [0.1, 0.3, 0.5]),
        _result({"partition": "#C=2", "algorithm": "FedAvg"}, []),
    ]
    rows = RUN["results_table"](here, {}, elsewhere).splitlines()[2:]
    pointer = "0/2 (not run here; ran on the exact setting, seeds 0, 2)"
    assert rows[0].startswith(f"| #C=1 | SCAFFOLD | {pointer} | — |")
    assert rows[1].startswith("| #C=1 | FedAvg | 2/2 | **50.0** |")
    assert rows[2].startswith("| #C=2 | FedAvg | 0/2 | — |")  # ran nowhere
