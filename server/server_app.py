"""The Flower ServerApp: initial weights from the model file, a Flower strategy,
centralized evaluation every round, and the run directory's history.

``flwr run .`` enters through :data:`app` (config from ``context.run_config``);
:func:`fedtflite.simulate` calls :func:`run_server` with a prepared run.
"""

from __future__ import annotations

import csv
import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from fedtflite.data import load_fashion_mnist
from fedtflite.devices import ParticipationFiles, VirtualRun, format_time_to_accuracy
from fedtflite.errors import RunFailedError
from fedtflite.files import atomic_path
from fedtflite.report import write_csv
from fedtflite.runtime import ClientModel, EvalResult
from fedtflite.simulation.checkpoint import (
    CHECKPOINT_FILE,
    Checkpoint,
    save_checkpoint,
)
from fedtflite.simulation.config import config_from_mapping
from fedtflite.simulation.history import (
    AccuracyPlot,
    CsvHistory,
    ProgressBar,
    RoundCallback,
    RoundRecord,
    crossings,
)
from fedtflite.simulation.prepare import PreparedRun, prepare_run, run_directory
from server.grid import StoppableGrid
from server.personalize import personalize_run
from server.round_jobs import RoundJobs
from server.strategies import (
    RoundStats,
    load_strategy_state,
    make_strategy,
    strategy_state,
)

__all__ = ["app", "run_server"]

_log = logging.getLogger("fedtflite")
app = ServerApp()


def _record(
    server_round: int, stats: RoundStats, test: Any, seconds: float, clock: float
) -> RoundRecord:
    tm, em = stats.train_metrics, stats.eval_metrics
    nan = math.nan
    t = stats.timing
    return RoundRecord(
        round=server_round,
        test_loss=test.loss,
        test_accuracy=test.accuracy,
        train_loss=tm.get("train-loss", nan),
        fed_eval_loss=em.get("eval-loss", nan),
        fed_eval_accuracy=em.get("eval-accuracy", nan),
        clients_sampled=stats.clients_sampled,
        clients_ok=stats.clients_ok,
        clients_failed=stats.clients_failed,
        messages=stats.messages,
        seconds=seconds,
        client_compute_seconds=stats.compute_seconds if stats.clients_sampled else nan,
        bytes_down=stats.bytes_down,
        bytes_up=stats.bytes_up,
        virtual_seconds=t.virtual_seconds if t else 0.0,
        virtual_clock=t.virtual_clock if t else clock,
        clients_straggled=t.clients_straggled if t else 0,
        clients_unavailable=t.clients_unavailable if t else 0,
    )


