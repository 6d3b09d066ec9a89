"""Inference-only and quantized files, rebuilt from the run's model source.

The trainable file's ``infer`` reads resource variables, which LiteRT's
post-training quantization cannot quantize; so the inference graph is rebuilt
with TensorFlow from what the run's model came from — a named architecture
(:mod:`fedtflite.models.zoo`) or the user's ``.keras`` file, read by
:func:`fedtflite.models.keras_reader.read_keras` into the same
:class:`~fedtflite.models.network.Network` the trainable file was built from —
with the final weights as constants, and the very forward pass of the trainable
``infer`` (:func:`fedtflite.models.layers.forward`, no dropout, moving
statistics). Quantization is LiteRT's own (``TFLiteConverter`` optimizations):
``fp16`` (float16 weights), ``dynamic`` (int8 weights, float activations) and
``int8`` (full-integer: every op int8, activation ranges calibrated on a
representative set of training images; ``infer`` keeps float32 input and
output, so an app feeds it exactly as the float file).

A model given to the run as a ``.tflite`` has no such source: it exports only
as a trainable file with the final weights (:mod:`fedtflite.export.patch`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fedtflite.errors import ExportError
from fedtflite.models.architectures import ARCHITECTURES

__all__ = ["QUANTIZATIONS", "inference_model", "representative_images"]

QUANTIZATIONS = ("fp16", "dynamic", "int8")
"""``--quantize`` choices: LiteRT's post-training quantizations."""


def check_quantization(quantize: str | None) -> None:
    """Raise :class:`ExportError` for a format not in :data:`QUANTIZATIONS`."""
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ExportError(
            f"--quantize {quantize!r} is not a format; "
            f"valid: {', '.join(QUANTIZATIONS)}"
        )


def check_rebuildable(model: str) -> None:
    """Raise :class:`ExportError` unless ``model`` names a source to rebuild from."""
    if model in ARCHITECTURES or model.endswith(".keras"):
        if model.endswith(".keras") and not Path(model).is_file():
            raise ExportError(
                f"model = {model!r}: the run's Keras file is gone; an inference or "
                "quantized export rebuilds from it (the trainable export does not)"
            )
        return
    raise ExportError(
        f"model = {model!r} is a .tflite with no TensorFlow source: it exports as a "
        "trainable file with the final weights, but an inference-only or quantized "
        "file needs the model it was built from (a named model or a .keras file)"
    )


def representative_images(images: np.ndarray, count: int, seed: int) -> np.ndarray:
    """``count`` training images drawn without replacement with ``seed``."""
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(images), size=min(count, len(images)), replace=False)
    return np.asarray(images[np.sort(pick)], np.float32)


def inference_model(
    model: str,
    weights: Sequence[np.ndarray],
    *,
    quantize: str | None = None,
    representative: np.ndarray | None = None,
) -> bytes:
    """The ``infer``-only `.tflite` of ``model`` with ``weights``, maybe quantized.

    Parameters
    ----------
    model : str
        A named architecture or a ``.keras`` path (the run's ``model``).
    weights : sequence of np.ndarray
        The ``parameters`` values ``a0, a1, ...`` (e.g. the final weights).
    quantize : str, optional
        One of :data:`QUANTIZATIONS`; None keeps float32.
    representative : np.ndarray, optional
        Images ``[n, 28, 28]`` that calibrate ``int8`` (required for it).

    Returns
    -------
    bytes
        A file with one signature, ``infer(x) -> {logits, output}``.

    Raises
    ------
    ExportError
        No source to rebuild from, an unknown format, weights that do not fit.
    """
    check_quantization(quantize)
    check_rebuildable(model)
    if quantize == "int8" and representative is None:
        raise ExportError("--quantize int8 needs representative images")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from fedtflite.models.layers import Pass, forward

    net, constants = _network(model)
    params = list(net.parameters)
    if len(weights) != len(params):
        raise ExportError(
            f"model {model!r} has {len(params)} parameters; got {len(weights)} arrays"
        )
    for i, (w, spec) in enumerate(zip(weights, params, strict=True)):
        if tuple(np.shape(w)) != tuple(spec.shape):
            raise ExportError(
                f"a{i} is {list(np.shape(w))}; model {model!r} has "
                f"{spec.name} {list(spec.shape)}"
            )
    values = [*(np.asarray(w, np.float32) for w in weights), *constants]

    module = tf.Module()
    tensors = [tf.constant(v) for v in values]

    def infer(x: Any) -> dict[str, Any]:
        logits = forward(net, tensors, x, Pass(training=False))
        return {"logits": logits, "output": tf.nn.softmax(logits)}

    spec = tf.TensorSpec([None, *net.input_shape], tf.float32, name="x")
    module.infer = tf.function(infer, input_signature=[spec])
    signatures = {"infer": module.infer.get_concrete_function()}
    with tempfile.TemporaryDirectory(prefix="fedtflite-export-") as tmp:
        # The convolutions' custom gradients are not needed to infer.
        options = tf.saved_model.SaveOptions(experimental_custom_gradients=False)
        tf.saved_model.save(module, tmp, signatures=signatures, options=options)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            tmp, signature_keys=["infer"]
        )
        _configure(converter, tf, net.input_shape, quantize, representative)
        return bytes(converter.convert())


def _network(model: str) -> tuple[Any, list[np.ndarray]]:
    """The run model's network and its constant (frozen) weights."""
    from fedtflite.models.keras_reader import load_keras, read_keras

    if model in ARCHITECTURES:
        from fedtflite.models.zoo import keras_definition

        read = read_keras(keras_definition(model), f"model {model!r}")
    else:
        keras_model, source = load_keras(model)
        read = read_keras(keras_model, source)
    n = len(read.network.parameters)
    return read.network, list(read.weights[n:])


def _configure(
    converter: Any,
    tf: Any,
    input_shape: tuple[int, ...],
    quantize: str | None,
    representative: np.ndarray | None,
) -> None:
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if quantize is None:
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "int8":
        assert representative is not None
        images = representative.reshape((-1, 1, *input_shape)).astype(np.float32)

        def calibration() -> Iterator[list[np.ndarray]]:
            yield from ([x] for x in images)

        converter.representative_dataset = calibration
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        # One scale per dense kernel, not per output unit: per-unit scales and
        # int64 zero points cost ~12 bytes a unit, a tenth of a small model.
        flag = "_experimental_disable_per_channel_quantization_for_dense_layers"
        setattr(converter, flag, True)
