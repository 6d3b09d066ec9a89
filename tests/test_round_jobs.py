"""RoundJobs: a round's bookkeeping in one background thread, in order, one
round behind at most; the first failure reaches the thread that submits, and
nothing after it runs."""

from __future__ import annotations

import threading
import time

import pytest

from server.round_jobs import RoundJobs


class _RecordError(Exception):
    pass


def test_jobs_run_in_order_off_the_submitting_thread() -> None:
    jobs, done, threads = RoundJobs(), [], set()

    def job(k: int) -> None:
        time.sleep(0.002 * (5 - k))  # the earlier, the slower
        done.append(k)
        threads.add(threading.get_ident())

    for k in range(5):
        jobs.submit(lambda k=k: job(k))
    assert jobs.close() is None
    assert done == [0, 1, 2, 3, 4]
    assert threading.get_ident() not in threads and len(threads) == 1


def test_submit_waits_for_the_job_before() -> None:
    jobs, release, seen = RoundJobs(), threading.Event(), []

    def first() -> None:
        release.wait(5)
        seen.append("first")

    jobs.submit(first)  # returns at once: round k's records run ...
    second = threading.Thread(target=jobs.submit, args=(lambda: seen.append("2"),))
    second.start()
    second.join(0.1)
    assert second.is_alive()  # ... and round k + 1's wait for them
    release.set()
    second.join(5)
    assert jobs.close() is None and seen == ["first", "2"]


def test_a_failure_skips_later_jobs_and_reaches_the_submitter() -> None:
    jobs, done = RoundJobs(), []

    def fail() -> None:
        raise _RecordError("round 3's records")

    jobs.submit(lambda: done.append(1))
    jobs.submit(fail)
    with pytest.raises(_RecordError, match="round 3"):  # round 4's submission
        jobs.submit(lambda: done.append(4))
    with pytest.raises(_RecordError):  # and every one after it
        jobs.submit(lambda: done.append(5))
    error = jobs.close()
    assert isinstance(error, _RecordError) and done == [1]


def test_close_returns_a_failure_of_the_last_job() -> None:
    jobs = RoundJobs()
    jobs.submit(lambda: None)
    jobs.submit(lambda: 1 / 0 and None)
    assert isinstance(jobs.close(), ZeroDivisionError)
