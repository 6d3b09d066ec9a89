"""``fedtflite export``: a finished run's global model as the file an app ships."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedtflite.data import FashionMnist
from fedtflite.errors import ExportError
from fedtflite.export.inference import (
    check_quantization,
    check_rebuildable,
    inference_model,
    representative_images,
)
from fedtflite.export.measure import FormatResult, format_table, measure
from fedtflite.export.patch import with_initial_weights
from fedtflite.export.run_dir import FinishedRun
from fedtflite.runtime import ClientModel

__all__ = ["REPRESENTATIVE_IMAGES", "ExportOptions", "export_report", "export_run"]

REPRESENTATIVE_IMAGES = 500
"""Training images that calibrate ``int8`` (drawn with the run's seed)."""


@dataclass(frozen=True)
class ExportOptions:
    """What to write.

    Attributes
    ----------
    out : Path
        The `.tflite` to write.
    inference : bool
        ``infer`` only (no ``train``, no optimizer state), rebuilt with TensorFlow.
    quantize : str or None
        ``fp16``, ``dynamic`` or ``int8`` (needs ``inference``), or None.
    """

    out: Path
    inference: bool = False
    quantize: str | None = None

    def __post_init__(self) -> None:
        check_quantization(self.quantize)
        if self.quantize is not None and not self.inference:
            raise ExportError(
                f"--quantize {self.quantize} writes an inference-only file (a "
                "quantized model cannot train): add --inference"
            )


def export_run(
    run: FinishedRun, options: ExportOptions, data: FashionMnist
) -> list[FormatResult]:
    """Write ``options.out`` from ``run`` and measure it (float first).

    The trainable export's ``parameters`` are checked to equal the final weights
    bitwise after loading the written bytes in LiteRT. A quantized export's
    table starts with the float inference file it was quantized from (measured,
    not written).

    Raises
    ------
    ExportError
        A format the run's model cannot be exported to, or a written file whose
        parameters differ from the final weights.
    """
    test = data.test
    if not options.inference:
        model = with_initial_weights(run.model_bytes, run.weights, str(run.run_dir))
        _check_parameters(model, run, options.out)
        _write(options.out, model)
        return [measure("float32 (trainable)", model, test.images, test.labels)]
    check_rebuildable(run.model)
    floating = inference_model(run.model, run.weights)
    rows = [measure("float32 (infer only)", floating, test.images, test.labels)]
    if options.quantize is None:
        _write(options.out, floating)
        return rows
    calibration = representative_images(
        data.train.images, REPRESENTATIVE_IMAGES, run.seed
    )
    quantized = inference_model(
        run.model, run.weights, quantize=options.quantize, representative=calibration
    )
    _write(options.out, quantized)
    rows.append(measure(options.quantize, quantized, test.images, test.labels))
    return rows


def _check_parameters(model: bytes, run: FinishedRun, out: Path) -> None:
    got = ClientModel(model).parameters()
    for i, (a, b) in enumerate(zip(got, run.weights, strict=True)):
        if a.tobytes() != np.asarray(b).tobytes():
            raise ExportError(
                f"{out}: parameters a{i} read back through LiteRT differ from "
                "final_weights.npz; the file was not written"
            )


def _write(path: Path, data: bytes) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as e:
        raise ExportError(f"--out {path}: cannot write there ({e.strerror})") from None


def export_report(
    run: FinishedRun, options: ExportOptions, rows: list[FormatResult]
) -> str:
    """A Markdown report: what was exported from which run, and the table."""
    kind = "inference-only" if options.inference else "trainable"
    return (
        f"# Export of {run.run_dir}\n\n"
        f"Model `{run.model}`, final global weights; wrote `{options.out}` "
        f"({kind}{', ' + options.quantize if options.quantize else ''}). "
        "Accuracy and loss on the 10,000 Fashion-MNIST test images through LiteRT "
        "on the exported file; latency: median of 200 single-image `infer` calls, "
        "one thread.\n\n" + format_table(rows)
    )
