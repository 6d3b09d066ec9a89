"""The simulation's configuration: one frozen dataclass, read once at the entry point.

Keys are Flower's kebab-case (``num-clients``); the TOML file, ``--set k=v``
overrides, ``flwr run --run-config`` and ``context.run_config`` all use them.
Every value is checked when the config is built, before Ray starts: the
partition's settings by :class:`~fedtflite.data.partition.PartitionSpec`, the
model's by :class:`~fedtflite.models.specs.ModelSpec`, the rest here. A bad one
raises :class:`~fedtflite.errors.ConfigError` in one style,
``<key> = <value> is not valid: expected <what is valid>``
(:func:`~fedtflite.errors.invalid_value`).
"""

from __future__ import annotations

import difflib
import json
import math
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from fedtflite.data.partition import (
    PARTITION_KINDS,
    PartitionSpec,
    check_client_test_fraction,
)
from fedtflite.devices.availability import parse_availability
from fedtflite.devices.profiles import parse_devices
from fedtflite.devices.rounds import STRAGGLER_POLICIES
from fedtflite.errors import ConfigError, invalid_value
from fedtflite.models.architectures import ARCHITECTURES
from fedtflite.models.specs import (
    DEFAULT_LEARNING_RATE,
    ModelSpec,
    OptimizerSpec,
    check_batch_size,
)
from fedtflite.simulation.strategy_registry import STRATEGIES

__all__ = [
    "PARTITIONERS",
    "STRATEGIES",
    "SimulationConfig",
    "config_from_mapping",
    "config_to_toml",
    "load_config",
    "load_run_config",
    "parse_overrides",
    "upgrade_run_config",
]

PARTITIONERS = PARTITION_KINDS


