"""Centralized training through a model's LiteRT `train` signature.

The baseline every federated run is compared with: one client holding all 60k
training images, evaluated on the 10k test images after each epoch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedtflite.data import FashionMnist
from fedtflite.runtime import ClientModel, EvalResult, FitResult

__all__ = ["EpochResult", "train_centralized"]


@dataclass(frozen=True)
class EpochResult:
    """One epoch: its training and the test evaluation after it."""

    epoch: int
    fit: FitResult
    test: EvalResult


def train_centralized(
    model: ClientModel,
    data: FashionMnist,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    learning_rate: float | None = None,
) -> list[EpochResult]:
    """Train ``model`` on all training images, evaluating after every epoch.

    Parameters
    ----------
    model : ClientModel
        The model; its weights are restored from its own `parameters` first
        (a fresh interpreter's weights are restored before training, always).
    data : FashionMnist
        Train and test splits.
    epochs, batch_size, seed : int
        Passes, batch size and the seed of the shuffling.
    learning_rate : float, optional
        Set through ``set_learning_rate`` when given.

    Returns
    -------
    list of EpochResult
    """
    model.restore(model.parameters())
    if learning_rate is not None:
        model.set_learning_rate(learning_rate)
    rng = np.random.default_rng(seed)
    results = []
    for epoch in range(1, epochs + 1):
        fit = model.fit(
            data.train.images,
            data.train.labels,
            epochs=1,
            batch_size=batch_size,
            rng=rng,
        )
        model.parameters(check_finite=True)
        test = model.evaluate(data.test.images, data.test.labels)
        results.append(EpochResult(epoch, fit, test))
    return results
