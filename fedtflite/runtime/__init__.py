"""The LiteRT client runtime; importing it never imports TensorFlow."""

from fedtflite.runtime.client_model import (
    ClientModel,
    EvalResult,
    FitResult,
    cross_entropy_and_accuracy,
    signature_table,
)
from fedtflite.runtime.contract import ModelContract, TensorInfo

__all__ = [
    "ClientModel",
    "EvalResult",
    "FitResult",
    "ModelContract",
    "TensorInfo",
    "cross_entropy_and_accuracy",
    "signature_table",
]
