"""The live feed's replay: exactly the missed events, in order, and a reset when history fell short."""

from __future__ import annotations

import json

from litestar.channels import ChannelsPlugin
from litestar.channels.backends.memory import MemoryChannelsBackend

from naboom.realtime.feed import LiveFeed, MemoryFeedLog


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
    assert [e.event_id for e in got] == [e.event_id for e in sent] == list(range(sent[0].event_id, sent[0].event_id + 3))
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
