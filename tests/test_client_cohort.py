"""The ClientApp's cohort loop: clients prepared a few ahead, failures alone.

``_Cohort`` runs here on stand-in ``prepare`` and ``client`` callables that log
what they are called with, so the order of the work and the reply's status can
be written out by hand. The real handlers run it in
``tests/integration/test_client_app.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pytest

import clients.client_app as client_app
from clients.client_app import _Cohort
from clients.worker import PreparedClient
from fedtflite.errors import PartitionError
from fedtflite.runtime import TrainPlan


@dataclass(frozen=True)
class Done:
    client_id: int
    seconds: float


class Log:
    """``prepare`` and ``client`` stand-ins: a plan holding ``held[cid]`` bytes,
    a result of ``cid / 10`` seconds; each call logged (``P3``, ``R3``)."""

    def __init__(
        self,
        held: dict[int, int] | None = None,
        fail_prepare: Iterable[int] = (),
        fail_run: Iterable[int] = (),
    ):
        self.calls: list[str] = []
        self.held = held or {}
        self.fail_prepare, self.fail_run = set(fail_prepare), set(fail_run)

    def prepare(self, cid: int) -> PreparedClient:
        self.calls.append(f"P{cid}")
        if cid in self.fail_prepare:
            raise PartitionError(f"client {cid} holds no training example")
        step = ({"x": np.zeros(self.held.get(cid, 0), np.uint8)}, 1, 1)
        return PreparedClient(cid, 1, TrainPlan((step,), 1))

    def client(self, prepared: PreparedClient) -> Done:
        cid = prepared.client_id
        self.calls.append(f"R{cid}")
        if cid in self.fail_run:
            raise ValueError(f"bad weights of {cid}\nsecond line")
        return Done(cid, cid / 10)


def test_clients_are_prepared_a_few_ahead_then_run_in_order(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_app, "AHEAD_CLIENTS", 2)
    log = Log()
    cohort = _Cohort([10, 11, 12, 13, 14])

    done = list(cohort.run_prepared(log.prepare, log.client))

    assert " ".join(log.calls) == "P10 P11 R10 R11 P12 P13 R12 R13 P14 R14"
    assert [cid for cid, _ in done] == [10, 11, 12, 13, 14]
    assert [r.client_id for _, r in done] == [10, 11, 12, 13, 14]
    status = cohort.status()
    assert status.ok == (10, 11, 12, 13, 14) and status.failed == ()
    assert status.total_compute_seconds == pytest.approx(6.0)


def test_prepared_inputs_are_bounded_in_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    # 100 bytes ahead at most: 60 + 60 reaches it, 30 + 30 + 30 does not (but
    # the fourth client does), a plan made as it runs holds nothing.
    monkeypatch.setattr(client_app, "AHEAD_BYTES", 100)
    log = Log(held={1: 60, 2: 60, 3: 30, 4: 30, 5: 30, 6: 30, 7: 0})
    cohort = _Cohort([1, 2, 3, 4, 5, 6, 7])

    list(cohort.run_prepared(log.prepare, log.client))

    assert " ".join(log.calls) == "P1 P2 R1 R2 P3 P4 P5 P6 R3 R4 R5 R6 P7 R7"


def test_failures_in_prepare_and_in_run_are_reported_in_cohort_order() -> None:
    # Client 5 fails in prepare, before client 3 (prepared first) fails in its
    # run: the reply still lists them as the cohort does, each with one line.
    log = Log(fail_prepare=[5], fail_run=[3])
    cohort = _Cohort([7, 3, 5, 1])

    done = list(cohort.run_prepared(log.prepare, log.client))

    assert " ".join(log.calls) == "P7 P3 P5 P1 R7 R3 R1"  # 5 never runs
    assert [cid for cid, _ in done] == [7, 1]
    status = cohort.status()
    assert status.ok == (7, 1)
    assert status.failed == (3, 5)
    assert status.errors == (
        "client 3: ValueError: bad weights of 3",
        "client 5: client 5 holds no training example",
    )
    assert status.total_compute_seconds == pytest.approx(0.8)


def test_the_plain_loop_reports_failures_the_same_way() -> None:
    def evaluate(cid: int) -> Done:
        if cid == 4:
            raise PartitionError("client 4 holds no test example")
        return Done(cid, 1.0)

    cohort = _Cohort([9, 4, 2])
    assert [cid for cid, _ in cohort.run(evaluate)] == [9, 2]
    status = cohort.status()
    assert (status.ok, status.failed) == ((9, 2), (4,))
    assert status.errors == ("client 4: client 4 holds no test example",)
    assert status.total_compute_seconds == 2.0
