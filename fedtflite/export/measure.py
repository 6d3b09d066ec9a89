"""Size, test accuracy and loss, and latency of an exported file, through LiteRT.

Any `.tflite` with an ``infer`` signature is measured the same way: the trainable
file, the inference-only one and its quantized forms (whose ``infer`` keeps
float32 inputs and outputs). No TensorFlow.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedtflite.errors import ExportError
from fedtflite.runtime.client_model import cross_entropy_and_accuracy

__all__ = ["FormatResult", "format_table", "measure"]

_CHUNK = 1000


@dataclass(frozen=True)
class FormatResult:
    """One exported format, measured.

    Attributes
    ----------
    format : str
        E.g. ``"float32 (trainable)"``, ``"int8"``.
    size_bytes : int
        File size.
    accuracy, loss : float
        On the test images, through the file's ``infer`` in LiteRT.
    latency_ms : float
        Median wall time of one ``infer`` call on one image (one thread).
    """

    format: str
    size_bytes: int
    accuracy: float
    loss: float
    latency_ms: float


def measure(
    name: str,
    model: bytes,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    latency_calls: int = 200,
) -> FormatResult:
    """Measure ``model``'s ``infer`` on ``images`` (float32 ``[n, 28, 28]``).

    Parameters
    ----------
    name : str
        The format's label in the table.
    model : bytes
        A `.tflite` with an ``infer`` signature whose input is ``x`` and whose
        outputs include ``logits`` or ``output`` (probabilities).
    images, labels : np.ndarray
        Test images and integer labels.
    latency_calls : int
        Single-image calls timed (after 10 warm-up calls); the median is kept.

    Raises
    ------
    ExportError
        A file LiteRT cannot load, or with no usable ``infer``.
    """
    from ai_edge_litert.interpreter import Interpreter

    try:
        interpreter = Interpreter(model_content=model, num_threads=1)
        runner = interpreter.get_signature_runner("infer")
    except (ValueError, RuntimeError) as e:
        raise ExportError(
            f"{name}: LiteRT cannot run its infer signature: {e}"
        ) from None
    inputs = runner.get_input_details()
    outputs = runner.get_output_details()
    if "x" not in inputs or not {"logits", "output"} & set(outputs):
        raise ExportError(
            f"{name}: infer takes {sorted(inputs)} and returns {sorted(outputs)}; "
            "expected input x and output logits or output"
        )
    key = "logits" if "logits" in outputs else "output"
    shape = [int(d) for d in inputs["x"]["shape_signature"]]
    x = np.asarray(images, np.float32).reshape((len(images), *shape[1:]))
    fixed = shape[0] if shape[0] > 0 else None
    scores = _predict(runner, x, key, fixed)
    loss, accuracy = cross_entropy_and_accuracy(
        scores, np.asarray(labels), is_logits=key == "logits"
    )
    one = x[:1] if fixed is None else _pad(x[:1], fixed)
    times = []
    for k in range(10 + latency_calls):
        start = time.perf_counter()
        runner(x=one)
        if k >= 10:
            times.append(time.perf_counter() - start)
    per_image = float(np.median(times)) * 1e3 / (fixed or 1)
    return FormatResult(name, len(model), accuracy, loss, per_image)


def _pad(x: np.ndarray, rows: int) -> np.ndarray:
    pad = np.zeros((rows - len(x), *x.shape[1:]), np.float32)
    return np.concatenate([x, pad])


def _predict(runner: Any, x: np.ndarray, key: str, fixed: int | None) -> np.ndarray:
    chunk = fixed or _CHUNK
    parts = []
    for s in range(0, len(x), chunk):
        xb = x[s : s + chunk]
        real = len(xb)
        if fixed is not None and real < fixed:
            xb = _pad(xb, fixed)
        parts.append(np.asarray(runner(x=xb)[key], np.float32)[:real])
    return np.concatenate(parts)


def format_table(rows: list[FormatResult]) -> str:
    """A Markdown table, one row per format, sizes relative to the first row."""
    base = rows[0].size_bytes if rows else 1
    lines = [
        "| format | size | vs float | test accuracy | test loss | latency (ms/image) |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.format} | {r.size_bytes / 1024:.1f} KiB | "
            f"{base / r.size_bytes:.2f}x{' smaller' if r is not rows[0] else ''} | "
            f"{100 * r.accuracy:.2f} % | "
            f"{r.loss:.4f} | {r.latency_ms:.3f} |"
        )
    return "\n".join(lines) + "\n"
