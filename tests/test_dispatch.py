"""Flower's engine woken by stored messages, and the grid woken by stored replies.

:func:`~fedtflite.orchestrator.dispatch.dispatch_on_store` runs here against a
stand-in for Flower's link state (the three methods it uses). The idle wait is
raised to a minute, so a message that arrives within seconds can only have
woken the loop: nothing here measures how fast.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import pytest

import fedtflite.orchestrator.dispatch as dispatch
from fedtflite.orchestrator.dispatch import dispatch_on_store, waking_dispatcher
from fedtflite.wakeup import (
    SIGNALLED_POLL,
    poll_interval,
    reply_stored,
    signalling,
    wait_for_reply,
)

LONG = 30.0
"""An idle wait no test waits out."""
SOON = 5.0
"""Ample time for a woken thread to run, even on a loaded machine."""


class LinkState:
    """Flower's link state as the dispatcher sees it: messages per node."""

    def __init__(self, nodes: list[int]):
        self.ins: dict[int, list[str]] = {n: [] for n in nodes}
        self.res: list[str] = []
        self.polls = 0
        self.polled = threading.Condition()
        self.lock = threading.Lock()

    def store_message_ins(self, message: str) -> str:
        node = int(message.split(":")[0])
        with self.lock:
            self.ins[node].append(message)
        return message

    def store_message_res(self, message: str) -> str:
        self.res.append(message)
        return message

    def get_message_ins(self, node_id: int, limit: int) -> list[str]:
        with self.lock:
            taken = self.ins[node_id][:limit]
            del self.ins[node_id][:limit]
        with self.polled:
            self.polls += 1
            self.polled.notify_all()
        return taken

    def wait_polls(self, count: int) -> None:
        with self.polled:
            assert self.polled.wait_for(lambda: self.polls >= count, SOON)


class Engine:
    """``dispatch_on_store`` on its own thread, as Flower's engine runs it."""

    def __init__(self, state: LinkState):
        self.state = state
        self.queue: queue.Queue[str] = queue.Queue()
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=dispatch_on_store,
            args=(state, self.queue, {n: n for n in state.ins}, self.stop),
            daemon=True,
        )

    def idle(self) -> None:
        """Start; return once a full poll found nothing (the loop then waits)."""
        self.thread.start()
        self.state.wait_polls(len(self.state.ins))

    def received(self, count: int) -> list[str]:
        return [self.queue.get(timeout=SOON) for _ in range(count)]

    def close(self) -> None:
        self.stop.set()
        self.state.store_message_ins(f"{next(iter(self.state.ins))}:stop")  # wake it
        self.thread.join(SOON)
        assert not self.thread.is_alive()


@pytest.fixture
def slow_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dispatch, "FLOWER_TICK", LONG)


@pytest.fixture
def engine(slow_tick: None) -> Iterator[Engine]:
    e = Engine(LinkState([1, 2]))
    e.idle()
    yield e
    e.close()


def test_a_stored_message_wakes_the_idle_dispatcher(engine: Engine) -> None:
    start = time.monotonic()
    engine.state.store_message_ins("2:train")

    assert engine.received(1) == ["2:train"]
    assert time.monotonic() - start < SOON


def test_a_woken_dispatcher_goes_back_to_waiting(engine: Engine) -> None:
    # After moving a message it polls once more, finds nothing and waits: it
    # must not keep polling (a stale wake-up would spin a core).
    engine.state.store_message_ins("1:train")
    engine.received(1)
    time.sleep(0.05)
    polls = engine.state.polls
    time.sleep(0.3)
    assert engine.state.polls - polls <= 2 * len(engine.state.ins)


