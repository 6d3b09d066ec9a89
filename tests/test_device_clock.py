"""Time to accuracy on the virtual clock, by hand."""

from __future__ import annotations

import math

from fedtflite.devices import (
    TimeToAccuracy,
    format_duration,
    format_time_to_accuracy,
    time_to_accuracy,
)

NAN = math.nan


def test_first_crossing_of_each_target() -> None:
    rounds = [0, 1, 2, 3, 4, 5]
    clock = [0.0, 2.5, 5.0, 9.0, 12.0, 20.0]
    accuracy = [0.1, 0.55, NAN, 0.72, 0.69, 0.81]
    got = time_to_accuracy(rounds, clock, accuracy, targets=(0.8, 0.5, 0.7, 0.9))
    assert got == [
        TimeToAccuracy(0.5, 1, 2.5),
        TimeToAccuracy(0.7, 3, 9.0),  # not undone by the dip in round 4
        TimeToAccuracy(0.8, 5, 20.0),
    ]  # 0.9 was never reached


def test_formatting() -> None:
    assert format_duration(12.34) == "12.3 s"
    assert format_duration(270.0) == "4.5 min"
    assert format_duration(7560.0) == "2.1 h"
    assert format_duration(3 * 86400.0) == "3 d"
    line = format_time_to_accuracy(
        [TimeToAccuracy(0.7, 3, 9.0), TimeToAccuracy(0.85, 40, 600.0)]
    )
    assert line == (
        "time to accuracy (virtual): 70 % in 9 s (round 3), 85 % in 10 min (round 40)"
    )
    assert format_time_to_accuracy([]) == (
        "time to accuracy (virtual): no target reached"
    )