@dataclass(frozen=True)
class SimulationConfig:
    """Every setting of a simulation (kebab-case key in brackets).

    Attributes
    ----------
    num_clients : int
        Simulated clients (``num-clients``); each holds one partition.
    num_rounds : int
        Federated rounds (``num-rounds``).
    fraction_train, fraction_evaluate : float
        Fraction of clients sampled per round for training / federated
        evaluation (``fraction-train``, ``fraction-evaluate``); 0 disables.
    evaluate_every : int
        Centralized evaluation on the 10k test images every this many rounds
        (``evaluate-every``), and always at round 0 and after the last round;
        rounds in between record NaN test metrics. Default 1: every round.
    min_train_clients, min_evaluate_clients : int
        Lower bounds on the sample (Flower's ``min_train_nodes`` ...).
    local_epochs, batch_size : int
        Local training (``local-epochs``, ``batch-size``).
    learning_rate : float
        Client learning rate (``learning-rate``): baked into built models and
        set through ``set_learning_rate`` where a model exposes it.
    model : str
        A named architecture (``mlp``, ``cnn``, ``2nn``, ``fedavg-cnn``), a path
        to any valid client ``.tflite``, or a path to a compiled Keras model
        (``.keras``: built once with its own loss and optimizer, cached by
        content hash) (``model``).
    optimizer, momentum, weight_decay
        Client optimizer of the named architectures (``optimizer``: sgd | adam).
    weight_init : str
        Initial weights of the named architectures (``weight-init``): ``glorot``
        (Keras' defaults) or ``torch`` (PyTorch's, as NIID-Bench's models start);
        seeded with ``seed``. See :func:`fedtflite.models.architectures.init_weights`.
    partitioner : str
        iid | dirichlet | pathological | shard | quantity (flwr-datasets'
        partitioners) | niid-bench-iid | niid-bench-labeldir | niid-bench-label
        (NIID-Bench's own, index for index) (``partitioner``).
    alpha : float
        Dirichlet concentration for ``dirichlet`` and ``quantity`` (``alpha``).
    classes_per_client : int
        ``pathological``: classes per client, NIID-Bench's #C=k.
    shards_per_client : int
        ``shard``: shards per client.
    min_partition_size : int
        ``dirichlet``: resample until every client has at least this many.
    client_test_fraction : float
        Share of each client's examples kept as its local test split.
    personalize_epochs : int
        After the last round, each chosen client fine-tunes the global model
        this many local epochs and is evaluated before and after on its local
        test split (``personalize-epochs``; 0, the default, turns it off). See
        :mod:`fedtflite.personalization`.
    personalize_clients : int
        How many clients personalize, drawn with ``seed``
        (``personalize-clients``; 0, the default: every client).
    strategy : str
        One of :data:`STRATEGIES`: Flower's own implementations, and
        ``scaffold`` (:mod:`server.scaffold`; Flower ships none).
    server_learning_rate, server_momentum : float
        ``fedavgm``.
    eta, eta_l, beta_1, beta_2, tau : float
        ``fedadam`` / ``fedyogi`` / ``fedadagrad`` (Reddi et al. 2021).
    trim_beta : float
        ``fedtrimmedavg``: fraction cut from each end.
    num_malicious_clients : int
        ``krum``.
    q : float
        ``qfedavg``.
    proximal_mu : float
        ``fedprox``.
    seed : int
        Seeds everything: initial weights, partition, sampling, shuffling.
    ray_address : str
        "" starts a local Ray; "auto" or "host:port" joins a cluster.
    client_cpus : float
        CPUs per Flower client actor (``client-cpus``); 1 = one actor per core.
    clients_per_message : int
        Most simulated clients per Flower message (``clients-per-message``; was
        ``cohort-size``); 0 (the
        default) splits each round's clients evenly over the workers, 1 sends
        one message per client. See :mod:`fedtflite.algorithms.sampling`.
    data_dir : str
        Fashion-MNIST directory; "" uses the look-up order of
        :func:`fedtflite.data.find_data_dir`.
    devices : str
        Every client's device speed and bandwidths (``devices``): ``none`` (this
        machine, free network), ``lognormal``, ``tiers[:high=S,mid=S,low=S]``,
        or a device CSV / FedScale ``client_device_capacity`` file. See
        :mod:`fedtflite.devices.profiles`.
    availability : str
        Who is online when (``availability``): ``always``, ``bernoulli:P``,
        ``diurnal[:...]`` or a FedScale ``client_behave_trace`` file. See
        :mod:`fedtflite.devices.availability`.
    over_commit : float
        Sample ``ceil(over-commit * K)`` online clients and aggregate the first
        ``K`` to finish (``over-commit``, >= 1; 1 = no over-commitment).
    round_deadline : float
        Virtual seconds after which a round's updates are late
        (``round-deadline``; 0 = no deadline).
    straggler_policy : str
        ``drop`` (late clients are discarded, never computed) or ``partial``
        (they train the steps that fit before the deadline)
        (``straggler-policy``).
    step_seconds : float
        Seconds of one ``train`` step on this machine, the virtual clock's unit
        (``step-seconds``); 0 (default) measures it once per run
        (:mod:`fedtflite.devices.calibrate`) and the run's ``config.toml``
        records the number, so that a replay or resume prices steps the same.
    allow_failed_rounds : bool
        ``allow-failed-rounds``: accept a run in which some round aggregated no
        update (every sampled client failed; the weights stay the previous
        round's). Off by default: such a run raises
        :class:`~fedtflite.errors.RunFailedError` (``fedtflite simulate`` exits 3)
        once its rounds are recorded.
    """

    num_clients: int = 100
    num_rounds: int = 20
    fraction_train: float = 0.1
    fraction_evaluate: float = 0.1
    evaluate_every: int = 1
    min_train_clients: int = 2
    min_evaluate_clients: int = 2
    local_epochs: int = 1
    batch_size: int = 32
    learning_rate: float = DEFAULT_LEARNING_RATE
    model: str = "mlp"
    optimizer: str = "sgd"
    momentum: float = 0.0
    weight_decay: float = 0.0
    weight_init: str = "glorot"
    partitioner: str = "dirichlet"
    alpha: float = 0.5
    classes_per_client: int = 2
    shards_per_client: int = 2
    min_partition_size: int = 10
    client_test_fraction: float = 0.2
    personalize_epochs: int = 0
    personalize_clients: int = 0
    strategy: str = "fedavg"
    server_learning_rate: float = 1.0
    server_momentum: float = 0.9
    eta: float = 0.01
    eta_l: float = 0.05
    beta_1: float = 0.9
    beta_2: float = 0.99
    tau: float = 0.001
    trim_beta: float = 0.2
    num_malicious_clients: int = 0
    q: float = 0.1
    proximal_mu: float = 0.01
    seed: int = 0
    ray_address: str = ""
    client_cpus: float = 1.0
    clients_per_message: int = 0
    data_dir: str = ""
    devices: str = "none"
    availability: str = "always"
    over_commit: float = 1.0
    round_deadline: float = 0.0
    straggler_policy: str = "drop"
    step_seconds: float = 0.0
    allow_failed_rounds: bool = False

    def __post_init__(self) -> None:
        _validate(self)

    def partition_spec(self) -> PartitionSpec:
        """The partition these settings describe."""
        return PartitionSpec(
            kind=self.partitioner,
            num_clients=self.num_clients,
            alpha=self.alpha,
            classes_per_client=self.classes_per_client,
            shards_per_client=self.shards_per_client,
            seed=self.seed,
            min_partition_size=self.min_partition_size,
        )

    def model_spec(
        self, *, proximal: bool = False, scaffold: bool = False
    ) -> ModelSpec:
        """The build of the named architecture these settings describe.

        A model file (``.tflite``, ``.keras``) stands in as the default
        architecture, so that the optimizer keys are checked all the same (the
        file's reader checks the file). The `train` batch is ``batch-size`` on an
        architecture that needs a static one, else dynamic.

        Parameters
        ----------
        proximal, scaffold : bool
            The strategy's build flags (:attr:`ModelSpec.proximal`, ``scaffold``).

        Raises
        ------
        ConfigError
            A bad ``model``, ``optimizer``, ``learning-rate``, ``momentum``,
            ``weight-decay``, ``weight-init`` or ``batch-size``.
        """
        is_file = self.model.endswith((".tflite", ".keras"))
        architecture = ModelSpec.architecture if is_file else self.model
        arch = ARCHITECTURES.get(architecture)
        return ModelSpec(
            architecture=architecture,
            optimizer=OptimizerSpec(
                name=self.optimizer,
                learning_rate=self.learning_rate,
                momentum=self.momentum,
                weight_decay=self.weight_decay,
            ),
            seed=self.seed,
            weight_init=self.weight_init,
            batch_size=self.batch_size if arch and arch.needs_static_batch else None,
            proximal=proximal,
            scaffold=scaffold,
        )

    def to_mapping(self) -> dict[str, Any]:
        """The config as ``{kebab-key: value}``."""
        return {k.replace("_", "-"): v for k, v in asdict(self).items()}


