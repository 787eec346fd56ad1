"""The live feed's replay: exactly the missed events, in order, and a reset when history fell short."""

from __future__ import annotations

import asyncio
import json

from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend

from naboom.realtime.feed import LiveEvent, LiveFeed, MemoryFeedLog, Sink


def _plugin(history: int) -> ChannelsPlugin:
    return ChannelsPlugin(backend=MemoryChannelsBackend(history=history), arbitrary_channels_allowed=True)


async def test_event_ids_increase_per_region_and_survive_a_new_counter() -> None:
    log = MemoryFeedLog(_plugin(history=10))
    first = [log.reserve("A", 1) for _ in range(5)]
    assert first == sorted(set(first))
    block = log.reserve("A", 10)
    assert block > first[-1] and log.reserve("A", 1) == block + 10
    # a restarted process (new counter) still hands out larger ids: they start from the clock
    assert MemoryFeedLog(_plugin(history=10)).reserve("A", 1) > first[0]


async def test_a_burst_published_as_one_message_reaches_subscribers_as_separate_events() -> None:
    channels = _plugin(history=10)
    async with channels:
        feed = LiveFeed(channels, MemoryFeedLog(channels), history=10)
        async with feed.subscribe("ZA-LP", None) as replay:
            sent = await feed.publish_many("ZA-LP", [("incident.created", {"msg": f"tab\there {n}\n"}) for n in range(3)])
            events = replay.events(heartbeat=5)
            got = [await anext(events) for _ in range(3)]
    assert [e.event_id for e in got] == list(sent) == list(range(sent[0], sent[0] + 3))
    assert [json.loads(e.json)["msg"] for e in got] == [f"tab\there {n}\n" for n in range(3)]


async def test_a_reconnecting_subscriber_gets_exactly_what_it_missed_then_live_events() -> None:
    channels = _plugin(history=10)
    async with channels:
        feed = LiveFeed(channels, MemoryFeedLog(channels), history=10)
        seen = await feed.publish("ZA-LP", "incident.created", {"id": "a"})
        await feed.publish("ZA-LP", "incident.created", {"id": "b"})
        await feed.publish("OTHER", "incident.created", {"id": "x"})
        await feed.publish("ZA-LP", "incident.updated", {"id": "c"})
        async with feed.subscribe("ZA-LP", seen) as replay:
            assert not replay.gap
            events = replay.events(heartbeat=5)
            got = [await anext(events), await anext(events)]
            await feed.publish("ZA-LP", "incident.created", {"id": "d"})
            got.append(await anext(events))
    assert [json.loads(e.json)["id"] for e in got] == ["b", "c", "d"]
    assert [e.type for e in got] == ["incident.created", "incident.updated", "incident.created"]
    assert got[0].event_id < got[1].event_id < got[2].event_id


async def test_a_subscriber_older_than_the_whole_history_is_told_to_resync() -> None:
    channels = _plugin(history=3)
    async with channels:
        feed = LiveFeed(channels, MemoryFeedLog(channels), history=3)
        old = await feed.publish("ZA-LP", "incident.created", {"id": "lost"})
        for n in range(3):
            await feed.publish("ZA-LP", "incident.created", {"id": n})
        async with feed.subscribe("ZA-LP", old) as replay:
            assert replay.gap
            assert [json.loads(e.json)["id"] for e in replay.missed] == [0, 1, 2]


async def test_an_idle_subscriber_gets_heartbeat_marks() -> None:
    channels = _plugin(history=3)
    async with channels:
        feed = LiveFeed(channels, MemoryFeedLog(channels), history=3)
        async with feed.subscribe("ZA-LP", None) as replay:
            events = replay.events(heartbeat=0.01)
            assert await anext(events) is None
            await feed.publish("ZA-LP", "incident.created", {"id": "after-idle"})
            event = await anext(events)
            while event is None:
                event = await anext(events)
            assert json.loads(event.json)["id"] == "after-idle"


def _events(first: int, count: int) -> list[LiveEvent]:
    return [LiveEvent.numbered(first + n, b"incident.created", b'{"n":%d}' % n) for n in range(count)]


class _Socket:
    """A connection whose writes complete at once until ``block()``, then wait for ``release()``."""

    def __init__(self) -> None:
        self.written: list[int] = []
        self.gate: asyncio.Future[None] | None = None
        self.fail = False
        self.wrote = asyncio.Event()

    async def until(self, count: int) -> None:
        """Wait until ``count`` events have been written."""
        while len(self.written) < count:
            self.wrote.clear()
            await asyncio.wait_for(self.wrote.wait(), 5)

    def block(self) -> None:
        self.gate = asyncio.get_running_loop().create_future()

    def release(self) -> None:
        assert self.gate is not None
        self.gate.set_result(None)
        self.gate = None

    async def send(self, event: LiveEvent) -> None:
        if self.fail:
            raise OSError("connection reset")
        if self.gate is not None:
            await self.gate
        self.written.append(event.event_id)
        self.wrote.set()


async def test_a_write_that_must_wait_keeps_later_events_in_order_and_writes_each_once() -> None:
    socket = _Socket()
    sink = Sink(newest=0, backlog=100)
    sink.go_live(0, socket.send)
    loop = asyncio.get_running_loop()
    sink.offer(_events(1, 2), loop.time())
    assert socket.written == [1, 2]  # written within the broadcast's own step
    socket.block()
    sink.offer(_events(3, 1), loop.time())  # this write waits on the socket
    sink.offer(_events(3, 4), loop.time())  # 3 again (a repeat) and three new ones
    assert socket.written == [1, 2]
    socket.release()
    await socket.until(6)
    sink.offer(_events(7, 1), loop.time())
    await socket.until(7)
    assert socket.written == [1, 2, 3, 4, 5, 6, 7]
    assert not sink.ended.done()
    await sink.close()


async def test_a_connection_too_far_behind_is_ended_so_it_reconnects_with_its_last_id() -> None:
    socket = _Socket()
    sink = Sink(newest=0, backlog=3)
    ended = sink.go_live(0, socket.send)
    socket.block()
    loop = asyncio.get_running_loop()
    sink.offer(_events(1, 1), loop.time())  # waiting on the socket
    sink.offer(_events(2, 3), loop.time())  # the backlog is full
    assert not ended.done()
    sink.offer(_events(5, 1), loop.time())
    assert ended.done()
    await sink.close()
    assert socket.written == []


async def test_a_failed_write_ends_the_connection_and_nothing_more_is_written() -> None:
    socket = _Socket()
    sink = Sink(newest=0, backlog=100)
    ended = sink.go_live(0, socket.send)
    socket.fail = True
    sink.offer(_events(1, 2), asyncio.get_running_loop().time())
    assert ended.done()
    socket.fail = False
    sink.offer(_events(3, 1), asyncio.get_running_loop().time())
    assert socket.written == []
    await sink.close()


async def test_events_that_arrive_during_the_replay_are_written_once_after_it() -> None:
    socket = _Socket()
    sink = Sink(newest=10, backlog=100)
    loop = asyncio.get_running_loop()
    sink.offer(_events(9, 5), loop.time())  # 9 and 10 were seen; 11-13 arrive while replaying
    sink.go_live(12, socket.send)  # the replay held up to 12
    await socket.until(1)
    assert socket.written == [13]
    await sink.close()
