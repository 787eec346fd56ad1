"""``POST /panic/api/submit`` (the HTTP transport) and the admin view of the ingest."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from litestar.response import Response
from sqlalchemy.ext.asyncio import AsyncSession

from naboom.errors import NaboomError
from naboom.ingest.pipeline import IngestPipeline
from naboom.ingest.schemas import Envelope, IngestStats, Reason, Rejection, SubmitAccepted, Verdict
from naboom.ingest.service import IngestService
from naboom.schemas import Limit, Offset, Page
from naboom.users.guards import admin_only

# How each refusal reads over HTTP: malformed input, untrusted sender, or unacceptable content.
_STATUS = {
    Reason.TOPIC_NOT_ALLOWED: 400,
    Reason.MALFORMED_JSON: 400,
    Reason.INVALID_SCHEMA: 422,
    Reason.TOPIC_MISMATCH: 422,
    Reason.UNKNOWN_DEVICE: 401,
    Reason.INACTIVE_DEVICE: 403,
    Reason.UNKNOWN_KID: 401,
    Reason.REVOKED_KID: 401,
    Reason.BAD_SIGNATURE: 401,
    Reason.STALE_TS: 422,
    Reason.FUTURE_TS: 422,
    Reason.REPLAYED_NONCE: 409,
}


class SosRejectedError(NaboomError):
    """An SOS failed a check; carries the reason code."""

    title = "SOS rejected"


class SubmitController(Controller):
    """The same signed payload as MQTT, over HTTPS."""

    path = "/panic/api"
    tags = ["ingest"]

    @post("/submit", status_code=201, exclude_from_auth=True, security=[])
    async def submit(self, request: Request) -> Response[SubmitAccepted]:
        """A signed SOS as in CONTRACT §1 (JSON body, read raw so it is checked exactly like MQTT).

        201 with a new incident id; 200 with the same id for a duplicate; problem details with a
        ``reason`` code otherwise.
        """
        pipeline: IngestPipeline = request.app.state.ingest
        envelope = Envelope(body=await request.body(), transport="http", received_at=datetime.now(UTC))
        (outcome,), incidents = await pipeline.store([envelope])
        await pipeline.announce(incidents)
        if outcome.verdict == Verdict.REJECTED:
            assert outcome.reason is not None
            error = SosRejectedError(outcome.detail or outcome.reason.value, reason=outcome.reason.value)
            error.status_code = _STATUS[outcome.reason]
            raise error
        assert outcome.incident_id is not None
        status = 201 if outcome.verdict == Verdict.ACCEPTED else 200
        return Response(SubmitAccepted(incident_id=outcome.incident_id), status_code=status)


class IngestAdminController(Controller):
    """What the ingest refused and why."""

    path = "/api/ingest"
    tags = ["ingest"]
    guards = [admin_only]

    @get("/stats")
    async def stats(self, request: Request, db_session: NamedDependency[AsyncSession]) -> IngestStats:
        """Counters of this process and the rejection log by reason."""
        pipeline: IngestPipeline = request.app.state.ingest
        return await pipeline.service.stats(db_session)

    @get("/rejections")
    async def rejections(
        self,
        db_session: NamedDependency[AsyncSession],
        reason: Annotated[str | None, QueryParameter(max_length=32)] = None,
        pid: Annotated[str | None, QueryParameter(max_length=64)] = None,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Page[Rejection]:
        """Newest first."""
        return await IngestService.rejections(db_session, reason=reason, pid=pid, limit=limit, offset=offset)
