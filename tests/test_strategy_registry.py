"""The strategy registry: every strategy resolves, and every place reads it."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from flwr.app import Array, ArrayRecord, ConfigRecord
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


class _Grid:
    """Flower's sampling sees this many nodes (one per simulated client)."""

    def __init__(self, n: int):
        self.n = n

    def get_node_ids(self) -> list[int]:
        return list(range(self.n))


@pytest.fixture
def flower_task(monkeypatch: pytest.MonkeyPatch) -> None:
    """Messages need Flower's task identity, which a running app would set."""
    from flwr.supercore.task_identity import TaskIdentity

    for attr in ("_run_id", "_task_id", "_node_id"):
        monkeypatch.setattr(TaskIdentity, attr, 1, raising=False)


@pytest.mark.parametrize("name", NAMES)
def test_flower_samples_as_many_clients_but_builds_one_message(
    name: str, flower_task: None
) -> None:
    # Every strategy's configure_train goes through _construct_messages: the
    # sample's size (fraction-train of the clients) is Flower's, and one
    # message, with the round's content, stands for all of them.
    config = config_from_mapping(
        {"strategy": name, "num-clients": 40, "fraction-train": 0.25}
    )
    strategy = make_strategy(config)
    arrays = ArrayRecord(array_dict={"a0": Array(np.ones(3, np.float32))})
    messages = list(
        FedAvg.configure_train(
            strategy, 1, arrays, ConfigRecord({"lr": 0.1}), _Grid(40)
        )
    )
    assert len(messages) == 10
    assert all(m is messages[0] for m in messages)
    assert messages[0].content["arrays"]["a0"].numpy().tolist() == [1.0, 1.0, 1.0]
    assert messages[0].content["config"]["server-round"] == 1


def test_aggregates_come_back_in_the_models_dtypes() -> None:
    from server.messaging import _in_dtypes

    dtypes = {"a0": np.dtype(np.float32), "a1": np.dtype(np.float32)}
    kept = Array(np.arange(3, dtype=np.float32))
    fedopt = ArrayRecord(
        array_dict={"a0": kept, "a1": Array(np.array([0.1, 0.2], np.float64))}
    )
    out = _in_dtypes(fedopt, dtypes)
    assert out["a0"].data == kept.data and out["a0"].dtype == "float32"
    assert out["a1"].numpy().dtype == np.float32
    assert out["a1"].numpy().tolist() == np.array([0.1, 0.2], np.float32).tolist()
    same = ArrayRecord(array_dict={"a0": kept})
    assert _in_dtypes(same, dtypes) is same
