"""Client availability: who is online when a round starts, and for how long.

Only clients online at a round's start can be sampled; a client that goes
offline before its update would arrive is lost for that round. Every model is a
pure function of the run's seed, the round and the virtual time, so a resumed
run needs nothing but the virtual clock to continue exactly.

Models (the ``availability`` config key, parsed by :func:`parse_availability`):

``"always"`` (default)
    Every client, always.
``"bernoulli:P"``
    Each client is online for a round with probability ``P``, independently
    per round and client (``[seed, round]``-seeded), and stays online through
    the round.
``"diurnal"`` or ``"diurnal:hours=8,center=0,spread=4,period=86400"``
    Each client is online in one window a day, as phones train while idle and
    charging, mostly at night (Bonawitz et al., "Towards Federated Learning at
    Scale", MLSys 2019, report participation peaking at night local time):
    window length ``hours`` (default 8), its centre at hour ``center`` of the
    virtual day (0 = virtual time 0) plus a per-client normal offset of
    standard deviation ``spread`` hours (time zones, habits; default 4),
    ``period`` seconds a day (default 86400). Seeded, fixed for the run.
a file path
    FedScale's ``client_behave_trace`` (``{id: {"active": [...], "inactive":
    [...], "finish_time": s}}``): a client is online at virtual time ``t``
    when ``active[k] <= t mod finish_time <= inactive[k]`` for some ``k``, as
    FedScale's ``ClientMetadata.is_active`` evaluates it; client ``c`` follows
    trace entry ``c mod entries`` (in id order), as FedScale assigns traces.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from fedtflite.devices.tracefiles import load_behave_trace
from fedtflite.errors import ConfigError, invalid_value

__all__ = [
    "AlwaysOnline",
    "Availability",
    "AvailabilitySpec",
    "BernoulliOnline",
    "IntervalSchedule",
    "diurnal_schedule",
    "make_availability",
    "parse_availability",
    "trace_schedule",
]

_BERNOULLI_STREAM = (0xA7A11, 1)
_DIURNAL_STREAM = (0xA7A11, 2)
"""Appended to ``[seed, round]`` / ``[seed]``: streams no other part of a run uses."""

_DIURNAL_DEFAULTS = {"hours": 8.0, "center": 0.0, "spread": 4.0, "period": 86400.0}


class Availability(Protocol):
    """Which clients are online, and until when."""

    def online(self, server_round: int, t: float) -> np.ndarray:
        """Bool ``[num_clients]``: online at virtual time ``t`` in ``server_round``."""

    def online_for(
        self, client_ids: np.ndarray, server_round: int, t: float
    ) -> np.ndarray:
        """Seconds from ``t`` until each client goes offline (``inf``: not before
        the round ends). Only meaningful for clients online at ``t``."""


@dataclass(frozen=True)
class AlwaysOnline:
    """Every client, always (``availability = "always"``)."""

    num_clients: int

    def online(self, server_round: int, t: float) -> np.ndarray:
        return np.ones(self.num_clients, dtype=bool)

    def online_for(
        self, client_ids: np.ndarray, server_round: int, t: float
    ) -> np.ndarray:
        return np.full(len(client_ids), np.inf)


@dataclass(frozen=True)
class BernoulliOnline:
    """Each client online for a round with probability ``p`` (see the module).

    Attributes
    ----------
    num_clients : int
    p : float
        Probability in ``[0, 1]``.
    seed : int
    """

    num_clients: int
    p: float
    seed: int

    def online(self, server_round: int, t: float) -> np.ndarray:
        rng = np.random.default_rng([self.seed, server_round, *_BERNOULLI_STREAM])
        result: np.ndarray = rng.random(self.num_clients) < self.p
        return result

    def online_for(
        self, client_ids: np.ndarray, server_round: int, t: float
    ) -> np.ndarray:
        return np.full(len(client_ids), np.inf)


@dataclass(frozen=True, eq=False)
class IntervalSchedule:
    """Per-client online intervals repeating with a per-client period.

    Built by :func:`diurnal_schedule` or :func:`trace_schedule`. Each client's
    intervals are sorted and merged (overlapping or touching ones become one),
    closed, within ``[0, period]``. Evaluation is vectorised over clients: the
    intervals of all clients sit in one sorted array keyed by
    ``client * stride + time``.

    Attributes
    ----------
    period : np.ndarray
        float64 ``[num_clients]``.
    starts, ends : np.ndarray
        float64, every client's merged intervals one after another.
    offsets : np.ndarray
        int64 ``[num_clients + 1]``: client ``c``'s intervals are
        ``starts[offsets[c]:offsets[c + 1]]``.
    keys : np.ndarray
        ``owner * stride + starts``, sorted: the search space.
    stride : float
        More than any period.
    """

    period: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    offsets: np.ndarray
    keys: np.ndarray
    stride: float

    @classmethod
    def build(
        cls,
        period: np.ndarray,
        intervals: list[tuple[np.ndarray, np.ndarray]],
    ) -> IntervalSchedule:
        """From each client's ``(starts, ends)`` (any order, may overlap)."""
        starts: list[float] = []
        ends: list[float] = []
        offsets = [0]
        for c, (a, b) in enumerate(intervals):
            merged = _merge(np.clip(a, 0.0, period[c]), np.clip(b, 0.0, period[c]))
            starts.extend(s for s, _ in merged)
            ends.extend(e for _, e in merged)
            offsets.append(len(starts))
        period = np.asarray(period, dtype=np.float64)
        starts_a = np.asarray(starts, dtype=np.float64)
        offsets_a = np.asarray(offsets, dtype=np.int64)
        stride = float(period.max()) + 1.0 if len(period) else 1.0
        owner = np.repeat(np.arange(len(period)), np.diff(offsets_a))
        return cls(
            period,
            starts_a,
            np.asarray(ends, dtype=np.float64),
            offsets_a,
            owner * stride + starts_a,
            stride,
        )

    @property
    def num_clients(self) -> int:
        """Clients described."""
        return len(self.period)

    def _interval_at(self, ids: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
        """For clients ``ids`` at time ``t``: the index of the interval holding
        ``t mod period`` (-1: none) and ``t mod period``."""
        norm = np.mod(t, self.period[ids])
        lo, hi = self.offsets[ids], self.offsets[ids + 1]
        # one sorted key space: client c's interval starts sit at c * stride + s
        k = np.searchsorted(self.keys, ids * self.stride + norm, side="right") - 1
        inside = (k >= lo) & (k < hi)
        k = np.where(inside, k, 0)
        hit = inside & (norm <= self.ends[k] if len(self.ends) else False)
        return np.where(hit, k, -1), norm

    def online(self, server_round: int, t: float) -> np.ndarray:
        k, _ = self._interval_at(np.arange(self.num_clients), t)
        result: np.ndarray = k >= 0
        return result

    def online_for(
        self, client_ids: np.ndarray, server_round: int, t: float
    ) -> np.ndarray:
        """Seconds until each client goes offline (0 when offline now). An
        interval that reaches the period's end continues into the next
        period's first interval when that one starts at 0 (``inf`` when that is
        the same interval: online all the time)."""
        ids = np.asarray(client_ids, dtype=np.int64)
        k, norm = self._interval_at(ids, t)
        if not len(self.ends):
            return np.zeros(len(ids))
        inside = k >= 0
        k = np.where(inside, k, 0)
        period = self.period[ids]
        lo, hi = self.offsets[ids], self.offsets[ids + 1]
        first = np.minimum(lo, len(self.ends) - 1)
        end = self.ends[k]
        wraps = (end >= period) & (self.starts[first] <= 0.0) & (hi > lo)
        remaining = np.where(
            wraps,
            np.where(hi - lo == 1, np.inf, (period - norm) + self.ends[first]),
            end - norm,
        )
        result: np.ndarray = np.where(inside, remaining, 0.0)
        return result


def _merge(starts: np.ndarray, ends: np.ndarray) -> list[tuple[float, float]]:
    order = np.argsort(starts, kind="stable")
    merged: list[tuple[float, float]] = []
    for s, e in zip(starts[order].tolist(), ends[order].tolist(), strict=True):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], e))
        else:
            merged.append((s, e))
    return merged


