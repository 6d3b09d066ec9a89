"""Flower's own strategies, by name, with seeded client sampling and round statistics.

Every strategy is Flower's implementation (``flwr.serverapp.strategy``); the
:class:`SeededSampling` mixin changes only *which* clients a round reaches:

- Flower decides *how many* (``fraction-*``, ``min-*-clients``) and builds the
  messages; the mixin then picks that many simulated clients uniformly without
  replacement with ``np.random.default_rng([seed, round, phase])`` (Flower samples
  with the unseeded global ``random``) and addresses one message to each,
  adding the client id to its config. The Flower node that carries it is the
  client's node in a fixed order, so the result depends on the seed only.
- It counts, per round, the clients that replied and failed and the bytes sent.

Failed clients: an error reply (an exception in the ClientApp, e.g. a
non-finite loss or weights) is left out of the aggregate by Flower's
``aggregate_train``; the round aggregates the clients that succeeded, and a
round in which all failed keeps the previous global weights. Both are counted
in ``clients_failed`` of the history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp import strategy as fl

from fedtflite.errors import ConfigError
from fedtflite.simulation import records
from fedtflite.simulation.config import SimulationConfig

__all__ = ["RoundStats", "SeededSampling", "make_strategy"]

_TRAIN, _EVALUATE = 0, 1


@dataclass
class RoundStats:
    """What the strategy saw in one round (filled as the round runs)."""

    clients_sampled: int = 0
    clients_ok: int = 0
    clients_failed: int = 0
    bytes_down: int = 0
    bytes_up: int = 0
    train_metrics: dict[str, float] = field(default_factory=dict)
    eval_clients: int = 0
    eval_failed: int = 0
    eval_metrics: dict[str, float] = field(default_factory=dict)


def _arrays_bytes(content: RecordDict) -> int:
    arrays = content.get(records.ARRAYS)
    return int(arrays.count_bytes()) if isinstance(arrays, ArrayRecord) else 0


def _scalars(metrics: MetricRecord | None) -> dict[str, float]:
    return {
        k: float(v) for k, v in (metrics or {}).items() if isinstance(v, int | float)
    }


def _in_client_order(replies: Iterable[Message]) -> list[Message]:
    # Replies arrive in completion order; a float sum in that order would change
    # the aggregate's last bits from run to run. Node ids ascend with client ids.
    return sorted(replies, key=lambda m: m.metadata.src_node_id)


class SeededSampling:
    """Mixin placed before a Flower strategy class (see the module docstring)."""

    seed: int
    num_clients: int
    stats: dict[int, RoundStats]

    def _retarget(
        self, messages: Iterable[Message], server_round: int, grid: Grid, phase: int
    ) -> list[Message]:
        template = list(messages)
        if not template:
            return []
        nodes = sorted(grid.get_node_ids())
        if len(nodes) != self.num_clients:
            raise ConfigError(
                f"num-clients = {self.num_clients} but the federation has {len(nodes)} "
                "nodes (num-supernodes); set them equal"
            )
        rng = np.random.default_rng([self.seed, server_round, phase])
        chosen = np.sort(rng.choice(len(nodes), size=len(template), replace=False))
        content = template[0].content
        out = []
        for cid in chosen.tolist():
            config = ConfigRecord(dict(content.config_records[records.CONFIG]))
            config[records.CLIENT_ID] = cid
            rd = RecordDict({k: v for k, v in content.items() if k != records.CONFIG})
            rd[records.CONFIG] = config
            out.append(
                Message(
                    content=rd,
                    message_type=template[0].metadata.message_type,
                    dst_node_id=nodes[cid],
                )
            )
        return out

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Flower's configure_train, sent to seeded-sampled clients."""
        msgs = super().configure_train(server_round, arrays, config, grid)  # type: ignore[misc]
        out = self._retarget(msgs, server_round, grid, _TRAIN)
        s = self.stats.setdefault(server_round, RoundStats())
        s.clients_sampled = len(out)
        s.bytes_down = sum(_arrays_bytes(m.content) for m in out)
        return out

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Flower's configure_evaluate, sent to seeded-sampled clients."""
        msgs = super().configure_evaluate(server_round, arrays, config, grid)  # type: ignore[misc]
        out = self._retarget(msgs, server_round, grid, _EVALUATE)
        s = self.stats.setdefault(server_round, RoundStats())
        s.eval_clients = len(out)
        s.bytes_down += sum(_arrays_bytes(m.content) for m in out)
        return out

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Flower's aggregate_train, counting successes, failures and bytes."""
        replies = _in_client_order(replies)
        ok = [m for m in replies if not m.has_error()]
        s = self.stats.setdefault(server_round, RoundStats())
        s.clients_ok, s.clients_failed = len(ok), len(replies) - len(ok)
        s.bytes_up = sum(_arrays_bytes(m.content) for m in ok)
        arrays, metrics = super().aggregate_train(server_round, replies)  # type: ignore[misc]
        s.train_metrics = _scalars(metrics)
        return arrays, metrics

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Flower's aggregate_evaluate, counting failures."""
        replies = _in_client_order(replies)
        s = self.stats.setdefault(server_round, RoundStats())
        s.eval_failed = sum(m.has_error() for m in replies)
        metrics: MetricRecord | None
        metrics = super().aggregate_evaluate(server_round, replies)  # type: ignore[misc]
        s.eval_metrics = _scalars(metrics)
        return metrics


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
            "train_loss_key": records.TRAIN_LOSS,
        },
    }
    return kwargs[c.strategy]


def make_strategy(config: SimulationConfig) -> Any:
    """Flower's strategy named by ``config.strategy``, with seeded sampling.

    Returns
    -------
    A subclass instance of both :class:`SeededSampling` and the Flower class.
    """
    base = _CLASSES[config.strategy]
    cls = type(f"Seeded{base.__name__}", (SeededSampling, base), {})
    strategy = cls(
        fraction_train=config.fraction_train,
        fraction_evaluate=config.fraction_evaluate,
        min_train_nodes=min(config.min_train_clients, config.num_clients),
        min_evaluate_nodes=min(config.min_evaluate_clients, config.num_clients),
        min_available_nodes=config.num_clients,
        weighted_by_key=records.NUM_EXAMPLES,
        arrayrecord_key=records.ARRAYS,
        configrecord_key=records.CONFIG,
        **_strategy_kwargs(config),
    )
    strategy.seed = config.seed
    strategy.num_clients = config.num_clients
    strategy.stats = {}
    return strategy
