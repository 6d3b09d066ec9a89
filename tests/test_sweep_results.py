"""A sweep cell's summary numbers, computed by hand."""

from __future__ import annotations

import math

import pytest

from fedtflite.orchestrator.sweep import Cell, CellResult
from fedtflite.simulation.config import config_from_mapping
from fedtflite.simulation.history import RoundRecord


def _result(accuracies: list[float], num_rounds: int) -> CellResult:
    rounds = tuple(
        RoundRecord(r, 1.0, a, *[0.0] * 3, *[0] * 5, 0.0, 0, 0)
        for r, a in enumerate(accuracies)
    )
    config = config_from_mapping({"num-rounds": num_rounds})
    return CellResult(Cell("c", {}), config, rounds, len(rounds) == num_rounds + 1)


def test_final_best_and_last_rounds_of_a_complete_cell() -> None:
    # round 0 (the initial model, 0.9 here) never counts as a trained round
    result = _result([0.9, 0.5, 0.8, 0.6], num_rounds=3)

    assert result.final_accuracy == 0.6
    assert result.best_accuracy == 0.8
    mean, std = result.last_rounds_accuracy(2)  # rounds 2 and 3: 0.8, 0.6
    assert mean == pytest.approx(0.7)
    assert std == pytest.approx(math.sqrt(2 * 0.1**2 / 1))  # sample std, n - 1
    mean, std = result.last_rounds_accuracy(3)  # 0.5, 0.8, 0.6: squares sum .046667
    assert (mean, std) == pytest.approx((19 / 30, math.sqrt(0.0466667 / 2)), rel=1e-5)


def test_last_rounds_of_an_unfinished_or_short_cell_are_nan() -> None:
    unfinished = _result([0.1, 0.5, 0.8], num_rounds=3)
    assert all(math.isnan(v) for v in unfinished.last_rounds_accuracy(2))
    short = _result([0.1, 0.5, 0.8], num_rounds=2)
    assert all(math.isnan(v) for v in short.last_rounds_accuracy(3))
    with pytest.raises(ValueError, match="n = 1"):
        short.last_rounds_accuracy(1)
