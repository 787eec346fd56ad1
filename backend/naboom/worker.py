"""The TaskIQ broker: Redis streams in production (ack after the task), in-process on embedded defaults.

Tasks arrive with the background-work issue; the broker choice follows the settings already.
"""

from __future__ import annotations

from taskiq import AsyncBroker, InMemoryBroker
from taskiq_redis import RedisStreamBroker

from naboom.settings import Settings

# A message a dead worker held is handed to another after this long without an ack.
REDIS_IDLE_TIMEOUT_MS = 60_000
REDIS_STREAM_MAXLEN = 100_000


def create_broker(settings: Settings, queue: str = "critical") -> AsyncBroker:
    """``RedisStreamBroker`` when Redis is configured, else ``InMemoryBroker``."""
    if settings.redis_url is None:
        return InMemoryBroker()
    return RedisStreamBroker(
        url=settings.redis_url,
        queue_name=f"naboom:tasks:{queue}",
        consumer_group_name=f"naboom-{queue}",
        idle_timeout=REDIS_IDLE_TIMEOUT_MS,
        maxlen=REDIS_STREAM_MAXLEN,
    )
