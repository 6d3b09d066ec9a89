"""The strategy registry: every strategy resolves, and every place reads it."""

from __future__ import annotations

import importlib

import pytest
from flwr.serverapp.strategy import FedAvg

from fedtflite.errors import ConfigError
from fedtflite.simulation import config_from_mapping
from fedtflite.simulation.strategy_registry import STRATEGIES, strategy_spec
from server.strategies import make_strategy

NAMES = [
    "fedavg",
    "fedavgm",
    "fedprox",
    "fedadam",
    "fedyogi",
    "fedadagrad",
    "fedmedian",
    "fedtrimmedavg",
    "krum",
    "qfedavg",
    "scaffold",
]


def test_the_registry_lists_every_strategy_in_order() -> None:
    assert list(STRATEGIES) == NAMES
    assert all(spec.name == name for name, spec in STRATEGIES.items())


@pytest.mark.parametrize("name", NAMES)
def test_every_spec_builds_its_strategy(name: str) -> None:
    spec = strategy_spec(name)
    module, _, cls = spec.flower_class.partition(":")
    base = getattr(importlib.import_module(module), cls)
    config = config_from_mapping({"strategy": name, "num-clients": 6})

    strategy = make_strategy(config)

    assert isinstance(strategy, base) and isinstance(strategy, FedAvg)
    assert strategy.per_client == (not spec.pre_aggregated)
    for kwarg, attr in spec.config_kwargs.items():
        assert kwarg in spec.kwargs(config)
        assert spec.kwargs(config)[kwarg] == getattr(config, attr)
    for attr in spec.state:
        assert hasattr(strategy, attr), f"{name} has no state attribute {attr}"


@pytest.mark.parametrize("name", NAMES)
def test_device_needs_come_in_pairs(name: str) -> None:
    spec = strategy_spec(name)

    assert (spec.build_flag is None) == (spec.device_signature is None)
    assert spec.build_flag in (None, "proximal", "scaffold")


def test_what_each_on_device_strategy_needs() -> None:
    assert strategy_spec("fedprox").device_signature == "set_proximal_mu"
    assert strategy_spec("scaffold").device_signature == "set_correction"
    assert strategy_spec("scaffold").needs_learning_rate
    assert strategy_spec("scaffold").client_state
    assert not strategy_spec("fedprox").client_state


def test_pre_aggregated_are_the_weighted_means() -> None:
    pre = {n for n, s in STRATEGIES.items() if s.pre_aggregated}

    assert pre == {"fedavg", "fedavgm", "fedprox", "fedadam", "fedyogi", "fedadagrad"}


def test_config_accepts_exactly_the_registry() -> None:
    with pytest.raises(ConfigError, match=r"strategy.*expected one of fedavg, "):
        config_from_mapping({"strategy": "fedsgd"})
