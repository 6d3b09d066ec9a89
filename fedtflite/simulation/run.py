"""``simulate``: a whole federated run on Flower's simulation engine over Ray.

The Python API research scripts use; ``fedtflite simulate`` is a thin layer on it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fedtflite.simulation.config import SimulationConfig
from fedtflite.simulation.history import History, RoundCallback, RoundRecord
from fedtflite.simulation.prepare import PreparedRun, default_run_dir, prepare_run

__all__ = ["simulate", "start_ray"]

_log = logging.getLogger("fedtflite")


def start_ray(address: str, num_cpus: int | None = None) -> bool:
    """Start (or join, with ``address``) Ray for client workers without TensorFlow.

    Returns True when this call initialised Ray (so the caller shuts it down).
    """
    import ray

    if ray.is_initialized():
        return False
    root = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join([root, *sys.path])
    ray.init(
        address=address or None,
        num_cpus=None if address else num_cpus,
        include_dashboard=False,
        logging_level=logging.ERROR,
        configure_logging=True,
        runtime_env={
            "env_vars": {"PYTHONPATH": pythonpath, "TF_CPP_MIN_LOG_LEVEL": "3"},
            "worker_process_setup_hook": "clients.no_tensorflow.block_tensorflow",
        },
    )
    return True


@contextmanager
def _quiet_flower() -> Iterator[None]:
    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    flwr_logger.setLevel(logging.ERROR)
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

    Raises
    ------
    FedTfliteError
        Any bad setting, model or data, before Ray starts.
    """
    t0 = time.perf_counter()
    run = prepare_run(config, Path(run_dir) if run_dir else default_run_dir())
    if not run.settings.learning_rate:
        _log.warning(
            "%s has no set_learning_rate: learning-rate is ignored", config.model
        )
    t_ray = time.perf_counter()
    started = start_ray(config.ray_address, num_cpus=os.cpu_count())
    timings = {**run.timings, "ray": time.perf_counter() - t_ray}
    _log.info("start-up %.2f s: %s", time.perf_counter() - t0, timings)
    try:
        rows = _run_flower(run, callbacks, progress)
    finally:
        if started:
            import ray

            ray.shutdown()
    return History(tuple(rows), run.run_dir)


def _run_flower(
    run: PreparedRun, callbacks: list[RoundCallback] | None, progress: bool
) -> list[RoundRecord]:
    from flwr.app import Context
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    from clients.client_app import app as client_app
    from server.server_app import run_server

    rows: list[RoundRecord] = []
    server_app = ServerApp()

    @server_app.main()
    def _main(grid: Grid, context: Context) -> None:
        rows.extend(run_server(grid, run, callbacks, progress))

    with _quiet_flower():
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=run.config.num_clients,
            backend_config={
                "client_resources": {
                    "num_cpus": run.config.client_cpus,
                    "num_gpus": 0.0,
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
