"""``simulate``: a whole federated run on Flower's simulation engine over Ray.

The Python API research scripts use; ``fedtflite simulate`` is a thin layer on it.
It reaches the Flower apps as ``flwr run`` does, by component strings
(:data:`SERVER_APP`, :data:`CLIENT_APP`), so nothing in ``fedtflite`` imports
``clients/`` or ``server/``.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fedtflite.algorithms.sampling import flower_sample_size
from fedtflite.errors import ConfigError, RunInterruptedError, invalid_value
from fedtflite.native_logs import RAY_WORKER_NOISE, drop_forwarded_lines
from fedtflite.orchestrator.dispatch import waking_dispatcher
from fedtflite.simulation.checkpoint import CHECKPOINT_FILE, load_checkpoint
from fedtflite.simulation.config import SimulationConfig
from fedtflite.simulation.history import History, RoundCallback, RoundRecord
from fedtflite.simulation.prepare import PreparedRun, prepare_run, run_directory
from fedtflite.stop import stop_on_signals

__all__ = [
    "CLIENT_APP",
    "SERVER_APP",
    "WORKER_SETUP_HOOK",
    "federation_size",
    "simulate",
    "start_ray",
]

_log = logging.getLogger("fedtflite")

CLIENT_APP = "clients.client_app:app"
"""The ClientApp (as ``[tool.flwr.app.components]`` in ``pyproject.toml`` names it)."""
SERVER_APP = "server.server_app:run_server"
"""The ServerApp's loop over a prepared run (``server.server_app:app`` reads the
config from ``context.run_config`` and prepares the run itself)."""
WORKER_SETUP_HOOK = "clients.no_tensorflow.block_tensorflow"
"""Ray's per-worker set-up hook: no TensorFlow in client workers."""


def _load(component: str) -> Any:
    """The object a ``module:attribute`` component string names."""
    module, _, attribute = component.partition(":")
    return getattr(importlib.import_module(module), attribute)


WORKER_RESTARTS = 3
"""Times Ray restarts one dead client worker (Flower's ClientAppActor) in a run,
and retries the message it was running on the new process. A retried message
computes exactly what the first try would have: a client's randomness comes from
``(seed, round, client)`` and its stored state is versioned by round."""


def start_ray(address: str, num_cpus: int | None = None) -> bool:
    """Start (or join, with ``address``) Ray for client workers without TensorFlow.

    Returns True when this call initialised Ray (so the caller shuts it down).
    """
    import ray

    if ray.is_initialized():
        return False
    # Ray 2.55 warns on every start that a future version will stop overriding
    # accelerator variables when no GPU is requested; this opts into that now.
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")
    # Ray's processes start with SIGINT blocked (a signal mask is inherited
    # across exec): Ctrl-C reaches the whole foreground process group, and a
    # raylet or GCS that exits on it leaves the driver's ray.shutdown() waiting
    # on dead peers for many seconds. The driver still gets it (through its
    # other threads), stops the run and shuts them down itself. SIGTERM stays
    # open: Ray's shutdown stops its processes with it and gives each a second
    # before SIGKILL, so with it blocked too ray.shutdown() took 5.3 s instead
    # of 1.3 s, every run (a SIGTERM to the whole group ends the run cleanly
    # either way: tests/integration/test_faults.py).
    with _sigint_blocked():
        _init_ray(address, num_cpus)
    drop_forwarded_lines(RAY_WORKER_NOISE)
    return True


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


INLINE_BYTES = 4 << 20
"""Messages up to this size travel inside Ray's task calls and replies, not
through its object store (Ray's default: 100 KB). A round's messages carry the
model (400 KB for the ``mlp``); through the object store each cost the raylet
~3 ms of CPU, on the cores the clients train on: measured at 1 000 clients per
round on 2 cores, the raylet's CPU per round fell from 12.8 to 3.6 ms and the
round from 0.364 to 0.341 s. Set when this process starts Ray (a cluster keeps
its own setting)."""


