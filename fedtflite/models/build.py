"""Build a trainable `.tflite` from a Keras model (TensorFlow lives here only).

:func:`from_keras` is the one builder: a user's Keras model and the named
architectures (:mod:`fedtflite.models.zoo`, through :func:`build_model`) take
the same path. The file converts with ``TFLITE_BUILTINS`` alone (no Flex
delegate) and resource variables, so the weights and optimizer state are inside
it and it runs on ``ai_edge_litert`` in a process that never imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fedtflite.models.specs import (
    DEFAULT_STATIC_BATCH,
    ModelSpec,
    OptimizerSpec,
    check_batch_size,
)

__all__ = ["build_model", "from_keras", "quiet_stderr", "write_model"]


def from_keras(
    model_or_path: Any,
    *,
    batch_size: int | None = None,
    proximal: bool = False,
    scaffold: bool = False,
    optimizer: OptimizerSpec | None = None,
) -> bytes:
    """Convert a Keras model to a trainable, builtins-only client `.tflite`.

    The file's signatures are the client contract's
    (:mod:`fedtflite.models.trainable`): ``train`` is one step of the model's
    compiled loss and optimizer (equal to Keras' ``train_on_batch`` on the same
    batch), ``infer`` its forward pass, ``parameters``/``restore`` its weights
    ``a0, a1, ...`` in ``model.trainable_weights`` order (then batch
    normalization's moving statistics, in ``model.non_trainable_weights``
    order), plus ``set_learning_rate``.

    Parameters
    ----------
    model_or_path : keras.Model, str or Path
        A ``Sequential`` or functional model that is a chain of supported
        layers (:data:`fedtflite.models.keras_layers.SUPPORTED_LAYERS`), with
        input ``(28, 28)``, ``(28, 28, 1)`` or ``(784,)`` and 10 outputs,
        compiled with (sparse) categorical cross-entropy and SGD, Adam, AdamW or
        RMSprop; or the path of one saved with ``model.save``.
    batch_size : int, optional
        A fixed `train` batch with a ``mask`` input. Default: 32 for models
        with spatial or batch-normalization layers, else a dynamic batch.
    proximal : bool
        FedProx's term and a ``set_proximal_mu`` signature.
    scaffold : bool
        SCAFFOLD's correction and a ``set_correction`` signature.
    optimizer : OptimizerSpec, optional
        Use this instead of the compiled optimizer.

    Returns
    -------
    bytes
        The model file.

    Raises
    ------
    KerasModelError
        An unsupported layer, graph, loss, optimizer setting or shape (one line
        naming it and what is supported).
    ModelFileError
        A path Keras cannot load.
    ConfigError
        A batch size outside 1..65536.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from fedtflite.models.keras_reader import load_keras, read_keras

    model, source = load_keras(model_or_path)
    read = read_keras(model, source, optimizer=optimizer)
    check_batch_size(batch_size)
    if batch_size is None and read.network.needs_static_batch:
        batch_size = DEFAULT_STATIC_BATCH
    from fedtflite.models.trainable import TrainableModel

    module = TrainableModel(
        read.network,
        list(read.weights),
        read.optimizer,
        batch_size,
        proximal=proximal,
        scaffold=scaffold,
    )
    return _convert(module)


class _SavedWithoutCustomGradients(logging.Filter):
    """Drops TensorFlow's warning that a function saved without its custom
    gradients cannot be differentiated: :func:`_convert` saves them so on
    purpose, and the converter never differentiates."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "with ops with unsaved custom gradients" not in record.getMessage()


def _convert(module: Any) -> bytes:
    import tensorflow as tf

    # TensorFlow's saved_model loader logs through absl's Python logger.
    absl_logger = logging.getLogger("absl")
    if not any(
        isinstance(f, _SavedWithoutCustomGradients) for f in absl_logger.filters
    ):
        absl_logger.addFilter(_SavedWithoutCustomGradients())
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


def build_model(spec: ModelSpec) -> bytes:
    """Convert the named architecture ``spec`` describes to a `.tflite`.

    Its Keras definition (:func:`fedtflite.models.zoo.keras_definition`) gets
    the seeded initial weights and the spec's optimizer, then goes through
    :func:`from_keras`.

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
    from fedtflite.models.architectures import ARCHITECTURES, init_weights
    from fedtflite.models.zoo import keras_definition

    model = keras_definition(spec.architecture)
    model.set_weights(
        init_weights(ARCHITECTURES[spec.architecture], spec.seed, spec.weight_init)
    )
    return from_keras(
        model,
        batch_size=spec.train_batch,
        proximal=spec.proximal,
        scaffold=spec.scaffold,
        optimizer=spec.optimizer,
    )


def write_model(spec: ModelSpec, path: str | Path) -> Path:
    """Build ``spec`` and write it to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(build_model(spec))
    return path


@contextlib.contextmanager
def quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2 and Python warnings for the duration.

    TensorFlow's C++ start-up lines (oneDNN, CUDA probing) ignore
    ``TF_CPP_MIN_LOG_LEVEL`` and the converter logs expected warnings; a command
    that builds a model and may then fail must still print one line. The CLI
    wraps its builds in this; the error line is printed after it ends.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
