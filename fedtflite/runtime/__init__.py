"""The LiteRT client runtime; importing it never imports TensorFlow."""

from fedtflite.runtime.client_model import (
    PLAN_ROWS,
    ClientModel,
    EvalResult,
    FitResult,
    StagedWeights,
    TrainPlan,
    cross_entropy_and_accuracy,
    signature_table,
)
from fedtflite.runtime.contract import ModelContract, TensorInfo

__all__ = [
    "PLAN_ROWS",
    "ClientModel",
    "EvalResult",
    "FitResult",
    "ModelContract",
    "StagedWeights",
    "TensorInfo",
    "TrainPlan",
    "cross_entropy_and_accuracy",
    "signature_table",
]
