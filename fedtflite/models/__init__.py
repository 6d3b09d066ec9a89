"""Trainable client models: Keras models in, builtins-only `.tflite` out.

:func:`from_keras` converts any supported Keras model (TensorFlow is imported
when it is called, not when this package is).
"""

from fedtflite.models.build import from_keras

__all__ = ["from_keras"]