def _init_ray(address: str, num_cpus: int | None) -> None:
    import ray

    root = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join([root, *sys.path])
    ray.init(
        address=address or None,
        num_cpus=None if address else num_cpus,
        _system_config=None
        if address
        else {"max_direct_call_object_size": INLINE_BYTES},
        include_dashboard=False,
        logging_level=logging.ERROR,
        configure_logging=True,
        runtime_env={
            "env_vars": {"PYTHONPATH": pythonpath, "TF_CPP_MIN_LOG_LEVEL": "3"},
            "worker_process_setup_hook": WORKER_SETUP_HOOK,
        },
    )


@contextmanager
def _quiet_flower() -> Iterator[None]:
    """Flower's own logging off during a run: it logs a traceback for every
    message a worker failed, which the ServerApp reports in one line per round."""
    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    flwr_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        flwr_logger.setLevel(level)


def simulate(
    config: SimulationConfig,
    run_dir: str | Path | None = None,
    *,
    callbacks: list[RoundCallback] | None = None,
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
) -> History:
    """Run a federated simulation and return its history.

    Parameters
    ----------
    config : SimulationConfig
        The run (validated already; see :func:`fedtflite.simulation.load_config`).
    run_dir : path, optional
        Output directory (default ``runs/<timestamp>``).
    callbacks : list of RoundCallback, optional
        Extra per-round callbacks (the CSV, plot and progress bar are built in).
    progress : bool
        Show the progress bar.
    resume : bool
        Go on after the last round of ``run_dir``'s checkpoint (written after
        every round; see :mod:`fedtflite.simulation.checkpoint`) instead of
        starting over; a directory without one starts at round 0. The config
        must be the run's own, except for where and how long it runs
        (``num-rounds``, ``ray-address``, ``client-cpus``, ``clients-per-message``,
        ``data-dir``).
    overwrite : bool
        Start over in a ``run_dir`` that holds another run's files; without it
        (and without ``resume``) such a directory is refused. A run holds the
        directory's lock (:mod:`fedtflite.rundir`) while it runs.

    Raises
    ------
    FedTfliteError
        Any bad setting, model or data, before Ray starts.
    """
    t0 = time.perf_counter()
    run = prepare_run(
        config, run_directory(run_dir, resume), resume=resume, overwrite=overwrite
    )
    if run.settings.learning_rate is None:
        _log.warning(
            "%s has no set_learning_rate: learning-rate is ignored", config.model
        )
    # Flower's modules import in the background while Ray starts (~1 s).
    started = False
    try:
        importer = threading.Thread(target=_import_flower, name="import-flower")
        importer.start()
        t_ray = time.perf_counter()
        started = start_ray(config.ray_address, num_cpus=os.cpu_count())
        importer.join()
        timings = {**run.timings, "ray": time.perf_counter() - t_ray}
        _check_client_cpus(config)
        first = _StartupClock(t0, timings)
        # After ray.init, whose driver installs its own SIGTERM handler (a stack
        # dump and abort).
        with stop_on_signals():
            # A signal after the last round changes nothing: the run is complete.
            rows = _run_flower(run, [first, *(callbacks or [])], progress)
    except RunInterruptedError as e:
        raise RunInterruptedError(e.signum, _resume_hint(e, run.run_dir)) from None
    finally:
        if started:
            import ray

            ray.shutdown()  # the Ray processes this run started end here
        run.close()
    return History(tuple(rows), run.run_dir, timings)


def _resume_hint(e: RunInterruptedError, run_dir: Path) -> str:
    """One line: what was kept and the exact command that goes on from it."""
    ckpt = run_dir / CHECKPOINT_FILE
    done = (
        f"after round {load_checkpoint(ckpt).round}"  # type: ignore[union-attr]
        if ckpt.is_file()
        else "before its first round"
    )
    return (
        f"{e}: the run stopped {done} (its checkpoint and history.csv are in "
        f"{run_dir}); resume with: fedtflite simulate {run_dir / 'config.toml'} "
        f"--out {run_dir} --resume"
    )