def diurnal_schedule(
    num_clients: int,
    seed: int,
    *,
    hours: float = 8.0,
    center: float = 0.0,
    spread: float = 4.0,
    period: float = 86400.0,
) -> IntervalSchedule:
    """One online window a day per client (see the module docstring).

    Client ``c``'s window is centred at ``(center + spread * z_c) * 3600``
    seconds of the day, ``z_c`` standard normal from ``seed`` (client ``c``'s
    draw does not depend on ``num_clients``), and lasts ``hours``; a window
    crossing the day's end wraps to its start.
    """
    rng = np.random.default_rng([seed, *_DIURNAL_STREAM])
    z = rng.standard_normal(num_clients)
    length = min(hours * 3600.0, period)
    mid = np.mod((center + spread * z) * 3600.0, period)
    start = np.mod(mid - length / 2, period)
    intervals = []
    for s in start.tolist():
        e = s + length
        if e <= period:
            intervals.append((np.array([s]), np.array([e])))
        else:  # wraps past the end of the day
            intervals.append((np.array([s, 0.0]), np.array([period, e - period])))
    return IntervalSchedule.build(np.full(num_clients, float(period)), intervals)


def trace_schedule(path: str | Path, num_clients: int) -> IntervalSchedule:
    """FedScale's ``client_behave_trace`` for ``num_clients`` clients (cyclic).

    Raises
    ------
    DeviceFileError
        A file that is not such a trace (or would run code).
    """
    trace = load_behave_trace(path)
    entries = np.arange(num_clients) % len(trace.finish_time)
    return IntervalSchedule.build(
        trace.finish_time[entries],
        [(trace.active[e], trace.inactive[e]) for e in entries.tolist()],
    )


