"""The Flower ClientApp: every simulated client runs the `.tflite` through LiteRT.

A message carries a cohort of simulated clients (:mod:`fedtflite.protocol`);
this process runs them one after another on its one interpreter.

Train, per client: ``restore`` the global arrays, train ``local-epochs`` over
the client's shard, read ``parameters``; clients are prepared (shuffled,
batched, converted) a few at a time before they run (:class:`_Cohort`). The
reply holds every client's weights as one ArrayRecord and one MetricRecord
(``num-examples``, ``train-loss``, ``compute-seconds``) or, when the strategy
only needs their example-weighted mean, the cohort's mean and summed
``num-examples``
(:class:`~fedtflite.protocol.replies.TrainReplyEncoder`). Evaluate, per client:
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

from flwr.app import ConfigRecord, Context, Message
from flwr.clientapp import ClientApp

from clients.worker import ClientUpdate, PreparedClient, Worker, get_worker
from fedtflite.errors import FedTfliteError
from fedtflite.protocol import keys
from fedtflite.protocol.personalization import personalize_epochs, personalize_reply
from fedtflite.protocol.replies import (
    ReplyStatus,
    TrainReplyEncoder,
    arrays_of,
    evaluate_reply,
    step_budgets,
)
from fedtflite.protocol.settings import ClientSettings
from fedtflite.runtime import StagedWeights

__all__ = ["app"]

app = ClientApp()


class _Timed(Protocol):
    @property
    def seconds(self) -> float: ...


_R = TypeVar("_R", bound=_Timed)
_A = TypeVar("_A")
_B = TypeVar("_B")


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


def _setup(msg: Message) -> tuple[Worker, ConfigRecord, list[int], StagedWeights]:
    config = msg.content.config_records[keys.CONFIG]
    worker = get_worker(ClientSettings.from_config(config))
    names = [p.name for p in worker.model.contract.parameters]
    weights = arrays_of(msg.content.array_records[keys.ARRAYS], names, "message")
    cohort = config[keys.COHORT]
    assert isinstance(cohort, list)
    # validated once; every client's restore then reuses them in place
    return worker, config, [int(c) for c in cohort], worker.model.stage(weights)


AHEAD_BYTES = 2 << 20
AHEAD_CLIENTS = 32
"""A worker prepares clients ahead until their inputs hold this many bytes
(about what a core's cache keeps) or this many clients (see :class:`_Cohort`)."""


class _Cohort:
    """Runs a cohort's clients one by one; a failing client fails alone.

    Training prepares clients a few at a time before running them
    (:meth:`run_prepared`): their Python and numpy work back to back, then their
    ``Invoke``s with little in between, which saves ~100 us a small client (the
    interpreter's calls evict what the Python work needs from the caches). At
    most :data:`AHEAD_BYTES` of inputs (or :data:`AHEAD_CLIENTS` clients) are
    prepared ahead.
    """

    def __init__(self, cohort: list[int]):
        self.cohort = cohort
        self.ok: list[int] = []
        self._failed: dict[int, str] = {}
        self.seconds = 0.0

    def _attempt(self, cid: int, work: Callable[[_A], _B], arg: _A) -> _B | None:
        """``work(arg)``, or None after recording ``cid``'s failure.

        Any exception (ours, or an unexpected one, named by its type) is that
        client's one-line failure; the log gets no traceback per client, and
        the rest of the cohort still runs.
        """
        try:
            return work(arg)
        except FedTfliteError as e:
            self._failed[cid] = f"client {cid}: {e}"
        except Exception as e:  # reported as that client's failure
            first = str(e).strip().splitlines()[0] if str(e).strip() else ""
            self._failed[cid] = f"client {cid}: {type(e).__name__}: {first}"
        return None

    def _done(self, cid: int, result: _R) -> tuple[int, _R]:
        self.ok.append(cid)
        self.seconds += result.seconds
        return cid, result

    def run(self, client: Callable[[int], _R]) -> Iterator[tuple[int, _R]]:
        """``(client id, client(id))`` for every client that did not fail."""
        for cid in self.cohort:
            result = self._attempt(cid, client, cid)
            if result is not None:
                yield self._done(cid, result)

    def run_prepared(
        self,
        prepare: Callable[[int], PreparedClient],
        client: Callable[[PreparedClient], _R],
    ) -> Iterator[tuple[int, _R]]:
        """:meth:`run`, each client made ready by ``prepare`` a few clients ahead."""
        ready: list[PreparedClient] = []
        held = 0
        for k, cid in enumerate(self.cohort):
            prepared = self._attempt(cid, prepare, cid)
            if prepared is not None:
                ready.append(prepared)
                held += prepared.plan.bytes_held
            last = k == len(self.cohort) - 1
            if last or held >= AHEAD_BYTES or len(ready) >= AHEAD_CLIENTS:
                for p in ready:
                    result = self._attempt(p.client_id, client, p)
                    if result is not None:
                        yield self._done(p.client_id, result)
                ready, held = [], 0

    def status(self) -> ReplyStatus:
        """Which clients succeeded, and where they ran (failures in cohort order)."""
        failed = [c for c in self.cohort if c in self._failed]
        return ReplyStatus(
            ok=tuple(self.ok),
            failed=tuple(failed),
            errors=tuple(self._failed[c] for c in failed),
            total_compute_seconds=self.seconds,
            worker=_worker_id(),
            tensorflow=sys.modules.get("tensorflow") is not None,
        )


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local training of every simulated client of the message's cohort."""
    worker, config, cohort, global_weights = _setup(msg)
    names = [p.name for p in worker.model.contract.parameters]
    server_round = config["server-round"]
    assert isinstance(server_round, int)
    mu = config.get(keys.PROXIMAL_MU)  # Flower's FedProx: the term runs on device
    proximal_mu = float(mu) if isinstance(mu, int | float) else None
    control = None
    if keys.CONTROL in msg.content.array_records:  # SCAFFOLD
        control = arrays_of(msg.content.array_records[keys.CONTROL], names, "control")
    per_client = bool(config.get(keys.PER_CLIENT, 1))
    budget = step_budgets(config)

    def prepare(cid: int) -> PreparedClient:
        steps = budget.get(cid, -1)
        return worker.prepare(
            cid, server_round, max_steps=steps if steps >= 0 else None
        )

    def client(prepared: PreparedClient) -> ClientUpdate:
        # views: each update is added to the reply before the next client runs
        return worker.run_prepared(
            prepared,
            global_weights,
            proximal_mu=proximal_mu,
            control=control,
            copy_weights=False,
        )

    reply = TrainReplyEncoder(names, per_client)
    run = _Cohort(cohort)
    for cid, u in run.run_prepared(prepare, client):
        reply.add(cid, u.weights, u.num_examples, u.loss, u.seconds, u.control_delta)
    return Message(content=reply.content(run.status()), reply_to=msg)


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
    content = evaluate_reply(run.status(), n_total, loss_sum, correct)
    return Message(content=content, reply_to=msg)


@app.evaluate(keys.PERSONALIZE)
def personalize(msg: Message, context: Context) -> Message:
    """After the last round: each client of the cohort fine-tunes the global
    model on its own data, evaluated before and after
    (:mod:`fedtflite.protocol.personalization`)."""
    worker, config, cohort, global_weights = _setup(msg)
    epochs = personalize_epochs(config)
    run = _Cohort(cohort)
    results = [
        r for _, r in run.run(lambda c: worker.personalize(c, global_weights, epochs))
    ]
    return Message(content=personalize_reply(run.status(), results), reply_to=msg)
