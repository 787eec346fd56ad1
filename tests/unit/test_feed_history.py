"""The replay history outlives subscribers, and a client without Last-Event-ID starts at "now"."""

from __future__ import annotations

import json

from litestar.channels import ChannelsPlugin

from naboom.realtime.feed import KeepHistoryMemoryBackend, LiveFeed, MemoryFeedLog


def _feed(history: int = 10) -> tuple[ChannelsPlugin, LiveFeed]:
    channels = ChannelsPlugin(
        backend=KeepHistoryMemoryBackend(history=history), arbitrary_channels_allowed=True
    )
    return channels, LiveFeed(channels, MemoryFeedLog(channels), history=history)


async def test_history_survives_the_last_subscriber_leaving() -> None:
    channels, feed = _feed()
    async with channels:
        async with feed.subscribe("ZA-LP", None) as replay:
            events = replay.events(heartbeat=5)
            await feed.publish("ZA-LP", "incident.created", {"id": "a"})
            seen = (await anext(events)).event_id  # type: ignore[union-attr]
            await feed.publish("ZA-LP", "incident.created", {"id": "b"})  # sent to a connection about to drop
        async with feed.subscribe("ZA-LP", seen) as replay:
            assert [json.loads(e.json)["id"] for e in replay.missed] == ["b"]


async def test_a_subscriber_without_last_event_id_gets_nothing_already_broadcast() -> None:
    channels, feed = _feed()
    async with channels:
        await feed.publish("ZA-LP", "incident.created", {"id": "old"})
        async with feed.subscribe("ZA-LP", None) as replay:
            assert replay.missed == [] and not replay.gap
            events = replay.events(heartbeat=5)
            await feed.publish("ZA-LP", "incident.created", {"id": "new"})
            event = await anext(events)
    assert event is not None and json.loads(event.json)["id"] == "new"
