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


def test_the_per_message_table_fits_each_size_and_says_where_it_binds() -> None:
    from benchmarks.scaling import per_message_table

    rows = [
        {
            "clients_per_round": 1000,
            "clients_per_message": c,
            "messages": m,
            "round_s": 0.3,
            "driver_cpu_s": cpu,
            "worker_cpu_s": 0.28,
            "floor_one_process_s": 0.4,
        }
        for c, m, cpu in ((0, 2, 0.02), (100, 10, 0.06))
    ]
    # slope (0.06 - 0.02) / 8 = 5 ms a message, base 0.01; binds where
    # 0.01 + 0.005 w = 0.4 / w: 0.005 w^2 + 0.01 w - 0.4 = 0, w = (-0.01 + 0.09) / 0.01
    assert per_message_table(rows).splitlines()[-1] == "| 1000 | 0.0100 | 5.00 | 8.0 |"
