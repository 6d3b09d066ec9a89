"""Everything a run settles before Ray starts: model file, data, partition, run dir.

Every bad setting fails here, in the driver, with a one-line error, before any
Ray process exists.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from fedtflite.algorithms.client_state import ClientStateStore
from fedtflite.data import (
    CLASS_NAMES,
    load_fashion_mnist,
    local_test_size,
    partition_stats,
    validate_partition_spec,
    write_partition_stats,
)
from fedtflite.data.partition_file import cached_partition, save_partition
from fedtflite.devices import RoundPlanner, cached_step_seconds, make_planner
from fedtflite.errors import (
    ConfigError,
    DataShapeError,
    NonFiniteError,
    invalid_value,
)
from fedtflite.models.architectures import ARCHITECTURES
from fedtflite.models.cache import cached_keras_model, cached_model
from fedtflite.protocol.settings import ClientSettings
from fedtflite.rundir import RunDirLock, lock_run_dir
from fedtflite.runtime import ClientModel
from fedtflite.simulation.checkpoint import CHECKPOINT_FILE, Checkpoint, resume_point
from fedtflite.simulation.config import SimulationConfig, config_to_toml
from fedtflite.simulation.history import RoundRecord
from fedtflite.simulation.strategy_registry import strategy_spec

__all__ = ["PreparedRun", "default_run_dir", "prepare_run", "resolve_model"]

_log = logging.getLogger("fedtflite")


@dataclass(frozen=True)
class PreparedRun:
    """A run ready to start.

    Attributes
    ----------
    config : SimulationConfig
    run_dir : Path
        Holds ``config.toml``, ``model.tflite``, ``partition.npz/.csv/.png`` and,
        as the run goes, ``history.csv``, ``accuracy.png``, ``final_weights.npz``.
    settings : ClientSettings
        What every message tells the clients.
    timings : dict
        Seconds spent on each preparation step (model, data, partition).
    background : tuple of threading.Thread
        Writers still running (the partition chart); :meth:`wait` joins them.
    checkpoint : Checkpoint or None
        Where a resumed run goes on from (None: it starts at round 0).
    history : tuple of RoundRecord
        A resumed run's rounds up to its checkpoint (empty otherwise).
    planner : RoundPlanner or None
        The run's devices, availability and round rules (the virtual clock's
        model); ``config.step_seconds`` is the measured or pinned step.
    lock : RunDirLock or None
        The run directory's exclusive lock (:mod:`fedtflite.rundir`), held
        until :meth:`close`.
    """

    config: SimulationConfig
    run_dir: Path
    settings: ClientSettings
    timings: dict[str, float]
    background: tuple[threading.Thread, ...] = ()
    checkpoint: Checkpoint | None = None
    history: tuple[RoundRecord, ...] = ()
    lock: RunDirLock | None = None
    planner: RoundPlanner | None = None

    def wait(self) -> None:
        """Join the background writers."""
        for thread in self.background:
            thread.join()

    def close(self) -> None:
        """Join the background writers and release the run directory."""
        self.wait()
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> PreparedRun:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_directory(
    run_dir: str | Path | None,
    resume: bool,
    *,
    resume_name: str = "resume",
    run_dir_name: str = "run_dir",
) -> Path:
    """The run directory to use: ``run_dir``, or a new :func:`default_run_dir`.

    ``resume_name`` and ``run_dir_name`` are what the caller's interface calls
    the two (``--resume`` / ``--out`` on the command line).

    Raises
    ------
    ConfigError
        ``resume`` without a ``run_dir`` to go on from.
    """
    if run_dir:
        return Path(run_dir)
    if resume:
        raise ConfigError(
            f"{resume_name} needs {run_dir_name}, the run directory to go on from"
        )
    return default_run_dir()


def default_run_dir(root: Path = Path("runs")) -> Path:
    """``runs/<YYYYmmdd-HHMMSS>``, made unique with a suffix if it exists."""
    base = root / time.strftime("%Y%m%d-%H%M%S")
    path, k = base, 1
    while path.exists():
        path, k = Path(f"{base}-{k}"), k + 1
    return path


def resolve_model(config: SimulationConfig) -> bytes:
    """The `.tflite` bytes the config names: a named architecture, a Keras model
    (built with its fixed `train` batch = ``batch-size``) or a `.tflite` file.

    Built models are cached on disk (TensorFlow is imported on a cache miss only).
    """
    proximal, scaffold = _build_flags(config)
    if config.model in ARCHITECTURES:
        return cached_model(config.model_spec(proximal=proximal, scaffold=scaffold))
    path = Path(config.model)
    if not path.is_file():
        raise ConfigError(
            invalid_value(
                "model",
                config.model,
                f"{', '.join(ARCHITECTURES)} or the path of a .tflite or .keras "
                "file (there is no such file)",
            )
        )
    if path.suffix == ".keras":
        return cached_keras_model(
            path,
            batch_size=config.batch_size,
            proximal=proximal,
            scaffold=scaffold,
        )
    return path.read_bytes()


def _build_flags(config: SimulationConfig) -> tuple[bool, bool]:
    """``proximal`` and ``scaffold`` of the model build, from the strategy's spec."""
    flag = strategy_spec(config.strategy).build_flag
    return flag == "proximal", flag == "scaffold"


