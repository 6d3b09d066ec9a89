"""A round's bookkeeping in the background, while the next round trains.

After a round is aggregated, the ServerApp evaluates the global weights on the
test set, records the round (``history.csv``, the callbacks) and writes its
checkpoint: ~30 ms for the ``mlp``, ~1.5 s for the ``cnn``, during which Flower's
loop, and so every client, would wait. :class:`RoundJobs` runs that work in one
background thread, one round after another in order, while Flower sends the
next round's messages. LiteRT releases the GIL while it runs, so the two
overlap. Results are unchanged: the evaluation and the checkpoint get the
weights and the strategy's state as they were when the round ended (copies).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["RoundJobs"]


class RoundJobs:
    """Jobs run in order in one background thread; the first failure stops them.

    A job that raises keeps its exception: the jobs submitted after it are
    skipped, :meth:`check` (called before the next submission) raises it in
    the submitting thread and :meth:`close` returns it. So a failure in round
    ``k``'s bookkeeping (a callback, a full disk) stops the run when round
    ``k + 1`` ends, and no later round is recorded or checkpointed.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fedtflite-round")
        self._error: BaseException | None = None
        self._lock = threading.Lock()
        self._last: Future[None] | None = None

    def submit(self, job: Callable[[], None]) -> None:
        """Run ``job`` once the job before it is done (raises its error).

        One job at a time, so the bookkeeping is never more than one round
        behind: round ``k``'s is done before round ``k + 2`` starts, and a
        run resumed after a crash re-runs at most two rounds.
        """
        if self._last is not None:
            self._last.result()  # never raises: _run keeps the error
        self.check()
        self._last = self._pool.submit(self._run, job)

    def check(self) -> None:
        """Raise the exception of a job that failed, if one did."""
        with self._lock:
            error = self._error
        if error is not None:
            raise error

    def close(self) -> BaseException | None:
        """Wait for every job; the first failure's exception, or None."""
        self._pool.shutdown(wait=True)
        with self._lock:
            return self._error

    def _run(self, job: Callable[[], None]) -> None:
        with self._lock:
            if self._error is not None:
                return
        try:
            job()
        except BaseException as e:  # handed to the submitting thread
            with self._lock:
                self._error = e
