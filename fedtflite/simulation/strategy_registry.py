"""Every strategy fedtflite runs, one frozen spec each: the one place that says
which Flower class it is, how the config reaches it, whether its replies may be
pre-aggregated, what it needs on the device and what it checkpoints.

The config validation, the model build, the device check, the ServerApp's
strategy factory, the cohort messages and the checkpoint all look it up here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from fedtflite.protocol import keys

if TYPE_CHECKING:
    from fedtflite.simulation.config import SimulationConfig

__all__ = ["STRATEGIES", "StrategySpec", "strategy_spec"]


@dataclass(frozen=True)
class StrategySpec:
    """What fedtflite must know about one strategy.

    Attributes
    ----------
    name : str
        The config's ``strategy`` value.
    flower_class : str
        ``module:Class`` of the strategy (a Flower class, or SCAFFOLD's
        ``FedAvg`` subclass in ``server/``); resolved by the ServerApp.
    config_kwargs : mapping of str to str
        Constructor keyword -> :class:`SimulationConfig` attribute it takes.
    fixed_kwargs : mapping of str to Any
        Constructor keywords with fixed values.
    pre_aggregated : bool
        Its ``aggregate_train`` is Flower's example-weighted mean of the replies
        (FedAvgM and the FedOpt family then apply a server optimizer to it), so a
        message's weighted mean with its summed weight aggregates exactly like
        its clients' own replies.
    build_flag : str or None
        ``proximal`` or ``scaffold``: the model build option (``ModelSpec``
        field, ``fedtflite build --<flag>``) that adds what runs on the device.
    device_signature : str or None
        The signature the model then has (``set_proximal_mu``,
        ``set_correction``).
    needs_learning_rate : bool
        The client needs the model's learning rate (``set_learning_rate``).
    state : tuple of str
        Strategy attributes carried from one round to the next, saved in the
        checkpoint.
    client_state : bool
        Clients keep state between rounds in the run's ``client_state/``.
    """

    name: str
    flower_class: str
    config_kwargs: Mapping[str, str] = field(default_factory=dict)
    fixed_kwargs: Mapping[str, Any] = field(default_factory=dict)
    pre_aggregated: bool = False
    build_flag: str | None = None
    device_signature: str | None = None
    needs_learning_rate: bool = False
    state: tuple[str, ...] = ()
    client_state: bool = False

    def kwargs(self, config: SimulationConfig) -> dict[str, Any]:
        """The constructor keywords specific to this strategy."""
        values = {k: getattr(config, attr) for k, attr in self.config_kwargs.items()}
        return {**values, **self.fixed_kwargs}


def _flower(name: str) -> str:
    return f"flwr.serverapp.strategy:{name}"


_FEDOPT = {"eta": "eta", "eta_l": "eta_l", "tau": "tau"}
_ADAM_LIKE = {**_FEDOPT, "beta_1": "beta_1", "beta_2": "beta_2"}

STRATEGIES: Mapping[str, StrategySpec] = MappingProxyType(
    {
        s.name: s
        for s in (
            StrategySpec("fedavg", _flower("FedAvg"), pre_aggregated=True),
            StrategySpec(
                "fedavgm",
                _flower("FedAvgM"),
                {
                    "server_learning_rate": "server_learning_rate",
                    "server_momentum": "server_momentum",
                },
                pre_aggregated=True,
                state=("current_arrays", "momentum_vector"),
            ),
            StrategySpec(
                "fedprox",
                _flower("FedProx"),
                {"proximal_mu": "proximal_mu"},
                pre_aggregated=True,
                build_flag="proximal",
                device_signature="set_proximal_mu",
            ),
            StrategySpec(
                "fedadam",
                _flower("FedAdam"),
                _ADAM_LIKE,
                pre_aggregated=True,
                state=("m_t", "v_t"),
            ),
            StrategySpec(
                "fedyogi",
                _flower("FedYogi"),
                _ADAM_LIKE,
                pre_aggregated=True,
                state=("m_t", "v_t"),
            ),
            StrategySpec(
                "fedadagrad",
                _flower("FedAdagrad"),
                _FEDOPT,
                pre_aggregated=True,
                state=("m_t", "v_t"),
            ),
            StrategySpec("fedmedian", _flower("FedMedian")),
            StrategySpec(
                "fedtrimmedavg", _flower("FedTrimmedAvg"), {"beta": "trim_beta"}
            ),
            StrategySpec(
                "krum",
                _flower("Krum"),
                {"num_malicious_nodes": "num_malicious_clients"},
            ),
            StrategySpec(
                "qfedavg",
                _flower("QFedAvg"),
                {"client_learning_rate": "learning_rate", "q": "q"},
                {"train_loss_key": keys.TRAIN_LOSS},
                state=("current_arrays",),
            ),
            StrategySpec(
                "scaffold",
                "server.scaffold:Scaffold",
                {
                    "num_clients": "num_clients",
                    "server_learning_rate": "server_learning_rate",
                },
                build_flag="scaffold",
                device_signature="set_correction",
                needs_learning_rate=True,
                state=("current_arrays", "control"),
                client_state=True,
            ),
        )
    }
)
"""Every strategy by name: Flower's own (``flwr.serverapp.strategy``), plus
SCAFFOLD, which Flower does not ship."""


def strategy_spec(name: str) -> StrategySpec:
    """The spec of strategy ``name`` (validated by the config already)."""
    return STRATEGIES[name]
