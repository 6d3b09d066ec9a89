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
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

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
from server.grid import StoppableGrid

LONG = 30.0
"""An idle wait no test waits out."""
SOON = 5.0
"""Ample time for a woken thread to run, even on a loaded machine."""


@dataclass(frozen=True)
class Metadata:
    dst_node_id: int = 0
    reply_to_message_id: str = ""


@dataclass(frozen=True)
class Msg:
    """A message as the dispatcher reads one: its name and metadata."""

    name: str
    metadata: Metadata


def msg(text: str) -> Msg:
    """``"node:name"``: a message for ``node``."""
    return Msg(text, Metadata(dst_node_id=int(text.split(":")[0])))


def reply(to: str) -> Msg:
    return Msg(f"reply to {to}", Metadata(reply_to_message_id=to))


class LinkState:
    """Flower's link state as the dispatcher sees it: messages per node."""

    def __init__(self, nodes: list[int]):
        self.ins: dict[int, list[str]] = {n: [] for n in nodes}
        self.res: list[str] = []
        self.asked: list[int] = []
        self.polled = threading.Condition()
        self.lock = threading.Lock()

    @property
    def polls(self) -> int:
        return len(self.asked)

    def store_message_ins(self, message: Msg) -> str:
        with self.lock:
            self.ins[message.metadata.dst_node_id].append(message.name)
        return message.name

    def store_message_res(self, message: Msg) -> str:
        self.res.append(message.name)
        return message.name

    def get_message_ins(self, node_id: int, limit: int | None) -> list[str]:
        with self.lock:
            taken = self.ins[node_id][:limit]
            del self.ins[node_id][:limit]
        with self.polled:
            self.asked.append(node_id)
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
        self.state.store_message_ins(msg(f"{next(iter(self.state.ins))}:stop"))
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
    engine.state.store_message_ins(msg("2:train"))

    assert engine.received(1) == ["2:train"]
    assert time.monotonic() - start < SOON


def test_a_woken_dispatcher_goes_back_to_waiting(engine: Engine) -> None:
    # After moving a message it polls once more, finds nothing and waits: it
    # must not keep polling (a stale wake-up would spin a core).
    engine.state.store_message_ins(msg("1:train"))
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
        engine.state.store_message_ins(msg(f"1:m{k}"))
    engine.state.store_message_ins(msg("2:m0"))

    got = engine.received(5)
    assert sorted(got) == ["1:m0", "1:m1", "1:m2", "1:m3", "2:m0"]
    assert [m for m in got if m.startswith("1:")] == ["1:m0", "1:m1", "1:m2", "1:m3"]
    assert engine.state.ins == {1: [], 2: []}


def test_a_message_stored_before_the_dispatcher_starts_goes_at_once(
    slow_tick: None,
) -> None:
    e = Engine(LinkState([1]))
    e.state.store_message_ins(msg("1:early"))
    e.thread.start()
    assert e.received(1) == ["1:early"]
    e.close()


def test_a_stored_reply_is_stored_and_wakes_the_grid_naming_its_message(
    engine: Engine,
) -> None:
    wait_for_reply(0)  # forget replies of other tests
    assert engine.state.store_message_res(reply("m7")) == "reply to m7"
    assert engine.state.res == ["reply to m7"]
    start = time.monotonic()
    assert wait_for_reply(LONG) == {"m7"}
    assert time.monotonic() - start < SOON


def test_only_the_nodes_messages_were_stored_for_are_asked(slow_tick: None) -> None:
    # Flower's link state scans every stored message for each node asked: a
    # loop over all nodes per stored message grows with their square.
    e = Engine(LinkState(list(range(1, 9))))
    e.idle()  # the first look asks every node (messages stored before it ran)
    assert sorted(e.state.asked) == list(range(1, 9))
    e.state.asked.clear()
    e.state.store_message_ins(msg("5:train"))
    e.state.store_message_ins(msg("5:train2"))
    e.state.store_message_ins(msg("7:train"))
    assert sorted(e.received(3)) == ["5:train", "5:train2", "7:train"]
    time.sleep(0.1)
    assert set(e.state.asked) == {5, 7}
    assert len(e.state.asked) <= 3  # node 5 at most twice (stored during a look)
    e.close()


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
    state.store_message_ins(msg("1:late"))  # the class's own method again
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
    assert wait_for_reply(0.3) is None  # nothing named: ask for every reply
    assert time.monotonic() - start >= 0.3


def test_wait_for_reply_names_the_messages_replied_to_since_the_last_wait(
    no_pending_reply: None,
) -> None:
    reply_stored("a")
    reply_stored("b")
    assert wait_for_reply(LONG) == {"a", "b"}
    reply_stored("c")
    assert wait_for_reply(LONG) == {"c"}
    reply_stored("d")
    reply_stored()  # a reply to some message: the next poll asks for all
    assert wait_for_reply(LONG) is None


class _Grid:
    """Flower's grid as :class:`StoppableGrid` uses it; replies come from a thread."""

    pull_interval = LONG  # only a wake-up can end a wait within the test

    def __init__(self, ids: list[str]):
        self.ids = ids
        self.replies: dict[str, Msg] = {}
        self.asked: list[tuple[set[str], set[str]]] = []  # (asked, replied then)
        self.lock = threading.Lock()

    def push_messages(self, messages: Iterable[object]) -> list[str]:
        return list(self.ids)

    def pull_messages(self, ids: Iterable[str]) -> list[Msg]:
        with self.lock:
            ids = set(ids)
            self.asked.append((ids, set(self.replies)))
            return [self.replies.pop(i) for i in sorted(ids) if i in self.replies]

    def answer(self, to: str, *, named: bool = True) -> None:
        with self.lock:
            self.replies[to] = reply(to)
        reply_stored(to if named else None)


def _answer_later(grid: _Grid, order: list[tuple[str, bool]]) -> threading.Thread:
    def run() -> None:
        for to, named in order:
            time.sleep(0.05)
            grid.answer(to, named=named)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_the_grid_asks_for_the_replies_the_engine_named(
    no_pending_reply: None,
) -> None:
    grid = _Grid(["a", "b", "c", "d"])
    thread = _answer_later(grid, [("c", True), ("a", True), ("d", True), ("b", True)])
    replies = StoppableGrid(grid).send_and_receive([object()] * 4, timeout=LONG)
    thread.join()
    assert sorted(r.metadata.reply_to_message_id for r in replies) == list("abcd")
    first, *later = grid.asked
    assert first[0] == set("abcd")  # the first poll asks for all
    assert later and all(asked <= replied for asked, replied in later)


def test_the_grid_asks_for_all_after_a_reply_it_cannot_name(
    no_pending_reply: None,
) -> None:
    grid = _Grid(["a", "b", "c"])
    thread = _answer_later(grid, [("b", True), ("c", False), ("a", True)])
    replies = StoppableGrid(grid).send_and_receive([object()] * 3, timeout=LONG)
    thread.join()
    assert len(replies) == 3
    # after the unnamed reply to "c", a poll asks for every pending reply,
    # "a" (not replied yet) too
    assert any(not asked <= replied for asked, replied in grid.asked[1:])


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
