"""Seeded client sampling and cohort messages around any Flower strategy.

:class:`CohortSampling` is a mixin placed before a Flower strategy class. It
changes how a round's clients are *reached*, never how they are aggregated:

- **How many.** Flower's own ``configure_train`` / ``configure_evaluate`` run
  against a view of the federation with one node per simulated client
  (``num-clients``), so ``fraction-*`` and ``min-*-clients`` mean what they mean
  in Flower, and strategy-specific config (FedProx's ``proximal-mu``, ...) is
  kept.
- **Which.** That many clients drawn uniformly without replacement from
  ``np.random.default_rng([seed, round, phase])`` (Flower samples with the
  unseeded global ``random``), so a run depends on its seed only.
- **How they travel.** The sample is split into cohorts
  (:func:`~fedtflite.algorithms.sampling.split_cohorts`), one message per cohort
  to the federation's nodes in turn. Each reply is unpacked into what Flower's
  strategy expects (:mod:`fedtflite.protocol.keys`): one reply per client,
  or for strategies whose spec says ``pre_aggregated``
  (:mod:`fedtflite.simulation.strategy_registry`) one
  pre-aggregated reply per cohort weighted by its examples (the same weighted
  mean), and one error reply per failed client.

Failed clients: a client whose training fails (non-finite loss or weights, data
that do not fit) is reported by its cohort and left out of the aggregate, and
only it; a cohort whose whole message failed (its worker crashed) loses all its
clients. A worker process that dies is restarted by Ray and the message it was
running is retried on the new process (``max_restarts``, ``max_task_retries``;
see :data:`fedtflite.orchestrator.simulate.WORKER_RESTARTS`), so a killed worker
costs no client. A worker Ray cannot bring back fails its messages; two phases
in a row (train, then evaluate, of the same or the next round) that lose a whole
message end the run with :class:`~fedtflite.errors.RunFailedError` rather than
running on crippled. A round in which every client failed keeps the
previous global weights. The history counts failed clients in
``clients_failed``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from flwr.app import (
    Array,
    ArrayRecord,
    ConfigRecord,
    Message,
    MetricRecord,
    RecordDict,
)
from flwr.serverapp import Grid

from fedtflite.algorithms.sampling import Phase, sample_clients, split_cohorts
from fedtflite.devices import RoundTiming, VirtualRun
from fedtflite.errors import RunFailedError
from fedtflite.protocol import keys
from fedtflite.protocol.replies import decode_reply, message_config
from fedtflite.stop import check_stop

__all__ = ["CohortSampling", "RoundStats"]

_log = logging.getLogger("fedtflite")
NODE_TIMEOUT = 300.0
"""Seconds a round waits for the first Flower node to connect."""


@dataclass
class RoundStats:
    """What the strategy saw in one round (filled as the round runs).

    Traffic is counted per simulated client, as a real deployment would send
    it: the weights (plus SCAFFOLD's control variate) down to every sampled
    client, and each successful client's reply up. ``clients_run`` are the
    sampled clients actually trained (on the virtual clock, those aggregated);
    ``timing`` is the round on the virtual clock (None without one).
    """

    clients_sampled: int = 0
    clients_run: int = 0
    clients_ok: int = 0
    clients_failed: int = 0
    bytes_down: int = 0
    bytes_up: int = 0
    messages: int = 0
    compute_seconds: float = 0.0
    train_metrics: dict[str, float] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    workers: dict[str, int] = field(default_factory=dict)
    workers_with_tensorflow: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    timing: RoundTiming | None = None


class _VirtualGrid:
    """What Flower's sampling sees: one node per simulated client."""

    def __init__(self, num_clients: int):
        self._ids = range(num_clients)

    def get_node_ids(self) -> Iterable[int]:
        return self._ids


def _wait_for_nodes(grid: Grid, timeout: float = NODE_TIMEOUT) -> list[int]:
    """The grid's node ids, once at least one node has connected.

    Flower's own sampling waits for nodes too, but it runs on the virtual grid;
    the real one can still be empty when the first round starts right away (a
    resumed run skips the initial evaluation that otherwise gives the simulation
    engine's nodes time to register).
    """
    start = last_log = time.monotonic()
    while not (nodes := sorted(grid.get_node_ids())):
        check_stop()
        now = time.monotonic()
        if now - start > timeout:
            raise RuntimeError(
                f"no Flower node connected within {timeout:.0f} s; is the "
                "simulation engine (or the SuperNodes) running?"
            )
        if now - last_log > 10:
            _log.warning("waiting for Flower nodes to connect (%.0f s)", now - start)
            last_log = now
        time.sleep(0.05)
    return nodes


def _record_bytes(content: RecordDict) -> int:
    return sum(int(r.count_bytes()) for r in content.array_records.values())


def _scalars(metrics: MetricRecord | None) -> dict[str, float]:
    return {
        k: float(v) for k, v in (metrics or {}).items() if isinstance(v, int | float)
    }


class CohortSampling:
    """Mixin placed before a Flower strategy class (see the module docstring).

    Attributes set by :func:`server.strategies.make_strategy`: ``seed``,
    ``num_clients``, ``clients_per_message`` (0 = one message per node), ``per_client``
    (reply every client's update instead of a pre-aggregated cohort), ``stats``;
    ``virtual`` (the run's :class:`~fedtflite.devices.VirtualRun`; None: sample
    every client uniformly and time nothing) is set by the server.
    ``round_offset`` (set by a resumed run) is added to the round numbers Flower's
    loop passes in, so that round ``k`` of a run resumed after round ``r`` is
    round ``r + k`` everywhere: sampling, the clients' seeds, the statistics.
    """

    seed: int
    num_clients: int
    clients_per_message: int
    per_client: bool
    stats: dict[int, RoundStats]
    virtual: VirtualRun | None = None
    round_offset: int = 0
    _dtypes: dict[str, np.dtype[Any]]
    _lost_in_a_row: int = 0
    """Phases in a row in which a whole message failed (a worker died)."""

    def _round(self, server_round: int) -> RoundStats:
        return self.stats.setdefault(server_round, RoundStats())

    def _choose(
        self, template: Sequence[Message], server_round: int, phase: Phase
    ) -> tuple[list[int], dict[int, int]]:
        """The clients to run and the step budgets of those cut short.

        Training rounds are planned on the virtual clock (:mod:`fedtflite.
        devices`) when the run has one: only online clients are sampled, and
        only those whose update will be aggregated are run.
        """
        s = self._round(server_round)
        content = template[0].content
        per_client = _record_bytes(content)
        if phase is Phase.TRAIN and self.virtual is not None:
            weights = content.array_records[keys.ARRAYS].count_bytes()
            up = weights * (2 if keys.CONTROL in content.array_records else 1)
            plan, timing = self.virtual.plan_round(
                server_round, len(template), per_client, up
            )
            s.timing = timing
            s.clients_sampled = timing.clients_sampled
            s.bytes_down += timing.clients_sampled * per_client
            return plan.aggregated.tolist(), plan.budget()
        chosen = sample_clients(
            self.seed, server_round, phase, self.num_clients, len(template)
        )
        if phase is Phase.TRAIN:
            s.clients_sampled = len(template)
        s.bytes_down += len(template) * per_client
        return chosen.tolist(), {}

    def _cohort_messages(
        self,
        template: Sequence[Message],
        chosen: list[int],
        budget: dict[int, int],
        grid: Grid,
    ) -> list[Message]:
        if not chosen:
            return []
        nodes = _wait_for_nodes(grid)
        content = template[0].content
        message_type = template[0].metadata.message_type
        out = []
        for k, cohort in enumerate(
            split_cohorts(chosen, self.clients_per_message, len(nodes))
        ):
            config = message_config(
                content.config_records[keys.CONFIG], cohort, self.per_client, budget
            )
            rd = RecordDict({k: v for k, v in content.items() if k != keys.CONFIG})
            rd[keys.CONFIG] = config
            out.append(
                Message(
                    content=rd,
                    message_type=message_type,
                    dst_node_id=nodes[k % len(nodes)],
                )
            )
        return out

    def _send(
        self, template: Iterable[Message], server_round: int, grid: Grid, phase: Phase
    ) -> list[Message]:
        """Flower's messages (one per sampled client) as cohort messages, counted."""
        template = list(template)
        if not template:
            return []
        chosen, budget = self._choose(template, server_round, phase)
        out = self._cohort_messages(template, chosen, budget, grid)
        s = self._round(server_round)
        if phase is Phase.TRAIN:
            s.clients_run = len(chosen)
        s.messages += len(out)
        return out

    def _construct_messages(
        self, record: RecordDict, node_ids: list[int], message_type: str
    ) -> Iterable[Message]:
        """Flower's strategies build one ``Message`` per sampled node (here: per
        sampled client; ~5 us each, 50 ms a round at 10 000 clients) that
        :meth:`_send` only counts and reads the content of before regrouping the
        clients into cohorts: one message stands for all of them."""
        if not node_ids:
            return []
        one = Message(
            content=record, message_type=message_type, dst_node_id=node_ids[0]
        )
        return [one] * len(node_ids)

    def configure_train(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Flower's configure_train, sent as cohorts of seeded-sampled clients."""
        server_round += self.round_offset
        self._dtypes = {k: a.numpy().dtype for k, a in arrays.items()}
        virtual = _VirtualGrid(self.num_clients)
        flower = super().configure_train(server_round, arrays, config, virtual)  # type: ignore[misc]
        return self._send(flower, server_round, grid, Phase.TRAIN)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid
    ) -> Iterable[Message]:
        """Flower's configure_evaluate, sent as cohorts of seeded-sampled clients."""
        server_round += self.round_offset
        virtual = _VirtualGrid(self.num_clients)
        flower = super().configure_evaluate(server_round, arrays, config, virtual)  # type: ignore[misc]
        return self._send(flower, server_round, grid, Phase.EVALUATE)

    def _unpack(
        self, replies: Iterable[Message], s: RoundStats, *, train: bool
    ) -> tuple[list[Message], int]:
        """Per-client (or pre-aggregated) replies in client order, and #ok clients."""
        keyed: list[tuple[int, Message]] = []
        ok_total = 0
        lost = []
        for reply in replies:
            if reply.has_error():
                lost.append(_first_line(reply.error.reason or ""))
                s.errors.append(f"a whole message failed: {lost[-1]}")
                continue
            decoded = decode_reply(reply, train=train)
            status = decoded.status
            ok_total += len(status.ok)
            worker = status.worker
            s.workers[worker] = (
                s.workers.get(worker, 0) + len(status.ok) + len(status.failed)
            )
            if status.tensorflow:
                s.workers_with_tensorflow.add(worker)
            if train:
                s.compute_seconds += status.total_compute_seconds
            s.errors.extend(status.errors[: len(status.failed)])
            for cid, message in decoded.replies:
                if train and not message.has_error():
                    copies = len(status.ok) if decoded.pre_aggregated else 1
                    s.bytes_up += copies * _record_bytes(message.content)
                keyed.append((cid, message))
        keyed.sort(key=lambda item: item[0])  # aggregation order = client order
        self._lost_in_a_row = self._lost_in_a_row + 1 if lost else 0
        if self._lost_in_a_row >= 2:
            server_round = next(r for r, v in self.stats.items() if v is s)
            raise RunFailedError(
                f"round {server_round}: a worker process died and was not "
                f"replaced (whole messages failed in two phases in a row); last: "
                f"{lost[0]}"
            )
        return [m for _, m in keyed], ok_total

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Flower's aggregate_train on the unpacked replies."""
        server_round += self.round_offset
        s = self._round(server_round)
        unpacked, ok = self._unpack(replies, s, train=True)
        s.clients_ok, s.clients_failed = ok, s.clients_run - ok
        if s.errors:
            _log.warning(
                "round %d: %d of %d clients failed; first: %s",
                server_round,
                s.clients_failed,
                s.clients_run,
                s.errors[0],
            )
        arrays: ArrayRecord | None
        metrics: MetricRecord | None
        arrays, metrics = super().aggregate_train(server_round, unpacked)  # type: ignore[misc]
        s.train_metrics = _scalars(metrics)
        if arrays is not None:
            arrays = _in_dtypes(arrays, self._dtypes)
        return arrays, metrics

    def aggregate_evaluate(
        self, server_round: int, replies: Iterable[Message]
    ) -> MetricRecord | None:
        """Flower's aggregate_evaluate on the unpacked replies with test examples."""
        server_round += self.round_offset
        s = self._round(server_round)
        unpacked, _ = self._unpack(replies, s, train=False)
        # A cohort whose clients hold no test example has weight 0; Flower's
        # weighted mean would divide by a zero total.
        weighted = [
            m for m in unpacked if m.has_error() or _num_examples(m.content) > 0
        ]
        metrics: MetricRecord | None = None
        if any(not m.has_error() for m in weighted):
            metrics = super().aggregate_evaluate(server_round, weighted)  # type: ignore[misc]
        s.eval_metrics = _scalars(metrics)
        return metrics


def _in_dtypes(arrays: ArrayRecord, dtypes: dict[str, np.dtype[Any]]) -> ArrayRecord:
    """``arrays`` with every array in its dtype of ``dtypes``.

    Flower's FedOpt family (FedAdam, FedYogi, FedAdagrad) returns float64
    arrays; the model's restore takes its own dtype (float32). Arrays already in
    their dtype are kept as they are (a conversion would decode and encode them).
    """
    wrong = [k for k, a in arrays.items() if k in dtypes and a.dtype != str(dtypes[k])]
    if not wrong:
        return arrays
    return ArrayRecord(
        array_dict={
            k: Array(np.asarray(a.numpy(), dtypes[k])) if k in wrong else a
            for k, a in arrays.items()
        }
    )


def _first_line(text: str) -> str:
    """The first non-empty line of an error text (Ray's run to many lines)."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[0] if lines else "(no message)"


def _num_examples(content: RecordDict) -> float:
    value: Any = content[keys.METRICS][keys.NUM_EXAMPLES]
    return float(value)
