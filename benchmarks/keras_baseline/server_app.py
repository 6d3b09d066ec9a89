"""The baseline's ServerApp: Flower's FedAvg with a central Keras evaluation.

Initial weights are fedtflite's seeded ``mlp`` weights, so both start equal. Each
round's time is the time between two central evaluations (round 0 is the initial
evaluation), as fedtflite measures it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from benchmarks.keras_baseline.client_app import build_model
from fedtflite.data import load_fashion_mnist
from fedtflite.models.architectures import ARCHITECTURES, init_weights

__all__ = ["RoundRow", "ServerConfig", "make_server_app"]

_EVAL_BATCH = 1024  # fedtflite's central evaluation chunk


@dataclass(frozen=True)
class ServerConfig:
    """The federated run.

    Attributes
    ----------
    num_clients : int
        Simulated clients (Flower SuperNodes).
    clients_per_round : int
        Clients sampled for training each round (and for evaluation, when
        ``federated_evaluation``).
    num_rounds : int
        Federated rounds.
    seed : int
        Seed of fedtflite's initial ``mlp`` weights.
    federated_evaluation : bool
        Also evaluate on the sampled clients' local test splits each round, as
        fedtflite does; False skips it (``fraction_evaluate=0``).
    """

    num_clients: int
    clients_per_round: int
    num_rounds: int
    seed: int
    federated_evaluation: bool = False


@dataclass(frozen=True)
class RoundRow:
    """One central evaluation.

    Attributes
    ----------
    round : int
        0 = the initial weights.
    seconds : float
        Since the previous central evaluation (round 0: since the ServerApp began).
    test_loss, test_accuracy : float
        On the 10 000 Fashion-MNIST test images.
    """

    round: int
    seconds: float
    test_loss: float
    test_accuracy: float


def make_server_app(
    config: ServerConfig, on_round: Callable[[RoundRow], None]
) -> ServerApp:
    """A ServerApp running FedAvg as ``config`` says; ``on_round`` gets every row."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        clock = time.perf_counter()
        test = load_fashion_mnist().test
        model = build_model(learning_rate=0.0)  # only evaluates
        fraction = config.clients_per_round / config.num_clients

        def central_evaluation(server_round: int, arrays: ArrayRecord) -> MetricRecord:
            nonlocal clock
            model.set_weights(arrays.to_numpy_ndarrays())
            loss, accuracy = model.evaluate(
                test.images, test.labels, batch_size=_EVAL_BATCH, verbose=0
            )
            now = time.perf_counter()
            on_round(RoundRow(server_round, now - clock, float(loss), float(accuracy)))
            clock = now
            return MetricRecord({"test-loss": loss, "test-accuracy": accuracy})

        strategy = FedAvg(
            fraction_train=fraction,
            fraction_evaluate=fraction if config.federated_evaluation else 0.0,
            # int(n * k / n) may round down to k - 1; the minimum keeps k.
            min_train_nodes=config.clients_per_round,
            min_evaluate_nodes=config.clients_per_round,
            min_available_nodes=config.num_clients,
        )
        initial = init_weights(ARCHITECTURES["mlp"], config.seed)
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord(initial),
            num_rounds=config.num_rounds,
            evaluate_fn=central_evaluation,
        )

    return app