class _StartupClock:
    """At round 0 (the initial evaluation; the first round starts next), completes
    ``timings`` with ``flower`` and ``total`` and logs them."""

    def __init__(self, t0: float, timings: dict[str, float]):
        self.t0, self.timings, self.since = t0, timings, time.perf_counter()

    def on_round(self, record: RoundRecord) -> None:
        if record.round != 0:
            return
        now = time.perf_counter()
        self.timings["flower"] = now - self.since
        self.timings["total"] = now - self.t0
        parts = ", ".join(f"{k} {v:.2f}" for k, v in self.timings.items())
        _log.info("start-up to the first round: %s s", parts)

    def on_end(self) -> None:
        pass


def _check_client_cpus(config: SimulationConfig) -> None:
    """Refuse a ``client-cpus`` no node of the cluster could give an actor.

    Flower's actor pool would stay empty and its first round wait forever.
    """
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]  # type: ignore[no-untyped-call]
    most = max((float(n["Resources"].get("CPU", 0)) for n in nodes), default=0.0)
    if config.client_cpus > most:
        total = sum(float(n["Resources"].get("CPU", 0)) for n in nodes)
        raise ConfigError(
            invalid_value(
                "client-cpus",
                config.client_cpus,
                f"<= {most:g}, the most CPUs of one node of this Ray cluster "
                f"({total:g} CPUs in all; e.g. 1)",
            )
        )


def _ray_workers(config: SimulationConfig) -> int:
    import ray

    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    cpus = float(resources.get("CPU", 1.0))
    return max(1, int(cpus // config.client_cpus))


def federation_size(config: SimulationConfig, workers: int) -> int:
    """Flower nodes to simulate: enough that a round's messages go out at once.

    Flower's simulation engine hands each node one message per poll (0.1 s), so
    the federation has one node per message of the largest phase: one per
    worker (Ray actor) with automatic cohorts, more with a fixed
    ``clients-per-message``.
    Nodes are only addresses; which simulated client a message is for travels in
    the message.
    """
    if not config.clients_per_message:
        return workers
    sampled = max(
        flower_sample_size(
            config.num_clients, config.fraction_train, config.min_train_clients
        ),
        flower_sample_size(
            config.num_clients, config.fraction_evaluate, config.min_evaluate_clients
        ),
    )
    return max(workers, math.ceil(sampled / config.clients_per_message))


def _import_flower() -> None:
    """Import what :func:`_run_flower` needs, without TensorFlow.

    ``flwr.simulation`` imports TensorFlow when it is installed (2.5 s, ~500 MB)
    for an option of GPU actors; the driver never needs it for that. It stays
    importable afterwards (a later model build imports it for real).
    """
    blocked = "tensorflow" not in sys.modules
    if blocked:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]
    try:
        import flwr.simulation  # noqa: F401

        for component in (CLIENT_APP, SERVER_APP):
            importlib.import_module(component.partition(":")[0])
    finally:
        if blocked and sys.modules.get("tensorflow", 0) is None:
            del sys.modules["tensorflow"]


def _run_flower(
    run: PreparedRun, callbacks: list[RoundCallback] | None, progress: bool
) -> list[RoundRecord]:
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    client_app = _load(CLIENT_APP)
    run_server = _load(SERVER_APP)
    rows: list[RoundRecord] = []
    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Grid, context: Context) -> None:
        rows.extend(run_server(grid, run, callbacks, progress))

    with _quiet_flower(), waking_dispatcher():
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=federation_size(run.config, _ray_workers(run.config)),
            backend_config={
                # Flower passes these to the actors' .options(): a worker
                # process that dies is restarted (see server.messaging).
                "client_resources": {
                    "num_cpus": run.config.client_cpus,
                    "num_gpus": 0.0,
                    "max_restarts": WORKER_RESTARTS,
                    "max_task_retries": WORKER_RESTARTS,
                },
                "init_args": {},
            },
        )
    if len(rows) != run.config.num_rounds + 1:
        raise RuntimeError(
            f"simulation ended after {len(rows) - 1} of {run.config.num_rounds} "
            "rounds; "
            f"see the log above (run dir {run.run_dir})"
        )
    return rows