_FIELDS = {f.name.replace("_", "-"): f for f in fields(SimulationConfig)}


def _check(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(invalid_value(key, value, expected))


_KIND_NAMES: dict[type, str] = {float: "a number", bool: "true or false"}


def _validate(c: SimulationConfig) -> None:
    for key, f in _FIELDS.items():
        v = getattr(c, f.name)
        kind: type = {"int": int, "float": float, "str": str, "bool": bool}[str(f.type)]
        if kind is float and isinstance(v, int) and not isinstance(v, bool):
            object.__setattr__(c, f.name, float(v))
            v = float(v)
        _check(
            isinstance(v, kind) and (kind is bool or not isinstance(v, bool)),
            key,
            v,
            _KIND_NAMES.get(kind, kind.__name__),
        )
        if kind is float:
            _check(math.isfinite(v), key, v, "a finite number")
    # The partition's and the model's facts are their specs' (one place each).
    c.partition_spec()
    c.model_spec()
    check_batch_size(c.batch_size)  # also for a dynamic batch or a model file
    _check(c.num_rounds >= 1, "num-rounds", c.num_rounds, ">= 1")
    _check(c.evaluate_every >= 1, "evaluate-every", c.evaluate_every, ">= 1")
    for key in ("fraction-train", "fraction-evaluate"):
        v = getattr(c, key.replace("-", "_"))
        _check(0.0 <= v <= 1.0, key, v, "a fraction in [0, 1]")
    _check(
        c.fraction_train > 0,
        "fraction-train",
        0.0,
        "> 0 (nothing would train)",
    )
    for key in ("min-train-clients", "min-evaluate-clients"):
        v = getattr(c, key.replace("-", "_"))
        _check(
            1 <= v <= c.num_clients,
            key,
            v,
            f"1..num-clients ({c.num_clients})",
        )
    _check(c.local_epochs >= 1, "local-epochs", c.local_epochs, ">= 1")
    for key, v in (
        ("personalize-epochs", c.personalize_epochs),
        ("personalize-clients", c.personalize_clients),
    ):
        _check(v >= 0, key, v, ">= 0 (0: off / every client)")
    _check(
        c.personalize_clients <= c.num_clients,
        "personalize-clients",
        c.personalize_clients,
        f"at most num-clients = {c.num_clients} (0: every client)",
    )
    check_client_test_fraction(c.client_test_fraction)
    _check(
        c.strategy in STRATEGIES,
        "strategy",
        c.strategy,
        f"one of {', '.join(STRATEGIES)}",
    )
    _check(
        0 <= c.trim_beta < 0.5,
        "trim-beta",
        c.trim_beta,
        "0 <= trim-beta < 0.5",
    )
    _check(
        0 <= c.num_malicious_clients < c.num_clients,
        "num-malicious-clients",
        c.num_malicious_clients,
        "0 <= n < num-clients",
    )
    _check(c.proximal_mu >= 0, "proximal-mu", c.proximal_mu, ">= 0")
    _check(c.q >= 0, "q", c.q, ">= 0 (0 is FedAvg's objective)")
    _check(c.client_cpus > 0, "client-cpus", c.client_cpus, "> 0")
    _check(
        c.clients_per_message >= 0,
        "clients-per-message",
        c.clients_per_message,
        ">= 0",
    )
    _check(
        c.fraction_evaluate == 0 or c.client_test_fraction > 0,
        "fraction-evaluate",
        c.fraction_evaluate,
        "0 when client-test-fraction = 0 (clients hold no test split)",
    )
    _validate_devices(c)
    for key in ("eta", "eta-l", "tau", "server-learning-rate"):
        v = getattr(c, key.replace("-", "_"))
        _check(v > 0, key, v, "> 0")
    for key in ("beta-1", "beta-2", "server-momentum"):
        v = getattr(c, key.replace("-", "_"))
        _check(0 <= v < 1, key, v, "in [0, 1)")


def _validate_devices(c: SimulationConfig) -> None:
    parse_devices(c.devices)  # each raises ConfigError naming its key
    parse_availability(c.availability)
    _check(c.over_commit >= 1, "over-commit", c.over_commit, ">= 1")
    _check(
        c.round_deadline >= 0,
        "round-deadline",
        c.round_deadline,
        "seconds > 0, or 0 for no deadline",
    )
    _check(
        c.straggler_policy in STRAGGLER_POLICIES,
        "straggler-policy",
        c.straggler_policy,
        f"one of {', '.join(STRAGGLER_POLICIES)}",
    )
    _check(
        c.step_seconds >= 0,
        "step-seconds",
        c.step_seconds,
        "seconds > 0, or 0 to measure them",
    )


RENAMED_KEYS = {"cohort-size": "clients-per-message"}
"""Keys renamed since a release: a config that uses the old name is refused with
a hint; a run directory written before (its checkpoint, its ``config.toml``) is
read with :func:`upgrade_run_config`."""


def upgrade_run_config(values: Mapping[str, Any]) -> dict[str, Any]:
    """A config a run directory holds, with renamed keys under their new names."""
    return {RENAMED_KEYS.get(k, k): v for k, v in values.items()}


def config_from_mapping(
    values: Mapping[str, Any], base: SimulationConfig | None = None
) -> SimulationConfig:
    """Build a config from ``{kebab-key: value}`` on top of ``base`` (defaults).

    Raises
    ------
    ConfigError
        An unknown key (with the closest valid ones) or a bad value.
    """
    changes = {}
    for key, value in values.items():
        if key in RENAMED_KEYS:
            raise ConfigError(
                f"config key {key!r} is now {RENAMED_KEYS[key]!r} (same meaning); "
                "rename it"
            )
        if key not in _FIELDS:
            close = difflib.get_close_matches(key, _FIELDS, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ConfigError(
                f"unknown config key {key!r}{hint} (valid keys: {', '.join(_FIELDS)})"
            )
        changes[_FIELDS[key].name] = value
    return replace(base or SimulationConfig(), **changes)


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings; values are TOML literals, else plain strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} is not key=value")
        try:
            value = tomllib.loads(f"v = {raw.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw.strip()
        out[key.strip()] = value
    return out


def load_config(
    path: str | Path | None = None, overrides: Iterable[str] = ()
) -> SimulationConfig:
    """Read a TOML config (flat kebab-case keys) and apply ``key=value`` overrides.

    Raises
    ------
    ConfigError
        Missing/unreadable file, bad TOML, unknown key or bad value.
    """
    values = _read_toml(Path(path)) if path is not None else {}
    values.update(parse_overrides(overrides))
    return config_from_mapping(values)


def load_run_config(run_dir: str | Path) -> SimulationConfig:
    """The config of a run directory (its ``config.toml``), written by this or an
    older version (renamed keys are read under their new names).

    Raises
    ------
    ConfigError
        Missing/unreadable file, bad TOML, unknown key or bad value.
    """
    return config_from_mapping(
        upgrade_run_config(_read_toml(Path(run_dir) / "config.toml"))
    )


def _read_toml(p: Path) -> dict[str, Any]:
    try:
        values = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{p}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a directory; expected a TOML config file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{p}: not a text file (byte {e.start} is not UTF-8); expected a "
            "TOML config file"
        ) from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the config ({e.strerror})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    nested = [k for k, v in values.items() if isinstance(v, dict)]
    if nested:
        raise ConfigError(
            f"{p}: tables {nested} are not allowed; use flat kebab-case keys"
        )
    return values


def config_to_toml(config: SimulationConfig) -> str:
    """The config as TOML text (the resolved config of a run)."""
    lines = []
    for key, v in config.to_mapping().items():
        if isinstance(v, str | bool):
            lines.append(f"{key} = {json.dumps(v)}")
        else:
            lines.append(f"{key} = {v!r}")
    return "\n".join(lines) + "\n"
