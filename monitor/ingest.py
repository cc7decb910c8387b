"""Capture ingestion: replicas post batches of request records; the platform stores them.

Replicas authenticate with the capture token (derived from the platform's admin token, so it
survives restarts and grants nothing but this route). Storing is idempotent per
``(project, endpoint, request_id)``: a batch retried after a timeout is stored once.
Dropped-record counts reported by replicas are kept per endpoint in memory (reset by a
platform restart) for the monitor report.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections import Counter

from fastapi import APIRouter, Depends, Request
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from loopml.auth import bearer_token
from loopml.db import Database
from loopml.errors import Unauthorized
from loopml.monitor.models import CaptureAccepted, CaptureBatch
from loopml.monitor.orm import PredictionRow
from loopml.names import check_name
from loopml.settings import Settings

log = logging.getLogger(__name__)

router = APIRouter(tags=["internal"])


def capture_token(settings: Settings) -> str | None:
    """The token replicas send with captured records; ``None`` (capture off) without an admin token."""
    if not settings.admin_token:
        return None
    return hmac.new(settings.admin_token.encode(), b"loopml-capture", hashlib.sha256).hexdigest()


class CaptureService:
    def __init__(self, db: Database, token: str | None) -> None:
        self.db = db
        self.token = token
        self.dropped: Counter[tuple[str, str]] = Counter()

    def check(self, given: str | None) -> None:
        if not self.token or not given or not hmac.compare_digest(given, self.token):
            raise Unauthorized("capture needs the platform's capture token")

    def store(self, batch: CaptureBatch) -> int:
        """Insert ``batch``'s records, skipping request ids already stored; returns how many were new."""
        rows = []
        for record in batch.records:
            check_name("project", record.project)
            check_name("endpoint", record.endpoint)
            rows.append(record.model_dump())
        if batch.dropped and batch.records:
            first = batch.records[0]
            self.dropped[(first.project, first.endpoint)] += batch.dropped
        if not rows:
            return 0
        insert = pg_insert if self.db.engine.dialect.name == "postgresql" else sqlite_insert
        # RETURNING, not rowcount: with SQLAlchemy 2.1 on psycopg 3 the rowcount of this INSERT is -1
        statement = insert(PredictionRow).values(rows).on_conflict_do_nothing(
            index_elements=["project", "endpoint", "request_id"]).returning(PredictionRow.request_id)
        with self.db.session() as session:
            return len(session.execute(statement).all())


def captures(request: Request) -> CaptureService:
    """The capture service, once the caller's capture token is checked (before the body is read)."""
    service = request.app.state.captures
    service.check(bearer_token(request))
    return service


@router.post("/internal/capture", response_model=CaptureAccepted, status_code=202, include_in_schema=False)
def capture(batch: CaptureBatch, service: CaptureService = Depends(captures)):
    """Store a replica's batch of captured requests (capture token only)."""
    return CaptureAccepted(stored=service.store(batch))