@dataclass(frozen=True)
class AvailabilitySpec:
    """A parsed ``availability`` value.

    Attributes
    ----------
    kind : str
        ``always``, ``bernoulli``, ``diurnal`` or ``file``.
    p : float
        ``bernoulli``'s probability.
    diurnal : tuple of (str, float)
        ``diurnal``'s parameters (``hours``, ``center``, ``spread``, ``period``).
    path : str
        ``file``'s path.
    """

    kind: str
    p: float = 1.0
    diurnal: tuple[tuple[str, float], ...] = ()
    path: str = ""


_EXPECTED = (
    "always, bernoulli:P (0 < P <= 1), diurnal, "
    "diurnal:hours=H,center=H,spread=H,period=S, or the path of a FedScale "
    "client_behave_trace file"
)
"""What an ``availability`` value may be (the tail of its error message)."""


def parse_availability(value: str) -> AvailabilitySpec:
    """Parse the ``availability`` config value (see the module docstring).

    Raises
    ------
    ConfigError
        Not a known model, a bad parameter, or no such file.
    """
    text = value.strip()

    def bad(expected: str) -> ConfigError:
        return ConfigError(invalid_value("availability", value, expected))

    if text == "always":
        return AvailabilitySpec("always")
    if text.startswith("bernoulli:"):
        try:
            p = float(text[len("bernoulli:") :])
        except ValueError:
            raise bad(_EXPECTED) from None
        if not 0 < p <= 1:
            raise bad(f"a probability 0 < P <= 1, not {p:g}")
        return AvailabilitySpec("bernoulli", p=p)
    if text == "diurnal" or text.startswith("diurnal:"):
        params = dict(_DIURNAL_DEFAULTS)
        body = text[len("diurnal:") :] if ":" in text else ""
        for item in filter(None, (s.strip() for s in body.split(","))):
            name, _, raw = item.partition("=")
            name = name.strip()
            if name not in _DIURNAL_DEFAULTS:
                raise bad(
                    f"diurnal parameters among {', '.join(_DIURNAL_DEFAULTS)} "
                    f"({name!r} is unknown)"
                )
            try:
                params[name] = float(raw)
            except ValueError:
                raise bad(f"a number as diurnal {name}, not {raw.strip()!r}") from None
        if not (0 < params["period"] < math.inf):
            raise bad("a diurnal period > 0 seconds")
        if not 0 < params["hours"] * 3600 <= params["period"]:
            raise bad("diurnal hours > 0 that fit in the period")
        if not (params["spread"] >= 0 and math.isfinite(params["center"])):
            raise bad("a diurnal spread >= 0 and a finite center")
        return AvailabilitySpec("diurnal", diurnal=tuple(params.items()))
    if text and Path(text).is_file():
        return AvailabilitySpec("file", path=text)
    raise bad(_EXPECTED)


def make_availability(
    spec: AvailabilitySpec, num_clients: int, seed: int
) -> Availability:
    """The availability model ``spec`` describes, for the run's clients and seed.

    Raises
    ------
    DeviceFileError
        A trace file that cannot be read.
    """
    if spec.kind == "always":
        return AlwaysOnline(num_clients)
    if spec.kind == "bernoulli":
        return BernoulliOnline(num_clients, spec.p, seed)
    if spec.kind == "diurnal":
        return diurnal_schedule(num_clients, seed, **dict(spec.diurnal))
    if spec.kind == "file":
        return trace_schedule(spec.path, num_clients)
    raise ConfigError(
        invalid_value(
            "availability kind", spec.kind, "always, bernoulli, diurnal, file"
        )
    )
