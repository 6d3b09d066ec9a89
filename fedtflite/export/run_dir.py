"""A finished run directory, read for export: its model, final weights and source."""

from __future__ import annotations

import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedtflite.errors import ExportError, FedTfliteError
from fedtflite.runtime import ClientModel

__all__ = ["FINAL_WEIGHTS", "FinishedRun", "load_finished_run"]

FINAL_WEIGHTS = "final_weights.npz"
"""What a run writes after its last round: the global weights ``a0, a1, ...``."""


@dataclass(frozen=True)
class FinishedRun:
    """What an export needs from a finished run.

    Attributes
    ----------
    run_dir : Path
    model : str
        The config's ``model``: a named architecture, a ``.keras`` or a
        ``.tflite`` path (the run's source of the model).
    seed : int
        The run's seed (representative-set draws derive from it).
    data_dir : str
        The config's ``data-dir`` ("" for the usual look-up).
    model_bytes : bytes
        The run's ``model.tflite``.
    weights : tuple of np.ndarray
        ``final_weights.npz``'s ``a0, a1, ...`` in order; they fit the model.
    """

    run_dir: Path
    model: str
    seed: int
    data_dir: str
    model_bytes: bytes
    weights: tuple[np.ndarray, ...]


def load_finished_run(run_dir: str | Path) -> FinishedRun:
    """Read ``run_dir``'s config, ``model.tflite`` and final weights, checked.

    Raises
    ------
    ExportError
        Not a run directory; a run with no final weights (unfinished: how to
        resume it); final weights that do not fit the run's model.
    """
    run_dir = Path(run_dir)
    config_path = run_dir / "config.toml"
    model_path = run_dir / "model.tflite"
    if not (config_path.is_file() and model_path.is_file()):
        raise ExportError(
            f"{run_dir}: not a run directory (expected config.toml and model.tflite, "
            "as `fedtflite simulate --out DIR` writes)"
        )
    weights_path = run_dir / FINAL_WEIGHTS
    if not weights_path.is_file():
        raise ExportError(
            f"{run_dir}: has no {FINAL_WEIGHTS}: the run did not finish; go on with "
            f"`fedtflite simulate {config_path} --out {run_dir} --resume`"
        )
    try:
        config = tomllib.loads(config_path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ExportError(f"{config_path}: not valid TOML: {e}") from None
    try:
        model = ClientModel(model_path)
    except FedTfliteError as e:
        raise ExportError(f"{model_path}: not a valid client model: {e}") from None
    weights = _read_weights(weights_path, model)
    return FinishedRun(
        run_dir=run_dir,
        model=str(config.get("model", "mlp")),
        seed=int(config.get("seed", 0)),
        data_dir=str(config.get("data-dir", "")),
        model_bytes=model.model_bytes,
        weights=weights,
    )


def _read_weights(path: Path, model: ClientModel) -> tuple[np.ndarray, ...]:
    specs = model.contract.parameters
    try:
        with np.load(path) as f:
            arrays = {name: np.asarray(f[name]) for name in f.files}
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ExportError(f"{path}: not a readable .npz ({e})") from None
    expected = [s.name for s in specs]
    if sorted(arrays) != sorted(expected):
        raise ExportError(
            f"{path}: holds {', '.join(sorted(arrays)) or 'nothing'}; the run's "
            f"model.tflite has parameters {', '.join(expected)}"
        )
    for s in specs:
        w = arrays[s.name]
        if w.shape != s.shape or w.dtype != s.dtype:
            raise ExportError(
                f"{path}: {s.name} is {w.dtype.name}{list(w.shape)}; the run's "
                f"model.tflite has {s}"
            )
    return tuple(arrays[name] for name in expected)
