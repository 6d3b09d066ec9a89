"""Build a trainable `.tflite` from a named architecture (TensorFlow lives here only).

The file converts with ``TFLITE_BUILTINS`` alone (no Flex delegate) and resource
variables, so the weights and optimizer state are inside it and it runs on
``ai_edge_litert`` in a process that never imports TensorFlow.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from fedtflite.errors import ConfigError
from fedtflite.models.architectures import ARCHITECTURES, init_weights
from fedtflite.models.optimizers import OPTIMIZERS, OptimizerSpec

__all__ = ["DEFAULT_STATIC_BATCH", "ModelSpec", "build_model", "write_model"]

DEFAULT_STATIC_BATCH = 32
"""Batch size of `train` for architectures that need a static one (the ``cnn``)."""


@dataclass(frozen=True)
class ModelSpec:
    """Everything that determines the bytes of a built model.

    Attributes
    ----------
    architecture : str
        A name in :data:`fedtflite.models.architectures.ARCHITECTURES`.
    optimizer : OptimizerSpec
        The optimizer baked into `train`.
    seed : int
        Seed of the initial weights; the same spec gives the same bytes.
    batch_size : int or None
        Static `train` batch (with a ``mask`` input) or None for a dynamic one.
        None on an architecture that needs a static batch means
        :data:`DEFAULT_STATIC_BATCH`.
    """

    architecture: str = "mlp"
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    seed: int = 0
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ConfigError(
                f"model {self.architecture!r} is not a known architecture; "
                f"valid: {', '.join(ARCHITECTURES)} (or a path to a .tflite file)"
            )
        if self.optimizer.name not in OPTIMIZERS:
            raise ConfigError(
                f"optimizer {self.optimizer.name!r} is not valid; valid: {', '.join(OPTIMIZERS)}"
            )
        lr = self.optimizer.learning_rate
        if not lr > 0:
            raise ConfigError(f"learning-rate must be > 0, got {lr}")
        if not 0 <= self.optimizer.momentum < 1:
            raise ConfigError(f"momentum must be in [0, 1), got {self.optimizer.momentum}")
        if self.batch_size is not None and not 1 <= self.batch_size <= 65536:
            raise ConfigError(f"batch-size must be in 1..65536, got {self.batch_size}")

    @property
    def train_batch(self) -> int | None:
        """The static batch of `train`, or None for a dynamic batch."""
        if self.batch_size is None and ARCHITECTURES[self.architecture].needs_static_batch:
            return DEFAULT_STATIC_BATCH
        return self.batch_size


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
        arch, init_weights(arch, spec.seed), spec.optimizer, spec.train_batch
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
