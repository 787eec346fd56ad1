"""Store, then tell: the boundary both transports share (commit here, broadcast after)."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from naboom.background.broker import TaskQueue
from naboom.ingest.schemas import Envelope, Outcome
from naboom.ingest.service import IngestService, Stored
from naboom.notify.tasks import alert_new_incidents
from naboom.operations.instruments import BROADCAST_FAILURES, BROADCAST_LATENCY, observe_commit
from naboom.outbox.messages import ingest_messages
from naboom.outbox.service import enqueue_many
from naboom.realtime.feed import LiveFeed

log = logging.getLogger(__name__)

SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]


class IngestPipeline:
    """One transaction per batch; broadcasts only what is committed."""

    def __init__(self, sessions: SessionFactory, service: IngestService, feed: LiveFeed) -> None:
        self.sessions = sessions
        self.service = service
        self.feed = feed
        # Set by the app's lifespan; new incidents' SMS alerts are queued through it.
        self.tasks: TaskQueue | None = None
        self._batches = 0

    async def store(self, envelopes: Sequence[Envelope]) -> tuple[list[Outcome], Stored]:
        """Decide and commit a batch; returns outcomes and the incidents it opened or added to."""
        async with self.sessions() as session:
            outcomes, stored = await self.service.process(session, envelopes)
            # Acks and region alerts commit with the batch (one insert for all of them).
            await enqueue_many(session, ingest_messages(outcomes, stored))
            self._batches += 1
            if self._batches % 100 == 0:
                await self.service.trim_rejection_log(session)
            await session.commit()
        observe_commit(envelopes, (incident.ts for incident in stored.created))
        return outcomes, stored

    async def announce(self, stored: Stored) -> None:
        """Broadcast ``incident.created`` for new incidents and ``incident.updated`` for those that took further SOS."""
        by_region: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for incident in stored.created:
            by_region[incident.region].append(("incident.created", incident.event_data()))
        for incident, change in stored.updated:
            by_region[incident.region].append(("incident.updated", incident.event_data(change)))
        with BROADCAST_FAILURES.count_exceptions(), BROADCAST_LATENCY.time():
            for region, items in by_region.items():
                await self.feed.publish_many(region, items)
        if stored.created and self.tasks is not None:
            try:
                await self.tasks.kick(alert_new_incidents, [str(incident.id) for incident in stored.created])
            except Exception:
                # Committed incidents are not lost: the outbox sweep queues alerts it finds missing.
                log.exception("could not queue SMS alerts for %d new incidents", len(stored.created))
