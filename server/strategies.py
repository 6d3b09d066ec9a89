"""Flower's own strategies by name, with seeded sampling and cohort messages.

Every strategy is Flower's implementation (``flwr.serverapp.strategy``), except
SCAFFOLD, which Flower does not ship (:mod:`server.scaffold`, a ``FedAvg``
subclass). :class:`server.messaging.CohortSampling` is mixed in before it: it
decides which clients a round reaches and how their messages travel, never how
they are aggregated (see :mod:`server.messaging`, which also says what happens to
failed clients).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord
from flwr.serverapp import strategy as fl

from fedtflite.algorithms.sampling import PRE_AGGREGATED
from fedtflite.protocol import keys
from fedtflite.simulation.config import SimulationConfig
from server.messaging import CohortSampling, RoundStats
from server.scaffold import Scaffold

__all__ = ["RoundStats", "load_strategy_state", "make_strategy", "strategy_state"]


_CLASSES: dict[str, type[fl.FedAvg]] = {
    "fedavg": fl.FedAvg,
    "fedavgm": fl.FedAvgM,
    "fedprox": fl.FedProx,
    "fedadam": fl.FedAdam,
    "fedyogi": fl.FedYogi,
    "fedadagrad": fl.FedAdagrad,
    "fedmedian": fl.FedMedian,
    "fedtrimmedavg": fl.FedTrimmedAvg,
    "krum": fl.Krum,
    "qfedavg": fl.QFedAvg,
    "scaffold": Scaffold,
}


def _strategy_kwargs(c: SimulationConfig) -> dict[str, Any]:
    fedopt = {"eta": c.eta, "eta_l": c.eta_l, "tau": c.tau}
    adam_like = {**fedopt, "beta_1": c.beta_1, "beta_2": c.beta_2}
    kwargs: dict[str, dict[str, Any]] = {
        "fedavg": {},
        "fedavgm": {
            "server_learning_rate": c.server_learning_rate,
            "server_momentum": c.server_momentum,
        },
        "fedprox": {"proximal_mu": c.proximal_mu},
        "fedadam": adam_like,
        "fedyogi": adam_like,
        "fedadagrad": fedopt,
        "fedmedian": {},
        "fedtrimmedavg": {"beta": c.trim_beta},
        "krum": {"num_malicious_nodes": c.num_malicious_clients},
        "qfedavg": {
            "client_learning_rate": c.learning_rate,
            "q": c.q,
            "train_loss_key": keys.TRAIN_LOSS,
        },
        "scaffold": {
            "num_clients": c.num_clients,
            "server_learning_rate": c.server_learning_rate,
        },
    }
    return kwargs[c.strategy]


def make_strategy(config: SimulationConfig) -> Any:
    """Flower's strategy named by ``config.strategy``, with cohort sampling.

    Returns
    -------
    A subclass instance of both :class:`server.messaging.CohortSampling` and the
    Flower class (:class:`server.scaffold.Scaffold` for ``scaffold``).
    """
    base = _CLASSES[config.strategy]
    cls = type(f"Cohort{base.__name__}", (CohortSampling, base), {})
    strategy = cls(
        fraction_train=config.fraction_train,
        fraction_evaluate=config.fraction_evaluate,
        min_train_nodes=min(config.min_train_clients, config.num_clients),
        min_evaluate_nodes=min(config.min_evaluate_clients, config.num_clients),
        min_available_nodes=config.num_clients,
        weighted_by_key=keys.NUM_EXAMPLES,
        arrayrecord_key=keys.ARRAYS,
        configrecord_key=keys.CONFIG,
        **_strategy_kwargs(config),
    )
    strategy.seed = config.seed
    strategy.num_clients = config.num_clients
    strategy.cohort_size = config.cohort_size
    strategy.per_client = config.strategy not in PRE_AGGREGATED
    strategy.stats = {}
    return strategy


_STATE_ATTRIBUTES = ("current_arrays", "momentum_vector", "m_t", "v_t", "control")
"""Attributes that carry a strategy's state from one round to the next: FedAvgM's
``current_arrays`` and ``momentum_vector``, the FedOpt family's ``m_t`` and
``v_t`` (their ``current_arrays`` is reset every round), SCAFFOLD's ``control``.
The other strategies keep none beyond the global weights."""


def strategy_state(strategy: Any) -> dict[str, dict[str, np.ndarray]]:
    """The strategy's state as ``{attribute: {key: array}}`` (for a checkpoint).

    A list attribute is keyed by position (``"0"``, ``"1"``, ...); an attribute
    that is None (not set yet) is left out.
    """
    state: dict[str, dict[str, np.ndarray]] = {}
    for attr in _STATE_ATTRIBUTES:
        value = getattr(strategy, attr, None)
        if isinstance(value, ArrayRecord):
            state[attr] = {k: a.numpy() for k, a in value.items()}
        elif attr == "current_arrays":
            continue  # the FedOpt family's: a dict reset from the weights every round
        elif isinstance(value, dict):
            state[attr] = {k: np.asarray(a) for k, a in value.items()}
        elif isinstance(value, list):
            state[attr] = {str(i): np.asarray(a) for i, a in enumerate(value)}
    return state


def load_strategy_state(strategy: Any, state: dict[str, dict[str, np.ndarray]]) -> None:
    """Set the attributes :func:`strategy_state` saved, in their original types."""
    for attr, values in state.items():
        if attr not in _STATE_ATTRIBUTES or not hasattr(strategy, attr):
            raise ValueError(
                f"checkpoint holds strategy state {attr!r}, which "
                f"{type(strategy).__name__} does not have"
            )
        if attr == "momentum_vector":
            setattr(strategy, attr, [values[str(i)] for i in range(len(values))])
        elif attr in ("m_t", "v_t"):
            setattr(strategy, attr, dict(values))
        else:
            setattr(
                strategy,
                attr,
                ArrayRecord(array_dict={k: Array(v) for k, v in values.items()}),
            )
