"""Flower's own strategies by name, with seeded sampling and cohort messages.

Every strategy is Flower's implementation (``flwr.serverapp.strategy``), except
SCAFFOLD, which Flower does not ship (:mod:`server.scaffold`, a ``FedAvg``
subclass). :class:`server.messaging.CohortSampling` is mixed in before it: it
decides which clients a round reaches and how their messages travel, never how
they are aggregated (see :mod:`server.messaging`, which also says what happens to
failed clients).
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord
from flwr.serverapp import strategy as fl

from fedtflite.protocol import keys
from fedtflite.simulation.config import SimulationConfig
from fedtflite.simulation.strategy_registry import StrategySpec, strategy_spec
from server.messaging import CohortSampling, RoundStats

__all__ = ["RoundStats", "load_strategy_state", "make_strategy", "strategy_state"]


def _flower_class(spec: StrategySpec) -> type[fl.FedAvg]:
    module, _, name = spec.flower_class.partition(":")
    cls: type[fl.FedAvg] = getattr(importlib.import_module(module), name)
    return cls


def make_strategy(config: SimulationConfig) -> Any:
    """The strategy named by ``config.strategy``, with cohort sampling.

    Returns
    -------
    A subclass instance of both :class:`server.messaging.CohortSampling` and the
    strategy's class (:data:`~fedtflite.simulation.strategy_registry.STRATEGIES`).
    """
    spec = strategy_spec(config.strategy)
    base = _flower_class(spec)
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
        **spec.kwargs(config),
    )
    strategy.seed = config.seed
    strategy.num_clients = config.num_clients
    strategy.clients_per_message = config.clients_per_message
    strategy.per_client = not spec.pre_aggregated
    strategy.stats = {}
    strategy.spec = spec
    return strategy


def strategy_state(strategy: Any) -> dict[str, dict[str, np.ndarray]]:
    """The strategy's state as ``{attribute: {key: array}}`` (for a checkpoint).

    The attributes are the strategy spec's ``state``: FedAvgM's
    ``current_arrays`` and ``momentum_vector``, the FedOpt family's ``m_t`` and
    ``v_t`` (their ``current_arrays`` is reset every round), SCAFFOLD's
    ``control``. A list attribute is keyed by position (``"0"``, ``"1"``, ...);
    an attribute that is None (not set yet) is left out.
    """
    state: dict[str, dict[str, np.ndarray]] = {}
    for attr in strategy.spec.state:
        value = getattr(strategy, attr, None)
        if isinstance(value, ArrayRecord):
            state[attr] = {k: a.numpy() for k, a in value.items()}
        elif isinstance(value, dict):
            state[attr] = {k: np.asarray(a) for k, a in value.items()}
        elif isinstance(value, list):
            state[attr] = {str(i): np.asarray(a) for i, a in enumerate(value)}
    return state


def load_strategy_state(strategy: Any, state: dict[str, dict[str, np.ndarray]]) -> None:
    """Set the attributes :func:`strategy_state` saved, in their original types."""
    for attr, values in state.items():
        if attr not in strategy.spec.state or not hasattr(strategy, attr):
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