def run_server(
    grid: Grid,
    run: PreparedRun,
    callbacks: list[RoundCallback] | None = None,
    progress: bool = True,
) -> list[RoundRecord]:
    """Run all rounds of ``run`` on ``grid``; one record per round (0 = initial).

    Writes ``history.csv``, ``accuracy.png``, ``workers.csv`` (which worker
    process ran how many clients each round, and whether TensorFlow was loaded
    in it), ``participation.csv`` / ``.png`` (who was sampled and aggregated,
    against their devices) and ``final_weights.npz`` to the run directory;
    ``callbacks`` get every round too. After every round it writes
    ``checkpoint.npz`` (removed when the last round is done); a run prepared
    with ``resume`` goes on from it, after the rounds it already has (which the
    callbacks get first). A round's central evaluation, records, callbacks and
    checkpoint run in a background thread while the next round trains
    (:class:`server.round_jobs.RoundJobs`); all are done when this returns.
    """
    config = run.config
    model = ClientModel(Path(run.settings.model_path))
    test = load_fashion_mnist(run.settings.data_dir or None).test
    names = [p.name for p in model.contract.parameters]
    strategy = make_strategy(config)
    ckpt = run.checkpoint
    if ckpt is None:
        initial = model.parameters()
        done = 0
    else:
        initial = [ckpt.weights[n] for n in names]
        load_strategy_state(strategy, ckpt.strategy_state)
        done = strategy.round_offset = ckpt.round
    virtual = None
    if run.planner is not None:
        state = ckpt.devices if ckpt is not None else {}
        virtual = strategy.virtual = VirtualRun.from_state(run.planner, state)
    arrays = ArrayRecord(
        array_dict={n: Array(w) for n, w in zip(names, initial, strict=True)}
    )

    rows: list[RoundRecord] = list(run.history)
    title = (
        f"{config.strategy} · {config.model} · {config.num_clients} clients · "
        f"{config.partitioner}"
    )
    cbs: list[RoundCallback] = [
        CsvHistory(run.run_dir / "history.csv"),
        AccuracyPlot(run.run_dir / "accuracy.png", title),
        ProgressBar(config.num_rounds, enabled=progress),
        *(callbacks or []),
    ]
    if virtual is not None:
        cbs.insert(
            2, ParticipationFiles(run.run_dir, virtual, f"{title} · {config.devices}")
        )
    for row in rows:  # a resumed run's earlier rounds
        for cb in cbs:
            cb.on_round(row)
    clock = [time.perf_counter()]
    checkpoint_path = run.run_dir / CHECKPOINT_FILE
    workers_path = run.run_dir / "workers.csv"
    # A resumed run keeps the rows of the rounds it goes on after.
    earlier = _read_workers(workers_path, done) if ckpt is not None else []

    jobs = RoundJobs()  # each round's evaluation and records, while the next trains
    recorded = [rows[-1].round if rows else -1]  # the last round handed to jobs

    def central_evaluation(
        server_round: int, global_arrays: ArrayRecord
    ) -> MetricRecord | None:
        server_round += done
        if server_round == recorded[0]:
            # Flower's loop evaluates its initial weights: a resumed run's
            # checkpoint, evaluated already.
            return None
        # What the round ended with, copied now: the next round changes the
        # strategy's state and counts while the job still runs.
        weights = [global_arrays[n].numpy() for n in names]
        now = time.perf_counter()
        seconds, clock[0] = now - clock[0], now
        stats = strategy.stats.get(server_round, RoundStats())
        checkpoint = None
        if server_round != config.num_rounds:
            checkpoint = Checkpoint(
                server_round,
                config.to_mapping(),
                dict(zip(names, weights, strict=True)),
                {
                    attr: {k: np.array(a) for k, a in values.items()}
                    for attr, values in strategy_state(strategy).items()
                },
                {k: np.array(a) for k, a in virtual.state().items()}
                if virtual is not None
                else {},
            )
        clock_now = virtual.clock if virtual is not None else math.nan
        all_stats = dict(strategy.stats)
        recorded[0] = server_round
        jobs.submit(
            lambda: record_round(
                server_round, weights, stats, seconds, clock_now, checkpoint, all_stats
            )
        )
        return None

    def record_round(
        server_round: int,
        weights: list[np.ndarray],
        stats: RoundStats,
        seconds: float,
        clock_now: float,
        checkpoint: Checkpoint | None,
        all_stats: dict[int, RoundStats],
    ) -> None:
        if server_round % config.evaluate_every and server_round != config.num_rounds:
            result = EvalResult(0, math.nan, math.nan, 0.0)
        else:
            model.restore(weights)
            result = model.evaluate(test.images, test.labels)
        row = _record(server_round, stats, result, seconds, clock_now)
        rows.append(row)
        for cb in cbs:
            cb.on_round(row)
        if checkpoint is None:  # the last round
            np.savez(
                run.run_dir / "final_weights.npz",
                **dict(zip(names, weights, strict=True)),  # type: ignore[arg-type]
            )
            checkpoint_path.unlink(missing_ok=True)
        else:
            save_checkpoint(checkpoint_path, checkpoint)
        # Every round, so that a user can see (and kill) a worker mid-run.
        _write_workers(workers_path, earlier, all_stats)

    if hasattr(grid, "pull_interval"):
        # Flower's in-memory grid polls for replies every 0.1 s by default; a
        # round of cohorts takes tens of milliseconds.
        grid.pull_interval = 0.005
    train_config = ConfigRecord(run.settings.to_config())
    grid = StoppableGrid(grid)  # a SIGINT ends the run between two polls
    try:
        result = strategy.start(
            grid=grid,
            initial_arrays=arrays,
            num_rounds=config.num_rounds - done,
            train_config=train_config,
            evaluate_config=ConfigRecord(run.settings.to_config()),
            evaluate_fn=central_evaluation,
        )
        if config.personalize_epochs:
            final = [result.arrays[n].numpy() for n in names]
            personalize_run(grid, run, names, final)
    finally:
        failed = jobs.close()  # every finished round recorded (or the failure)
        for cb in cbs:
            cb.on_end()
        _write_workers(workers_path, earlier, strategy.stats)
    if failed is not None:
        raise failed
    if not config.allow_failed_rounds:
        _check_rounds(rows, strategy.stats)
    return rows