def _check_algorithm_signatures(config: SimulationConfig, model: ClientModel) -> None:
    """FedProx and SCAFFOLD run inside the model: it needs their signatures."""
    spec = strategy_spec(config.strategy)
    signature = spec.device_signature
    if signature is None:
        return
    if signature not in model.contract.extra_signatures:
        raise ConfigError(
            f"strategy = {config.strategy!r} runs on the device and needs a model "
            f"with a {signature} signature; {config.model} has none: use a named "
            "model or a .keras file, or build one with "
            f"`fedtflite build ... --{spec.build_flag}`"
        )
    if spec.needs_learning_rate and not model.supports_learning_rate:
        raise ConfigError(
            f"strategy = {config.strategy!r} needs the model's learning rate "
            f"(set_learning_rate); {config.model} has none"
        )


def prepare_run(
    config: SimulationConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> PreparedRun:
    """Validate everything, write the run directory, compute the partition once.

    Parameters
    ----------
    config : SimulationConfig
    run_dir : Path
    resume : bool
        Go on from ``run_dir``'s checkpoint (:mod:`fedtflite.simulation.checkpoint`)
        when it has one (a directory with neither checkpoint nor history starts
        at round 0). Without it the run starts at round 0 and the directory's
        earlier checkpoint and client state are dropped.
    overwrite : bool
        Start over in a directory that holds another run's files (without it,
        and without ``resume``, such a directory is refused).

    Raises
    ------
    FedTfliteError
        Any bad setting, model file or data set, a checkpoint that does not
        fit ``config``, or a run directory that is busy, unwritable or holds
        another run, before Ray starts.
    """
    # First, before anything expensive: the directory must be ours alone.
    lock = lock_run_dir(run_dir, resume=resume, overwrite=overwrite)
    try:
        return _prepare(config, run_dir, resume, lock)
    except BaseException:
        lock.abandon()
        raise


def _prepare(
    config: SimulationConfig, run_dir: Path, resume: bool, lock: RunDirLock
) -> PreparedRun:
    checkpoint, history = (
        resume_point(run_dir, config.to_mapping()) if resume else (None, ())
    )
    timings = {}
    t = time.perf_counter()
    model_bytes = resolve_model(config)
    model = ClientModel(model_bytes, source=config.model)  # validates the contract
    c = model.contract
    if c.num_classes != len(CLASS_NAMES):
        raise DataShapeError(
            f"model = {config.model!r} has {c.num_classes} output classes; "
            f"Fashion-MNIST has {len(CLASS_NAMES)}: the model's infer output must "
            f"be [B,{len(CLASS_NAMES)}]"
        )
    if c.train_batch is not None and c.train_batch != config.batch_size:
        raise DataShapeError(
            f"batch-size = {config.batch_size} but {config.model} trains fixed "
            f"batches of {c.train_batch}; set batch-size = {c.train_batch}"
        )
    _check_algorithm_signatures(config, model)
    timings["model"] = time.perf_counter() - t

    t = time.perf_counter()
    data = load_fashion_mnist(config.data_dir or None)
    timings["data"] = time.perf_counter() - t

    t = time.perf_counter()
    spec = config.partition_spec()
    validate_partition_spec(spec, len(data.train.labels))
    parts = cached_partition(data.train.labels, spec)
    timings["partition"] = time.perf_counter() - t
    if config.fraction_evaluate and max(len(p) for p in parts) < 2:
        # split_local_test keeps a client's only example for training.
        _log.warning(
            "no client holds a local test example (every client has fewer than 2 "
            "examples): federated evaluation weighs every client 0 and "
            "fed_eval_* stay NaN; use fewer num-clients or fraction-evaluate = 0"
        )

    t = time.perf_counter()
    config, planner = _devices(config, model, parts, checkpoint)
    timings["devices"] = time.perf_counter() - t

    run_dir.mkdir(parents=True, exist_ok=True)
    if checkpoint is None:
        # Clients' stored state (SCAFFOLD's c_i) belongs to one run: a run reusing
        # the directory starts, as its server does, from nothing.
        ClientStateStore.of_run(run_dir).clear()
        (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    run_dir = run_dir.resolve()
    (run_dir / "config.toml").write_text(config_to_toml(config))
    model_path = run_dir / "model.tflite"
    model_path.write_bytes(model_bytes)
    partition_path = run_dir / "partition.npz"
    save_partition(partition_path, parts, spec)
    # The chart costs ~1 s (matplotlib); it is drawn while Ray and Flower start.
    stats = partition_stats(data.train.labels, parts)
    plotter = threading.Thread(
        target=_write_stats, args=(stats, run_dir), name="partition-stats"
    )
    plotter.start()

    settings = ClientSettings(
        model_path=str(model_path),
        model_sha256=hashlib.sha256(model_bytes).hexdigest(),
        partition_path=str(partition_path),
        partition=spec,
        client_test_fraction=config.client_test_fraction,
        data_dir=str(Path(config.data_dir).resolve()) if config.data_dir else "",
        local_epochs=config.local_epochs,
        batch_size=config.batch_size,
        learning_rate=config.learning_rate if model.supports_learning_rate else None,
        state_dir=str(ClientStateStore.of_run(run_dir).directory),
    )
    return PreparedRun(
        config,
        run_dir,
        settings,
        timings,
        (plotter,),
        checkpoint,
        history,
        lock,
        planner,
    )


def _devices(
    config: SimulationConfig,
    model: ClientModel,
    parts: list[np.ndarray],
    checkpoint: Checkpoint | None,
) -> tuple[SimulationConfig, RoundPlanner]:
    """The config with its step price settled, and the run's round planner.

    ``step-seconds = 0`` takes a resumed run's recorded number, else measures
    this model's step once (cached per machine, model and batch size).
    """
    seconds = config.step_seconds
    if not seconds and checkpoint is not None:
        seconds = float(checkpoint.config.get("step-seconds", 0.0))
    if not seconds:
        # on a probe with learning rate 0: a step's time does not depend on it,
        # and a diverging learning rate must fail in the run, not here
        probe = ClientModel(model.model_bytes)
        if probe.supports_learning_rate:
            probe.set_learning_rate(0.0)
        try:
            seconds = cached_step_seconds(probe, config.batch_size)
        except NonFiniteError as e:
            raise ConfigError(
                invalid_value(
                    "step-seconds",
                    config.step_seconds,
                    "seconds > 0 here, e.g. step-seconds = 0.002: 0 measures a "
                    f"train step, which failed ({e})",
                )
            ) from None
    config = replace(config, step_seconds=seconds)
    frac = config.client_test_fraction
    sizes = np.array([len(p) - local_test_size(len(p), frac) for p in parts])
    planner = make_planner(
        devices=config.devices,
        availability=config.availability,
        num_clients=config.num_clients,
        seed=config.seed,
        train_sizes=sizes,
        batch_size=config.batch_size,
        local_epochs=config.local_epochs,
        step_seconds=seconds,
        over_commit=config.over_commit,
        round_deadline=config.round_deadline,
        straggler_policy=config.straggler_policy,
    )
    return config, planner


def _write_stats(stats: np.ndarray, run_dir: Path) -> None:
    try:
        write_partition_stats(stats, run_dir)
    except OSError as e:  # a missing chart must not stop the run
        _log.warning("could not write the partition statistics: %s", e)
