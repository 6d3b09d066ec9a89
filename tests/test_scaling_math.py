"""The arithmetic of ``benchmarks.scaling --per-message``, by hand."""

from __future__ import annotations

import math

import pytest

from benchmarks.scaling import binding_workers, fit_line


def test_fit_line_recovers_a_line_and_averages_noise() -> None:
    assert fit_line([2.0, 4.0, 6.0], [1.0, 2.0, 3.0]) == pytest.approx((0.0, 0.5))
    # (0, 1), (2, 2), (2, 4): mean x 4/3, mean y 7/3; deviations x -4/3, 2/3,
    # 2/3 and y -4/3, -1/3, 5/3; slope (16/9 - 2/9 + 10/9) / (16/9 + 4/9 + 4/9)
    # = 1; intercept 7/3 - 4/3 = 1 (x = 2 sits at the mean of 2 and 4)
    assert fit_line([0.0, 2.0, 2.0], [1.0, 2.0, 4.0]) == pytest.approx((1.0, 1.0))
    with pytest.raises(ValueError, match="two distinct"):
        fit_line([3.0, 3.0], [1.0, 2.0])


def test_binding_workers_solves_driver_cpu_equals_floor_per_worker() -> None:
    # no base: w * w = floor / per_message
    assert binding_workers(0.0, 1.0, 4.0) == pytest.approx(2.0)
    # 0.5 w^2 + 1 w - 12 = 0: w = (-1 + sqrt(1 + 24)) / 1 = 4
    assert binding_workers(1.0, 0.5, 12.0) == pytest.approx(4.0)
    w = binding_workers(0.015, 0.0028, 0.453)
    assert 0.015 + 0.0028 * w == pytest.approx(0.453 / w)
    # messages for free: the base alone binds at floor / base; nothing: never
    assert binding_workers(0.5, 0.0, 4.0) == pytest.approx(8.0)
    assert binding_workers(0.0, 0.0, 4.0) == math.inf
