"""Time to accuracy on the virtual clock.

The virtual clock starts at 0 and advances by each round's planned duration
(:func:`fedtflite.devices.plan_round`); ``history.csv`` holds it per round.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "ACCURACY_TARGETS",
    "TimeToAccuracy",
    "format_duration",
    "format_time_to_accuracy",
    "time_to_accuracy",
]

ACCURACY_TARGETS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9)
"""Test accuracies whose first crossing a run reports."""


@dataclass(frozen=True)
class TimeToAccuracy:
    """When a run first reached an accuracy.

    Attributes
    ----------
    target : float
        The accuracy, a fraction.
    round : int
        The first round whose test accuracy is at least ``target``.
    virtual_seconds : float
        The virtual clock at the end of that round.
    """

    target: float
    round: int
    virtual_seconds: float


def time_to_accuracy(
    rounds: Sequence[int],
    clock: Sequence[float],
    accuracy: Sequence[float],
    targets: Sequence[float] = ACCURACY_TARGETS,
) -> list[TimeToAccuracy]:
    """The first crossing of each target reached (NaN accuracies are skipped).

    Parameters
    ----------
    rounds, clock, accuracy : sequences of equal length
        Per round: its number, the virtual clock after it, its test accuracy.
    targets : sequence of float
        Accuracies to look for; those never reached are left out.
    """
    out = []
    for target in sorted(targets):
        for r, t, a in zip(rounds, clock, accuracy, strict=True):
            if not math.isnan(a) and a >= target:
                out.append(TimeToAccuracy(target, int(r), float(t)))
                break
    return out


def format_duration(seconds: float) -> str:
    """``"12.3 s"``, ``"4.50 min"``, ``"2.10 h"`` or ``"3.2 d"``."""
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{seconds / 60:.3g} min"
    if seconds < 86400:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86400:.3g} d"


def format_time_to_accuracy(crossings: Sequence[TimeToAccuracy]) -> str:
    """One line: ``time to accuracy (virtual): 70 % in 12.3 s (round 5), ...``."""
    if not crossings:
        return "time to accuracy (virtual): no target reached"
    parts = [
        f"{c.target * 100:g} % in {format_duration(c.virtual_seconds)} "
        f"(round {c.round})"
        for c in crossings
    ]
    return "time to accuracy (virtual): " + ", ".join(parts)