def _spans(rounds: list[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"1-3, 5"``."""
    spans: list[list[int]] = []
    for r in rounds:
        if spans and r == spans[-1][-1] + 1:
            spans[-1].append(r)
        else:
            spans.append([r])
    return ", ".join(f"{s[0]}-{s[-1]}" if len(s) > 1 else str(s[0]) for s in spans)


def _check_rounds(rows: list[RoundRecord], stats: dict[int, RoundStats]) -> None:
    """Raise :class:`RunFailedError` if some round aggregated no update.

    Such a round kept the previous weights: the run's result is not what its
    config asked for, although every round was recorded.
    """
    # a round whose sampled clients all straggled (devices) ran none: not failed
    failed = [r.round for r in rows[1:] if r.clients_failed and not r.clients_ok]
    if not failed:
        return
    reasons = (stats[r].errors[0] for r in failed if r in stats and stats[r].errors)
    first = next(reasons, "not recorded (a round before the run was resumed)")
    raise RunFailedError(
        f"{len(failed)} of {len(rows) - 1} rounds aggregated no update, every "
        f"sampled client failed (round {_spans(failed)}); first failure: {first}; "
        "set allow-failed-rounds = true to accept such rounds"
    )


_WORKER_COLUMNS = ["round", "worker", "clients", "tensorflow"]


def _read_workers(path: Path, upto: int) -> list[list[str]]:
    """``workers.csv``'s rows of rounds ``<= upto`` (none if it is unreadable)."""
    try:
        with path.open(newline="") as f:
            rows = list(csv.reader(f))
    except OSError:
        return []
    if not rows or rows[0] != _WORKER_COLUMNS:
        return []
    return [r for r in rows[1:] if len(r) == 4 and r[0].isdigit() and int(r[0]) <= upto]


def _write_workers(
    path: Path, earlier: list[list[str]], stats: dict[int, RoundStats]
) -> None:
    # Whole: a user reading it mid-run (for a worker's pid) never sees half a file.
    with atomic_path(path) as tmp:
        write_csv(
            tmp,
            _WORKER_COLUMNS,
            [
                *earlier,
                *(
                    [server_round, worker, n, int(worker in s.workers_with_tensorflow)]
                    for server_round, s in sorted(stats.items())
                    for worker, n in sorted(s.workers.items())
                ),
            ],
        )


@app.main()
def main(grid: Grid, context: Context) -> None:
    """``flwr run`` entry: read ``context.run_config`` once, prepare, run.

    Besides the config keys, ``run-dir`` names the run directory, ``resume =
    true`` goes on from its checkpoint and ``overwrite = true`` starts over in a
    directory that holds another run (see :func:`fedtflite.simulate`).
    """
    values = dict(context.run_config)
    run_dir = str(values.pop("run-dir", ""))
    resume = bool(values.pop("resume", False))
    overwrite = bool(values.pop("overwrite", False))
    config = config_from_mapping(values)
    directory = run_directory(
        run_dir, resume, resume_name="resume = true", run_dir_name="run-dir"
    )
    run = prepare_run(config, directory, resume=resume, overwrite=overwrite)
    _log.warning("fedtflite run directory: %s", run.run_dir)
    try:
        rows = run_server(grid, run)
    finally:
        run.close()
    _log.warning(format_time_to_accuracy(crossings(rows)))