def test_every_message_of_a_node_goes_without_waiting_a_tick_each(
    engine: Engine,
) -> None:
    # Flower's loop takes one message per node per 0.1 s tick; a tick here is a
    # minute, so only polling again at once moves these within seconds.
    for k in range(4):
        engine.state.store_message_ins(f"1:m{k}")
    engine.state.store_message_ins("2:m0")

    got = engine.received(5)
    assert sorted(got) == ["1:m0", "1:m1", "1:m2", "1:m3", "2:m0"]
    assert [m for m in got if m.startswith("1:")] == ["1:m0", "1:m1", "1:m2", "1:m3"]
    assert engine.state.ins == {1: [], 2: []}


def test_a_message_stored_before_the_dispatcher_starts_goes_at_once(
    slow_tick: None,
) -> None:
    e = Engine(LinkState([1]))
    e.state.store_message_ins("1:early")
    e.thread.start()
    assert e.received(1) == ["1:early"]
    e.close()


def test_a_stored_reply_is_stored_and_wakes_the_grid(engine: Engine) -> None:
    wait_for_reply(0)  # forget replies of other tests
    assert engine.state.store_message_res("1:reply") == "1:reply"
    assert engine.state.res == ["1:reply"]
    start = time.monotonic()
    wait_for_reply(LONG)
    assert time.monotonic() - start < SOON


def test_stopping_restores_the_link_state() -> None:
    state = LinkState([1])
    e = Engine(state)
    e.idle()
    assert "store_message_ins" in vars(state) and "store_message_res" in vars(state)

    e.stop.set()  # Flower's idle wait (0.1 s) ends the loop
    e.thread.join(SOON)
    assert not e.thread.is_alive()
    assert "store_message_ins" not in vars(state)
    assert "store_message_res" not in vars(state)
    state.store_message_ins("1:late")  # the class's own method again
    assert state.ins == {1: ["1:late"]}
    assert e.queue.empty()


def test_waking_dispatcher_swaps_flowers_dispatcher_in_and_back() -> None:
    from flwr.server.superlink.fleet.vce import vce_api

    flower = vce_api.add_messages_to_queue
    assert flower is not dispatch_on_store
    with waking_dispatcher() as applied:
        assert applied is True
        assert vce_api.add_messages_to_queue is dispatch_on_store
    assert vce_api.add_messages_to_queue is flower

    with pytest.raises(RuntimeError, match="a failed run"), waking_dispatcher():
        raise RuntimeError("a failed run")
    assert vce_api.add_messages_to_queue is flower


# -- the grid's wait ---------------------------------------------------------------


@pytest.fixture
def no_pending_reply() -> None:
    wait_for_reply(0)  # a reply stored by an earlier test ends no wait here


def test_wait_for_reply_returns_when_a_reply_is_stored(no_pending_reply: None) -> None:
    threading.Timer(0.05, reply_stored).start()
    start = time.monotonic()
    wait_for_reply(LONG)
    assert time.monotonic() - start < SOON


def test_a_reply_stored_before_the_wait_ends_it_once(no_pending_reply: None) -> None:
    reply_stored()
    start = time.monotonic()
    wait_for_reply(LONG)
    assert time.monotonic() - start < SOON
    start = time.monotonic()
    wait_for_reply(0.2)  # cleared: the next wait is the full interval
    assert time.monotonic() - start >= 0.2


def test_wait_for_reply_times_out_without_a_reply(no_pending_reply: None) -> None:
    start = time.monotonic()
    wait_for_reply(0.3)
    assert time.monotonic() - start >= 0.3


def test_the_grid_polls_slowly_only_while_replies_are_signalled(engine: Engine) -> None:
    # The engine fixture's dispatcher is running: replies are signalled, so the
    # grid's polls (which then only look for a stop request) can be rare.
    assert poll_interval(0.005) == SIGNALLED_POLL
    engine.close()
    assert poll_interval(0.005) == 0.005  # Flower's loop (or none): poll as asked


def test_signalling_nests_and_ends_with_its_block() -> None:
    assert poll_interval(0.02) == 0.02
    with signalling():
        with signalling():
            assert poll_interval(0.02) == SIGNALLED_POLL
        assert poll_interval(0.02) == SIGNALLED_POLL
    assert poll_interval(0.02) == 0.02
