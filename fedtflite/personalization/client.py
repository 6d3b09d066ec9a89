"""One client's personalization: the global model, then fine-tuned on its own data.

TensorFlow's on-device training guide ships a pre-trained model and fine-tunes it
on each user's phone; here the global model of a federated run is what ships. A
client restores it (optimizer state zeroed), evaluates it on its local test
split, trains ``epochs`` local epochs on its local training split through the
model's own ``train`` signature, and evaluates again. Both the simulation's
workers and ``fedtflite personalize`` run this function; it imports no Flower
and no TensorFlow.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedtflite.runtime import ClientModel

__all__ = [
    "PERSONALIZE_STREAM",
    "PersonalResult",
    "choose_clients",
    "client_rng",
    "personalize_client",
]

PERSONALIZE_STREAM = 0x9E50
"""Tag of the personalization streams: client sampling ``[seed, tag]`` and each
client's shuffling ``[seed, tag, client]`` (distinct from the rounds' streams)."""


@dataclass(frozen=True)
class PersonalResult:
    """A client's local test metrics before and after fine-tuning.

    Attributes
    ----------
    client_id : int
    num_examples : int
        Local test examples both accuracies are measured on (0: none, NaN
        metrics).
    acc_global, loss_global : float
        Of the global model.
    acc_personal, loss_personal : float
        After fine-tuning.
    seconds : float
        On-device seconds: restore, two evaluations, training.
    """

    client_id: int
    num_examples: int
    acc_global: float
    acc_personal: float
    loss_global: float
    loss_personal: float
    seconds: float = 0.0


def client_rng(seed: int, client_id: int) -> np.random.Generator:
    """The shuffling (and dropout) stream of ``client_id``'s fine-tuning."""
    return np.random.default_rng([seed, PERSONALIZE_STREAM, client_id])


def personalize_client(
    model: ClientModel,
    client_id: int,
    global_weights: Sequence[np.ndarray],
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float | None,
    seed: int,
) -> PersonalResult:
    """Evaluate the global weights, fine-tune ``epochs`` epochs, evaluate again.

    Parameters
    ----------
    model : ClientModel
        The run's model (its state is overwritten by ``restore``).
    client_id : int
    global_weights : sequence of np.ndarray
        What the client restores.
    train, test : tuple of np.ndarray
        ``(images, labels)`` of the client's local training and test splits.
    epochs, batch_size : int
        Fine-tuning passes and batch size.
    learning_rate : float or None
        Set through ``set_learning_rate``; None leaves the model's own rate.
    seed : int
        The run's seed (:func:`client_rng`).

    Raises
    ------
    FedTfliteError
        Data that do not fit, a non-finite loss.
    """
    start = time.perf_counter()
    model.restore(global_weights)
    if learning_rate is not None and model.supports_learning_rate:
        model.set_learning_rate(learning_rate)
    if "set_proximal_mu" in model.contract.extra_signatures:
        model.set_proximal_mu(0.0)  # plain local training: no pull to the global
    before = model.evaluate(*test)
    model.fit(
        *train,
        epochs=epochs,
        batch_size=batch_size,
        rng=client_rng(seed, client_id),
    )
    after = model.evaluate(*test)
    return PersonalResult(
        client_id=client_id,
        num_examples=before.num_examples,
        acc_global=before.accuracy,
        acc_personal=after.accuracy,
        loss_global=before.loss,
        loss_personal=after.loss,
        seconds=time.perf_counter() - start,
    )


def choose_clients(num_clients: int, count: int, seed: int) -> list[int]:
    """The ``count`` clients that personalize (0: all), sorted; drawn with ``seed``."""
    if count <= 0 or count >= num_clients:
        return list(range(num_clients))
    rng = np.random.default_rng([seed, PERSONALIZE_STREAM])
    return sorted(int(c) for c in rng.choice(num_clients, size=count, replace=False))
