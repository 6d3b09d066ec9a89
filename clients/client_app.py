"""The Flower ClientApp: every simulated client runs the `.tflite` through LiteRT.

A message carries a cohort of simulated clients (:mod:`fedtflite.simulation.
records`); this process runs them one after another on its one interpreter.

Train, per client: ``restore`` the global arrays, train ``local-epochs`` over
the client's shard, read ``parameters``. The reply holds every client's weights
as one ArrayRecord and one MetricRecord (``num-examples``, ``train-loss``,
``compute-seconds``) or, when the strategy only needs their example-weighted
mean, the cohort's mean and summed ``num-examples``. Evaluate, per client:
``restore``, ``infer`` on the client's local test split (``eval-loss``,
``eval-accuracy``, ``num-examples``), pre-aggregated the same way.

Which simulated clients a message is for comes from the message (chosen by the
server's seeded sampler), so results never depend on which Flower node or Ray
worker ran them. A client whose training fails (a non-finite loss or weights,
data that do not fit) is reported in the reply's status and left out of its
cohort's update: NaNs never reach the aggregate, and the rest of the cohort
still counts.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Context,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.clientapp import ClientApp

from clients.worker import ClientUpdate, Worker, get_worker
from fedtflite.errors import FedTfliteError, WeightsMismatchError
from fedtflite.simulation import records
from fedtflite.simulation.cohorts import WeightedMean
from fedtflite.simulation.settings import ClientSettings

__all__ = ["app"]

app = ClientApp()


class _Timed(Protocol):
    @property
    def seconds(self) -> float: ...


_R = TypeVar("_R", bound=_Timed)


@functools.cache
def _worker_id() -> str:
    """``<ray node id>:<pid>`` of this process (hostname outside Ray)."""
    node = ""
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id() or ""
    except ImportError:  # pragma: no cover - Flower's simulation needs Ray
        pass
    if not node:
        node = os.uname().nodename
    return f"{node}:{os.getpid()}"


def _arrays(record: ArrayRecord, names: list[str], what: str) -> list[np.ndarray]:
    missing = [n for n in names if n not in record]
    if missing:
        raise WeightsMismatchError(
            f"{what} lacks {missing}; the model's parameters are {names}"
        )
    return [record[n].numpy() for n in names]


def _setup(msg: Message) -> tuple[Worker, ConfigRecord, list[int], list[np.ndarray]]:
    config = msg.content.config_records[records.CONFIG]
    worker = get_worker(ClientSettings.from_config(config))
    names = [p.name for p in worker.model.contract.parameters]
    weights = _arrays(msg.content.array_records[records.ARRAYS], names, "message")
    cohort = config[records.COHORT]
    assert isinstance(cohort, list)
    return worker, config, [int(c) for c in cohort], weights


class _Cohort:
    """Runs a cohort's clients one by one; a failing client fails alone."""

    def __init__(self, cohort: list[int]):
        self.cohort = cohort
        self.ok: list[int] = []
        self.failed: list[int] = []
        self.errors: list[str] = []
        self.seconds = 0.0

    def run(self, client: Callable[[int], _R]) -> Iterator[tuple[int, _R]]:
        """``(client id, client(id))`` for every client that did not fail."""
        for cid in self.cohort:
            try:
                result = client(cid)
            except FedTfliteError as e:
                self.failed.append(cid)
                self.errors.append(f"client {cid}: {e}")
                continue
            self.ok.append(cid)
            self.seconds += result.seconds
            yield cid, result

    def status(self) -> ConfigRecord:
        """The reply's :data:`~fedtflite.simulation.records.STATUS` record."""
        return ConfigRecord(
            {
                records.OK: self.ok,
                records.FAILED: self.failed,
                records.ERRORS: self.errors,
                records.TOTAL_COMPUTE_SECONDS: self.seconds,
                records.WORKER: _worker_id(),
                records.TENSORFLOW: int(sys.modules.get("tensorflow") is not None),
            }
        )


