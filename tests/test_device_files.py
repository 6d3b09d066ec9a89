"""Device and availability files: our CSV, FedScale's pickles, hostile pickles."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fedtflite.devices import load_behave_trace, load_device_file, safe_unpickle
from fedtflite.errors import DeviceFileError, UnsafePickleError

HEADER = "client_id,compute_factor,download_kbps,upload_kbps\n"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_csv_rows_are_put_in_client_order(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "devices.csv",
        HEADER + "1,10,1000,500\n0,1.5,20000,5000\n\n2, 3 ,8000,2000\n",
    )
    table = load_device_file(path)
    assert table.kind == "csv" and table.rows == 3
    assert table.compute_factor is not None
    np.testing.assert_array_equal(table.compute_factor, [1.5, 10, 3])
    np.testing.assert_array_equal(table.download_kbps, [20000, 1000, 8000])
    np.testing.assert_array_equal(table.upload_kbps, [5000, 500, 2000])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,speed\n0,1\n", "row 1: header is id,speed; expected client_id,"),
        ("", "row 1: header is (empty); expected"),
        (HEADER, "no device rows after the header"),
        (HEADER + "0,1,2\n", "row 2: 3 fields; expected 4"),
        (HEADER + "x,1,2,3\n", "row 2, client_id: 'x' is not an integer"),
        (HEADER + "0,fast,2,3\n", "row 2, compute_factor: 'fast'; expected a fin"),
        (HEADER + "0,1,-2,3\n", "row 2, download_kbps: '-2'; expected a finite"),
        (HEADER + "0,1,2,inf\n", "row 2, upload_kbps: 'inf'; expected a finite"),
        (HEADER + "0,1,2,3\n0,1,2,3\n", "row 3, client_id: 0 repeats; expected"),
        (HEADER + "0,1,2,3\n5,1,2,3\n", "row 3, client_id: 5 is out of range; expe"),
    ],
)
def test_bad_csv_is_one_line_naming_row_and_column(
    tmp_path: Path, text: str, message: str
) -> None:
    path = _write(tmp_path / "devices.csv", text)
    with pytest.raises(DeviceFileError) as e:
        load_device_file(path)
    assert str(e.value).startswith(f"{path}: ")
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_and_binary_files(tmp_path: Path) -> None:
    with pytest.raises(DeviceFileError, match="no such file"):
        load_device_file(tmp_path / "nope")
    junk = tmp_path / "junk"
    junk.write_bytes(b"\xff\xfe\x00\x01binary")
    with pytest.raises(DeviceFileError, match=r"neither a CSV .* nor a FedScale"):
        load_device_file(junk)
    with pytest.raises(DeviceFileError, match="is a directory"):
        load_device_file(tmp_path)


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_fedscale_capacity_pickle_is_recognised_by_content(
    tmp_path: Path, protocol: int
) -> None:
    # FedScale's file has no extension; ids start at 1; numpy numbers allowed.
    trace = {
        2: {"computation": 81.0, "communication": 2000.0},
        1: {"computation": np.float64(162.0), "communication": 5648.1},
        3: {"computation": 40, "communication": np.float32(1000.0), "x": "any"},
    }
    path = tmp_path / "client_device_capacity"
    path.write_bytes(pickle.dumps(trace, protocol=protocol))
    table = load_device_file(path)
    assert table.kind == "fedscale" and table.compute_factor is None
    assert table.ms_per_sample is not None
    np.testing.assert_array_equal(table.ms_per_sample, [162, 81, 40])
    np.testing.assert_array_equal(table.download_kbps, [5648.1, 2000, 1000])
    np.testing.assert_array_equal(table.upload_kbps, table.download_kbps)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ([1, 2], "a pickled list; expected a non-empty dict"),
        ({}, "a pickled dict; expected a non-empty dict"),
        ({1: {"computation": 1.0}}, "client 1: no 'communication'"),
        ({1: {"computation": -1.0, "communication": 5}}, "client 1: 'computat"),
        ({1: {"computation": "fast", "communication": 5}}, "is 'fast'; expected a"),
        ({7: 3.0}, "client 7: float; expected a dict"),
        (
            {1: {"active": [0], "inactive": [5], "finish_time": 10}},
            "a FedScale client_behave_trace (availability intervals), not a device",
        ),
    ],
)
def test_bad_capacity_pickles(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "capacity"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(DeviceFileError) as e:
        load_device_file(path)
    assert message in str(e.value) and "\n" not in str(e.value)


class _RunsShell:
    """Unpickling this runs a shell command (the attack a pickle allows)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (self.command,))


