"""What ``fedtflite simulate`` prints: fedtflite's own lines only, no
TensorFlow/absl/CUDA/oneDNN/LiteRT start-up lines, also while it builds the model."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NOISE = re.compile(
    r"absl::InitializeLog|oneDNN|cudart|cuInit|CUDA|TF_ENABLE_ONEDNN_OPTS"
    r"|unsaved custom gradients|XNNPACK|^[IWE]\d{4} "
)


def _simulate(tmp_path: Path, home: Path, *overrides: str) -> list[str]:
    env = {**os.environ, "HOME": str(home), "PYTHONPATH": str(ROOT)}
    args = ["--set", "num-rounds=1", "--set", "num-clients=10", *overrides]
    args += ["--no-progress", "--out", str(tmp_path / "run")]
    out = subprocess.run(
        [sys.executable, "-m", "fedtflite.cli", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return (out.stdout + out.stderr).splitlines()


def _noise(lines: list[str]) -> list[str]:
    return [line for line in lines if NOISE.search(line)]


def test_a_run_prints_no_native_start_up_lines(tmp_path: Path) -> None:
    lines = _simulate(tmp_path, Path.home())

    assert _noise(lines) == []
    assert any(line.startswith("final test accuracy") for line in lines)


@pytest.mark.slow
def test_building_the_model_prints_no_tensorflow_lines(tmp_path: Path) -> None:
    """A fresh home: no cached model, so TensorFlow builds it in the run."""
    home = tmp_path / "home"
    home.mkdir()

    lines = _simulate(tmp_path, home, "--set", "seed=7")

    assert _noise(lines) == []
