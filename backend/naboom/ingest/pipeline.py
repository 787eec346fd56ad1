"""Store, then tell: the boundary both transports share (commit here, broadcast after)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from naboom.background.broker import TaskQueue
from naboom.incidents.schemas import IncidentOut
from naboom.ingest.schemas import Envelope, Outcome
from naboom.ingest.service import IngestService, Stored
from naboom.notify.tasks import alert_new_incidents
from naboom.operations.instruments import BROADCAST_FAILURES, BROADCAST_LATENCY, observe_commit
from naboom.outbox.messages import ingest_messages
from naboom.outbox.service import enqueue_many
from naboom.realtime.feed import LiveFeed

log = logging.getLogger(__name__)

SessionFactory = Callable[[], AbstractAsyncContextManager[AsyncSession]]

# A batch this big or bigger is split into lanes (when the pipeline has more than one).
LANE_MIN_BATCH = 64


class PartlyStored(Exception):
    """Some lanes of a batch committed, another failed (the cause): what committed is in ``stored``.

    Nothing of the batch is acknowledged: the broker delivers it all again, and what committed
    then counts as duplicates (its receipts are in). What committed is still broadcast.
    """

    def __init__(self, stored: Stored, cause: BaseException) -> None:
        super().__init__(f"{len(list(stored))} incidents committed, another lane failed: {cause!r}")
        self.stored = stored
        self.cause = cause


class IngestPipeline:
    """One transaction per batch (per lane of it); broadcasts only what is committed.

    With ``lanes`` > 1 (PostgreSQL) a big batch is split by device into that many transactions
    stored side by side, so one lane's statements run in the database while the process
    prepares the next lane's. Every message of a device goes to the same lane: a device's
    incidents, receipts and row are only ever in one of the batch's transactions.
    """

    def __init__(self, sessions: SessionFactory, service: IngestService, feed: LiveFeed, lanes: int = 1) -> None:
        self.sessions = sessions
        self.service = service
        self.feed = feed
        self.lanes = lanes
        # Set by the app's lifespan; new incidents' SMS alerts are queued through it.
        self.tasks: TaskQueue | None = None
        self._batches = 0

    def _split(self, envelopes: Sequence[Envelope]) -> list[list[int]]:
        """The batch's positions by lane: by the topic, which names the device (or it is rejected)."""
        if self.lanes < 2 or len(envelopes) < LANE_MIN_BATCH:
            return [list(range(len(envelopes)))]
        parts: list[list[int]] = [[] for _ in range(self.lanes)]
        for index, envelope in enumerate(envelopes):
            parts[hash(envelope.topic) % self.lanes].append(index)
        return [part for part in parts if part]

    async def store(
        self, envelopes: Sequence[Envelope], *, device_acks: bool = True
    ) -> tuple[list[Outcome], Stored]:
        """Decide and commit a batch; returns outcomes (in input order) and the incidents it opened or added to.

        The devices' ``received`` acks go into the outbox with the batch unless ``device_acks``
        is False: the MQTT ingest sends them itself, on its own connection and ahead of the
        batch's PUBACKs (see :meth:`naboom.ingest.mqtt.ManualAck.ack_many`).
        """
        parts = self._split(envelopes)
        if len(parts) == 1:
            return await self._store_lane(envelopes, device_acks)
        results = await asyncio.gather(
            *(self._store_lane([envelopes[i] for i in part], device_acks) for part in parts), return_exceptions=True
        )
        outcomes: list[Outcome | None] = [None] * len(envelopes)
        stored = Stored()
        failure: BaseException | None = None
        for part, result in zip(parts, results, strict=True):
            if isinstance(result, BaseException):
                failure = failure or result
                continue
            lane_outcomes, lane_stored = result
            for index, outcome in zip(part, lane_outcomes, strict=True):
                outcomes[index] = outcome
            stored.created.extend(lane_stored.created)
            stored.updated.extend(lane_stored.updated)
        if failure is not None:
            if not list(stored):
                raise failure
            raise PartlyStored(stored, failure) from failure
        return [outcome for outcome in outcomes if outcome is not None], stored

    async def _store_lane(self, envelopes: Sequence[Envelope], device_acks: bool) -> tuple[list[Outcome], Stored]:
        async with self.sessions() as session:
            outcomes, stored = await self.service.process(session, envelopes)
            # Region alerts (and acks, when asked) commit with the batch (one insert for all of them).
            await enqueue_many(session, ingest_messages(outcomes, stored, acks=device_acks))
            self._batches += 1
            if self._batches % 100 == 0:
                await self.service.trim_rejection_log(session)
            await session.commit()
        observe_commit(envelopes, (incident.ts for incident in stored.created))
        return outcomes, stored

    async def incidents(self, ids: Sequence[uuid.UUID]) -> list[IncidentOut]:
        """The incidents ``ids`` as they are now (to broadcast them again)."""
        async with self.sessions() as session:
            return await self.service.incidents(session, ids)

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
