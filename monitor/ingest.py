"""Capture ingestion: replicas post batches of request records; the platform stores them.

The records, the batch and the per-endpoint capture tokens are :mod:`loopml.capture_wire`'s.
The route takes the endpoint from the token and refuses (403) a batch holding a record of
any other, so a replica, whose model is user code, cannot poison another endpoint's drift
and quality or pre-claim its request ids.

Storing is idempotent per ``(project, endpoint, request_id)``: a batch retried after a
timeout is stored once. Dropped-record counts reported by replicas are kept per endpoint in
memory (reset by a platform restart) for the monitor report.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

from fastapi import APIRouter, Depends, Request
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from loopml.auth import bearer_token
from loopml.capture_wire import CAPTURE_PATH, CaptureAccepted, CaptureBatch, CaptureTokens
from loopml.db import Database
from loopml.errors import Forbidden, Unauthorized
from loopml.monitor.orm import PredictionRow
from loopml.names import check_name
from loopml.services import services
from loopml.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["internal"])


def capture_tokens(settings: Settings) -> CaptureTokens | None:
    """The capture tokens of this platform; ``None`` (capture off) without an admin token."""
    return CaptureTokens(settings.admin_token) if settings.admin_token else None


class CaptureService:
    def __init__(self, db: Database, tokens: CaptureTokens | None) -> None:
        self.db = db
        self.tokens = tokens
        self.dropped: Counter[tuple[str, str]] = Counter()

    def check(self, given: str | None) -> tuple[str, str]:
        """The ``(project, endpoint)`` whose records the caller's token may post; :class:`Unauthorized`."""
        if self.tokens is None:
            raise Unauthorized("capture is off: the platform runs without an admin token")
        return self.tokens.endpoint_of(given)

    def store(self, batch: CaptureBatch, project: str, endpoint: str) -> int:
        """Insert ``batch``'s records of ``project``'s ``endpoint`` (the token's), skipping
        request ids already stored; returns how many were new. :class:`Forbidden`, nothing
        stored, when a record names another endpoint."""
        rows = []
        for record in batch.records:
            check_name("project", record.project)
            check_name("endpoint", record.endpoint)
            if (record.project, record.endpoint) != (project, endpoint):
                raise Forbidden(f"this capture token is endpoint {project}/{endpoint}'s: it cannot post records of "
                                f"{record.project}/{record.endpoint}; nothing of the batch was stored",
                                endpoint=f"{project}/{endpoint}")
            rows.append(record.model_dump())
        if batch.dropped:
            self.dropped[(project, endpoint)] += batch.dropped
        if not rows:
            return 0
        insert = pg_insert if self.db.engine.dialect.name == "postgresql" else sqlite_insert
        # RETURNING, not rowcount: with SQLAlchemy 2.1 on psycopg 3 the rowcount of this INSERT is -1
        statement = insert(PredictionRow).values(rows).on_conflict_do_nothing(
            index_elements=["project", "endpoint", "request_id"]).returning(PredictionRow.request_id)
        with self.db.session() as session:
            return len(session.execute(statement).all())


@dataclass(frozen=True)
class CaptureSink:
    """The capture service and the one endpoint the caller's token posts for."""

    service: CaptureService
    project: str
    endpoint: str


def captures(request: Request) -> CaptureSink:
    """The caller's sink, once its capture token is checked (before the body is read)."""
    service = services(request).captures
    return CaptureSink(service, *service.check(bearer_token(request)))


@router.post(CAPTURE_PATH, response_model=CaptureAccepted, status_code=202, include_in_schema=False)
def capture(batch: CaptureBatch, sink: CaptureSink = Depends(captures)):
    """Store a replica's batch of captured requests (its endpoint's capture token only)."""
    return CaptureAccepted(stored=sink.service.store(batch, sink.project, sink.endpoint))
