"""Device and availability files: a CSV of our own, and FedScale's pickled traces.

FedScale (Lai et al., ICML 2022) ships two traces, both pickled dictionaries
keyed by client id and named without an extension
(``benchmark/dataset/data/device_info/README.md`` in its repository):

- ``client_device_capacity``: ``{id: {"computation": ms per sample,
  "communication": kbps}}`` (phone speeds from AI Benchmark, bandwidths from
  MobiPerf);
- ``client_behave_trace``: ``{id: {"active": [s, ...], "inactive": [s, ...],
  "finish_time": s, ...}}``, the intervals in which a phone was available.

Files are recognised by their content, not their name. A pickle is a program,
so it is read with :func:`~fedtflite.devices.safepickle.safe_unpickle`, which
loads plain data and refuses, before anything runs, a pickle that would call
code.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from fedtflite.devices.safepickle import safe_unpickle
from fedtflite.errors import DeviceFileError

__all__ = [
    "DEVICE_CSV_COLUMNS",
    "BehaveTrace",
    "DeviceTable",
    "load_behave_trace",
    "load_device_file",
]

DEVICE_CSV_COLUMNS = ("client_id", "compute_factor", "download_kbps", "upload_kbps")
"""Header of a device CSV, in this order."""

# Protocol 2+ pickles open with PROTO (0x80) and the protocol number; protocol 0
# and 1 pickles of a dict open with MARK "(" or EMPTY_DICT "}".
_PICKLE_STARTS = (b"\x80", b"(", b"}")


def _fail(source: str, where: str, what: str) -> NoReturn:
    raise DeviceFileError(f"{source}: {where}: {what}")


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DeviceFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DeviceFileError(f"{path}: is a directory, expected a file") from None
    except OSError as e:
        raise DeviceFileError(f"{path}: cannot read: {e.strerror}") from None


def _is_pickle(data: bytes) -> bool:
    return data[:1] in _PICKLE_STARTS and not data.lstrip().startswith(b"client_id")


def _number(value: Any, source: str, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(source, where, f"{key!r} is {value!r}; expected a number")
    return float(value)


def _positive(value: Any, source: str, where: str, key: str) -> float:
    x = _number(value, source, where, key)
    if not (math.isfinite(x) and x > 0):
        _fail(source, where, f"{key!r} is {value!r}; expected a finite number > 0")
    return x


def _sorted_keys(table: dict[Any, Any]) -> list[Any]:
    """Client ids in order: numerically when all are integers (FedScale's are)."""
    keys = list(table)
    if all(isinstance(k, int) and not isinstance(k, bool) for k in keys):
        return sorted(keys)
    return sorted(keys, key=str)


@dataclass(frozen=True, eq=False)
class DeviceTable:
    """Rows of a device file, in client-id order.

    Attributes
    ----------
    source : str
        The file.
    kind : str
        ``"csv"`` or ``"fedscale"``.
    compute_factor : np.ndarray or None
        float64 ``[rows]`` (CSV): seconds of a ``train`` step relative to this
        machine.
    ms_per_sample : np.ndarray or None
        float64 ``[rows]`` (FedScale): inference milliseconds per sample.
    download_kbps, upload_kbps : np.ndarray
        float64 ``[rows]``, kilobits (1000 bits) per second.
    """

    source: str
    kind: str
    compute_factor: np.ndarray | None
    ms_per_sample: np.ndarray | None
    download_kbps: np.ndarray
    upload_kbps: np.ndarray

    @property
    def rows(self) -> int:
        """Number of devices in the file."""
        return len(self.download_kbps)


def load_device_file(path: str | Path) -> DeviceTable:
    """Read a device CSV or a FedScale ``client_device_capacity`` pickle.

    The CSV has the header ``client_id,compute_factor,download_kbps,upload_kbps``
    and one row per client id ``0..n-1`` (in any order); the pickle is
    recognised by its content.

    Raises
    ------
    UnsafePickleError
        A pickle that would run code.
    DeviceFileError
        Anything else wrong, naming the row (or client id) and column.
    """
    path = Path(path)
    data = _read(path)
    source = str(path)
    if _is_pickle(data):
        return _device_pickle(safe_unpickle(data, source), source)
    return _device_csv(data, source)


def _device_csv(data: bytes, source: str) -> DeviceTable:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        _fail(
            source,
            "format",
            "neither a CSV (" + ",".join(DEVICE_CSV_COLUMNS) + ") nor a FedScale "
            "client_device_capacity pickle",
        )
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    header = tuple(c.strip() for c in rows[0]) if rows else ()
    if header != DEVICE_CSV_COLUMNS:
        _fail(
            source,
            "row 1",
            f"header is {','.join(header) or '(empty)'}; expected "
            f"{','.join(DEVICE_CSV_COLUMNS)} (or a FedScale client_device_capacity "
            "pickle)",
        )
    if len(rows) < 2:
        _fail(source, "rows", "no device rows after the header")
    values = np.empty((len(rows) - 1, 3))
    ids = np.empty(len(rows) - 1, np.int64)
    for i, row in enumerate(rows[1:]):
        where = f"row {i + 2}"
        if len(row) != len(DEVICE_CSV_COLUMNS):
            _fail(source, where, f"{len(row)} fields; expected 4 ({header[0]},...)")
        try:
            ids[i] = int(row[0])
        except ValueError:
            _fail(source, f"{where}, client_id", f"{row[0]!r} is not an integer")
        for j, column in enumerate(DEVICE_CSV_COLUMNS[1:]):
            try:
                x = float(row[j + 1])
            except ValueError:
                x = math.nan
            if not (math.isfinite(x) and x > 0):
                _fail(
                    source,
                    f"{where}, {column}",
                    f"{row[j + 1].strip()!r}; expected a finite number > 0",
                )
            values[i, j] = x
    order = np.argsort(ids, kind="stable")
    expected = np.arange(len(ids))
    if not np.array_equal(ids[order], expected):
        seen: set[int] = set()
        for i, cid in enumerate(ids.tolist()):
            if cid < 0 or cid >= len(ids) or cid in seen:
                _fail(
                    source,
                    f"row {i + 2}, client_id",
                    f"{cid} {'repeats' if cid in seen else 'is out of range'}; "
                    f"expected each of 0..{len(ids) - 1} once (clients beyond the "
                    "rows reuse them cyclically)",
                )
            seen.add(cid)
    values = values[order]
    return DeviceTable(
        source=source,
        kind="csv",
        compute_factor=values[:, 0].copy(),
        ms_per_sample=None,
        download_kbps=values[:, 1].copy(),
        upload_kbps=values[:, 2].copy(),
    )


def _device_pickle(table: Any, source: str) -> DeviceTable:
    if not isinstance(table, dict) or not table:
        _fail(
            source,
            "content",
            f"a pickled {type(table).__name__}; expected a non-empty dict "
            "{client_id: {'computation': ms per sample, 'communication': kbps}}",
        )
    keys = _sorted_keys(table)
    first = table[keys[0]]
    if isinstance(first, dict) and "active" in first and "computation" not in first:
        _fail(
            source,
            "content",
            "a FedScale client_behave_trace (availability intervals), not a "
            "device capacity trace; give it as availability",
        )
    ms = np.empty(len(keys))
    kbps = np.empty(len(keys))
    for i, key in enumerate(keys):
        entry = table[key]
        where = f"client {key!r}"
        if not isinstance(entry, dict):
            _fail(source, where, f"{type(entry).__name__}; expected a dict")
        for name in ("computation", "communication"):
            if name not in entry:
                _fail(
                    source,
                    where,
                    f"no {name!r}; expected keys computation, communication",
                )
        ms[i] = _positive(entry["computation"], source, where, "computation")
        kbps[i] = _positive(entry["communication"], source, where, "communication")
    return DeviceTable(
        source=source,
        kind="fedscale",
        compute_factor=None,
        ms_per_sample=ms,
        download_kbps=kbps,
        upload_kbps=kbps.copy(),
    )


@dataclass(frozen=True, eq=False)
class BehaveTrace:
    """FedScale's ``client_behave_trace``: availability intervals per trace client.

    Attributes
    ----------
    source : str
        The file.
    active, inactive : tuple of np.ndarray
        Per trace client (in id order), the start and end seconds of its
        available intervals (closed ``[active[k], inactive[k]]``), within
        ``[0, finish_time]``.
    finish_time : np.ndarray
        float64 per trace client: the trace's period; it repeats after it.
    """

    source: str
    active: tuple[np.ndarray, ...]
    inactive: tuple[np.ndarray, ...]
    finish_time: np.ndarray


def load_behave_trace(path: str | Path) -> BehaveTrace:
    """Read a FedScale ``client_behave_trace`` pickle (recognised by content).

    Raises
    ------
    UnsafePickleError
        A pickle that would run code.
    DeviceFileError
        Not such a trace, naming the client id and key that are wrong.
    """
    path = Path(path)
    data = _read(path)
    source = str(path)
    if not _is_pickle(data):
        _fail(
            source,
            "format",
            "not a pickle; expected FedScale's client_behave_trace {client_id: "
            "{'active': [...], 'inactive': [...], 'finish_time': s}}",
        )
    table = safe_unpickle(data, source)
    if not isinstance(table, dict) or not table:
        _fail(
            source,
            "content",
            f"a pickled {type(table).__name__}; expected a non-empty dict "
            "{client_id: {'active': [...], 'inactive': [...], 'finish_time': s}}",
        )
    keys = _sorted_keys(table)
    actives, inactives = [], []
    finish = np.empty(len(keys))
    for i, key in enumerate(keys):
        entry = table[key]
        where = f"client {key!r}"
        if isinstance(entry, dict) and "computation" in entry and "active" not in entry:
            _fail(
                source,
                "content",
                "a FedScale client_device_capacity trace, not an availability "
                "trace; give it as devices",
            )
        if not isinstance(entry, dict):
            _fail(source, where, f"{type(entry).__name__}; expected a dict")
        for name in ("active", "inactive", "finish_time"):
            if name not in entry:
                _fail(
                    source,
                    where,
                    f"no {name!r}; expected keys active, inactive, finish_time",
                )
        finish[i] = _positive(entry["finish_time"], source, where, "finish_time")
        starts = _times(entry["active"], source, where, "active")
        ends = _times(entry["inactive"], source, where, "inactive")
        if len(starts) != len(ends):
            _fail(
                source,
                where,
                f"'active' has {len(starts)} entries, 'inactive' {len(ends)}; "
                "expected one end per start",
            )
        bad = np.flatnonzero(ends < starts)
        if len(bad):
            k = int(bad[0])
            _fail(
                source,
                f"{where}, interval {k}",
                f"inactive {ends[k]:g} < active {starts[k]:g}; expected start <= end",
            )
        actives.append(starts)
        inactives.append(ends)
    return BehaveTrace(source, tuple(actives), tuple(inactives), finish)


def _times(values: Any, source: str, where: str, key: str) -> np.ndarray:
    if not isinstance(values, list | tuple):
        _fail(source, where, f"{key!r} is {type(values).__name__}; expected a list")
    out = np.array([_number(v, source, where, key) for v in values], dtype=np.float64)
    if not np.isfinite(out).all() or (out < 0).any():
        _fail(source, where, f"{key!r} holds a negative or non-finite time")
    return out
