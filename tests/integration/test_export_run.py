"""``fedtflite export`` on a real finished run: the trainable file with the final
weights (without TensorFlow), and an int8 inference file with its report."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fedtflite.cli import main
from fedtflite.data import load_fashion_mnist
from fedtflite.orchestrator import simulate
from fedtflite.runtime import ClientModel
from fedtflite.simulation import History, SimulationConfig

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def run(
    small_config: Callable[..., SimulationConfig],
    tmp_path_factory: pytest.TempPathFactory,
) -> History:
    run_dir = tmp_path_factory.mktemp("export") / "run"
    return simulate(small_config("num-rounds=3"), run_dir, progress=False)


def test_trainable_export_starts_from_the_final_weights_without_tensorflow(
    run: History, tmp_path: Path
) -> None:
    out = tmp_path / "global.tflite"
    code = (
        "import sys; from fedtflite.cli import main; "
        f"rc = main(['export', {str(run.run_dir)!r}, '--out', {str(out)!r}]); "
        "assert 'tensorflow' not in sys.modules, 'imported TensorFlow'; sys.exit(rc)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "| float32 (trainable) |" in done.stdout
    exported = ClientModel(out)
    with np.load(run.run_dir / "final_weights.npz") as f:
        final = [f[p.name] for p in exported.contract.parameters]
    for got, want in zip(exported.parameters(), final, strict=True):
        assert got.tobytes() == want.tobytes()
    data = load_fashion_mnist()
    x, y = data.train.images[:512], data.train.labels[:512]
    before = exported.evaluate(x, y)
    exported.fit(x, y, epochs=2, batch_size=32, rng=np.random.default_rng(0))
    assert exported.evaluate(x, y).loss < before.loss
    test = data.test
    accuracy = ClientModel(out).evaluate(test.images, test.labels).accuracy
    assert accuracy == pytest.approx(run.rounds[-1].test_accuracy, abs=1e-9)


def test_int8_export_is_smaller_as_accurate_and_reported(
    run: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, report = tmp_path / "int8.tflite", tmp_path / "report.md"
    argv = ["export", str(run.run_dir), "--out", str(out), "--inference"]
    assert main([*argv, "--quantize", "int8", "--report", str(report)]) == 0
    rows = [
        line.split("|")
        for line in report.read_text().splitlines()
        if line.startswith("| float32") or line.startswith("| int8")
    ]
    assert [r[1].strip() for r in rows] == ["float32 (infer only)", "int8"]
    float_acc, int8_acc = (float(r[4].strip(" %")) for r in rows)
    assert float_acc == pytest.approx(100 * run.rounds[-1].test_accuracy, abs=0.006)
    assert abs(float_acc - int8_acc) <= 1.0
    assert float(rows[1][3].split("x")[0]) >= 3.5
    assert "| int8 |" in capsys.readouterr().out
    assert float(rows[1][2].split()[0]) == pytest.approx(
        out.stat().st_size / 1024, abs=0.05
    )


def test_bad_export_requests_fail_in_one_line(
    run: History, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "x.tflite")
    assert main(["export", str(tmp_path), "--out", out]) == 2
    argv = ["export", str(run.run_dir), "--out", out, "--inference"]
    assert main([*argv, "--quantize", "int3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2
    assert "not a run directory" in err[0]
    assert "'int3' is not a format" in err[1]