def _update_arrays(update: ClientUpdate, names: list[str]) -> ArrayRecord:
    arrays = {n: Array(w) for n, w in zip(names, update.weights, strict=True)}
    if update.control_delta is not None:
        for n, d in zip(names, update.control_delta, strict=True):
            arrays[records.CONTROL_DELTA_PREFIX + n] = Array(d)
    return ArrayRecord(array_dict=arrays)


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local training of every simulated client of the message's cohort."""
    worker, config, cohort, global_weights = _setup(msg)
    names = [p.name for p in worker.model.contract.parameters]
    server_round = config["server-round"]
    assert isinstance(server_round, int)
    mu = config.get(records.PROXIMAL_MU)  # Flower's FedProx: the term runs on device
    proximal_mu = float(mu) if isinstance(mu, int | float) else None
    control = None
    if records.CONTROL in msg.content.array_records:  # SCAFFOLD
        control = _arrays(msg.content.array_records[records.CONTROL], names, "control")
    per_client = bool(config.get(records.PER_CLIENT, 1))
    budgets = config.get(records.MAX_STEPS)
    budget: dict[int, int] = {}
    if isinstance(budgets, list):
        pairs = zip(cohort, budgets, strict=True)
        budget = {c: b for c, b in pairs if isinstance(b, int)}

    def client(cid: int) -> ClientUpdate:
        steps = budget.get(cid, -1)
        return worker.train(
            cid,
            server_round,
            global_weights,
            proximal_mu=proximal_mu,
            control=control,
            max_steps=steps if steps >= 0 else None,
        )

    content = RecordDict()
    mean, loss, seconds = WeightedMean(), WeightedMean(), WeightedMean()
    run = _Cohort(cohort)
    for cid, u in run.run(client):
        if per_client:
            content[records.client_key(records.ARRAYS, cid)] = _update_arrays(u, names)
            content[records.client_key(records.METRICS, cid)] = MetricRecord(
                {
                    records.NUM_EXAMPLES: u.num_examples,
                    records.TRAIN_LOSS: u.loss,
                    records.COMPUTE_SECONDS: u.seconds,
                }
            )
        else:
            mean.add(u.weights, u.num_examples)
            loss.add([np.array(u.loss)], u.num_examples)
            seconds.add([np.array(u.seconds)], u.num_examples)
    if run.ok and not per_client:
        content[records.ARRAYS] = ArrayRecord(
            array_dict={n: Array(w) for n, w in zip(names, mean.mean(), strict=True)}
        )
        content[records.METRICS] = MetricRecord(
            {
                records.NUM_EXAMPLES: int(mean.total_weight),
                records.TRAIN_LOSS: float(loss.mean()[0]),
                records.COMPUTE_SECONDS: float(seconds.mean()[0]),
            }
        )
    content[records.STATUS] = run.status()
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """Federated evaluation of the global weights on the cohort's local test splits.

    Always pre-aggregated: every Flower strategy averages evaluation metrics
    weighted by ``num-examples``. Clients without test examples weigh 0.
    """
    worker, _, cohort, global_weights = _setup(msg)
    n_total, loss_sum, correct = 0, 0.0, 0.0
    run = _Cohort(cohort)
    for _, r in run.run(lambda cid: worker.evaluate(cid, global_weights)):
        if r.num_examples:
            n_total += r.num_examples
            loss_sum += r.loss * r.num_examples
            correct += r.accuracy * r.num_examples
    content = RecordDict({records.STATUS: run.status()})
    if run.ok:
        content[records.METRICS] = MetricRecord(
            {
                records.NUM_EXAMPLES: n_total,
                records.EVAL_LOSS: loss_sum / n_total if n_total else 0.0,
                records.EVAL_ACCURACY: correct / n_total if n_total else 0.0,
                records.COMPUTE_SECONDS: run.seconds / len(run.ok),
            }
        )
    return Message(content=content, reply_to=msg)
