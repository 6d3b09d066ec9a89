"""Personalization of a finished run in one process (``fedtflite personalize``).

The same per-client work as the simulation's workers do after the last round
(:func:`~fedtflite.personalization.client.personalize_client` on the clients'
own splits, the same seeded streams), run client after client on one
interpreter, without Ray or Flower: for the same clients, epochs and weights it
writes the same ``personalization.csv``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fedtflite.data import split_local_test, to_float
from fedtflite.personalization.client import PersonalResult, personalize_client
from fedtflite.runtime import ClientModel

__all__ = ["personalize_offline"]


def personalize_offline(
    model: ClientModel,
    weights: Sequence[np.ndarray],
    parts: Sequence[np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    clients: Sequence[int],
    *,
    client_test_fraction: float,
    seed: int,
    epochs: int,
    batch_size: int,
    learning_rate: float,
) -> list[PersonalResult]:
    """Personalize ``clients`` of a partition, one after another.

    Parameters
    ----------
    model : ClientModel
        The run's model.
    weights : sequence of np.ndarray
        The global weights every client restores.
    parts : sequence of np.ndarray
        The run's partition: each client's indices into ``images``.
    images, labels : np.ndarray
        The training set as stored (uint8 ``[60000, 28, 28]``) and its labels.
    clients : sequence of int
    client_test_fraction, seed, epochs, batch_size, learning_rate
        The run's settings (``epochs``: the fine-tuning's).

    Raises
    ------
    FedTfliteError
        A client whose data do not fit or whose training diverges.
    """
    results = []
    for cid in clients:
        train, test = split_local_test(
            parts[cid], client_test_fraction, seed, client_id=cid
        )
        results.append(
            personalize_client(
                model,
                cid,
                weights,
                (to_float(images[train]), labels[train]),
                (to_float(images[test]), labels[test]),
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=learning_rate,
                seed=seed,
            )
        )
    return results