class _Evals:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (eval, ("__import__('os').getcwd()",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = _RunsShell(f"touch {marker}")
    # The attack works: plain pickle.loads runs the command.
    pickle.loads(pickle.dumps(evil))
    assert marker.exists()
    marker.unlink()

    nested = {1: {"computation": 1.0, "communication": evil}}
    for content in (evil, nested):
        path = tmp_path / "client_device_capacity"
        path.write_bytes(pickle.dumps(content))
        with pytest.raises(UnsafePickleError) as e:
            load_device_file(path)
        message = str(e.value)
        assert message.startswith(f"{path}: refused: the pickle asks for ")
        assert "system" in message and "\n" not in message
        with pytest.raises(UnsafePickleError):
            load_behave_trace(path)
    assert not marker.exists()


def test_malicious_pickle_refused_in_a_fresh_process(tmp_path: Path) -> None:
    # The CLI-level behaviour: one line, exit status from the error, no side effect.
    marker = tmp_path / "pwned"
    path = tmp_path / "trace"
    path.write_bytes(pickle.dumps({1: _RunsShell(f"touch {marker}")}, protocol=0))
    code = (
        "import sys\n"
        "from fedtflite.devices import load_device_file\n"
        "from fedtflite.errors import UnsafePickleError\n"
        "try:\n"
        f"    load_device_file({str(path)!r})\n"
        "except UnsafePickleError as e:\n"
        "    print(e); sys.exit(2)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert done.stdout.count("\n") == 1 and "refused" in done.stdout
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps(_Evals()),
        # protocol 0 by hand: GLOBAL 'os system', then REDUCE
        b"cos\nsystem\n(S'true'\ntR.",
        # numpy's allowed names, misused: a dtype that is not a number
        b"cnumpy\ndtype\n(S'O'\ntR.",
        # a persistent id
        b"(dp0\nI1\nPevil\ns.",
        # the bytes helper of old protocols with another codec
        b"c_codecs\nencode\n(S'x'\nS'rot13'\ntR.",
    ],
)
def test_other_code_paths_are_refused(payload: bytes) -> None:
    with pytest.raises(UnsafePickleError, match="refused: the pickle asks for"):
        safe_unpickle(payload, "f")


def test_truncated_pickle_is_a_clear_error() -> None:
    data = pickle.dumps({1: {"computation": 1.0, "communication": 2.0}})
    with pytest.raises(DeviceFileError, match="f: not a readable pickle"):
        safe_unpickle(data[:-5], "f")


def test_behave_trace(tmp_path: Path) -> None:
    trace = {
        10: {"active": [0, 50], "inactive": [20, 80], "finish_time": 100},
        4: {
            "duration": 5,
            "active": [np.int64(5)],
            "inactive": [6.5],
            "finish_time": 10.0,
            "model": "Pixel",
        },
    }
    path = tmp_path / "client_behave_trace"
    path.write_bytes(pickle.dumps(trace))
    t = load_behave_trace(path)
    np.testing.assert_array_equal(t.finish_time, [10, 100])  # id order: 4, 10
    np.testing.assert_array_equal(t.active[1], [0, 50])
    np.testing.assert_array_equal(t.inactive[0], [6.5])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({1: {"active": [0, 5], "inactive": [3], "finish_time": 9}}, "'active' has 2"),
        ({1: {"active": [4], "inactive": [3], "finish_time": 9}}, "interval 0: inac"),
        ({1: {"active": [0], "inactive": [3]}}, "client 1: no 'finish_time'"),
        ({1: {"active": [0], "inactive": [3], "finish_time": 0}}, "'finish_time' is"),
        ({1: {"active": 0, "inactive": [3], "finish_time": 9}}, "'active' is int;"),
        ({1: {"active": [-1], "inactive": [3], "finish_time": 9}}, "negative or non"),
        (
            {1: {"computation": 1.0, "communication": 2.0}},
            "a FedScale client_device_capacity trace, not an availability trace",
        ),
    ],
)
def test_bad_behave_traces(tmp_path: Path, content: object, message: str) -> None:
    path = tmp_path / "trace"
    path.write_bytes(pickle.dumps(content))
    with pytest.raises(DeviceFileError) as e:
        load_behave_trace(path)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_behave_trace_must_be_a_pickle(tmp_path: Path) -> None:
    path = _write(tmp_path / "trace.csv", HEADER + "0,1,2,3\n")
    with pytest.raises(DeviceFileError, match="not a pickle; expected FedScale's"):
        load_behave_trace(path)
