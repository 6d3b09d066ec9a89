"""Build a trainable `.tflite` from a named architecture (TensorFlow lives here only).

The file converts with ``TFLITE_BUILTINS`` alone (no Flex delegate) and resource
variables, so the weights and optimizer state are inside it and it runs on
``ai_edge_litert`` in a process that never imports TensorFlow.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from fedtflite.models.architectures import ARCHITECTURES, init_weights
from fedtflite.models.specs import ModelSpec

__all__ = ["build_model", "write_model"]


def build_model(spec: ModelSpec) -> bytes:
    """Convert ``spec`` to a trainable `.tflite` flatbuffer.

    Parameters
    ----------
    spec : ModelSpec
        What to build.

    Returns
    -------
    bytes
        The model file.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from fedtflite.models.trainable import TrainableModel

    arch = ARCHITECTURES[spec.architecture]
    module = TrainableModel(
        arch,
        init_weights(arch, spec.seed, spec.weight_init),
        spec.optimizer,
        spec.train_batch,
        proximal=spec.proximal,
        scaffold=spec.scaffold,
    )
    signatures = module.signatures()
    with tempfile.TemporaryDirectory(prefix="fedtflite-build-") as tmp:
        # The custom gradients are already inlined into `train`; saving them
        # separately would trace them with the dynamic-batch `infer` shapes.
        options = tf.saved_model.SaveOptions(experimental_custom_gradients=False)
        tf.saved_model.save(module, tmp, signatures=signatures, options=options)
        converter = tf.lite.TFLiteConverter.from_saved_model(
            tmp, signature_keys=list(signatures)
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.experimental_enable_resource_variables = True
        return bytes(converter.convert())


def write_model(spec: ModelSpec, path: str | Path) -> Path:
    """Build ``spec`` and write it to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build_model(spec))
    return path
