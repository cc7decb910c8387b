"""What an endpoint's replicas and the platform exchange about captured requests.

The replicas (:mod:`loopml.serving.capture`) post batches of records to :data:`CAPTURE_PATH`
with their endpoint's capture token; the platform (:mod:`loopml.monitor.ingest`) checks the
token and stores the records, which the monitor slice reads. Both sides import this module
and nothing of each other, so serving never depends on monitor.

Each endpoint's replicas hold their own capture token, ``<project>.<endpoint>.<mac>`` with
``mac`` an HMAC of the project and endpoint under the platform's admin token: derived (it
survives restarts and nothing new is stored), it grants nothing but posting the records of
that one endpoint. Names never hold ``.`` (:func:`loopml.names.check_name`), so the token
parses one way only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Any

from pydantic import BaseModel, Field

from loopml.errors import Unauthorized

CAPTURE_PATH = "/internal/capture"  # under the platform's API prefix
MAX_BATCH = 5000  # records per batch the platform takes; a replica sends fewer

_PURPOSE = b"loopml-capture-endpoint:"  # not the retired all-endpoints token's b"loopml-capture"


class CaptureRecord(BaseModel):
    """One endpoint request, as a replica recorded it."""

    project: str
    endpoint: str
    request_id: str = Field(max_length=64)
    version: int
    at: dt.datetime
    status: int = Field(description="HTTP status the caller got.")
    latency_ms: float = Field(ge=0)
    features: dict[str, Any] | None = Field(None, description='{"columns": [...], "data": [[...], ...]}')
    prediction: list[Any] | None = None
    probabilities: list[list[float]] | None = Field(None, description="Class probabilities per row (classifiers).")
    violations: list[dict[str, Any]] | None = Field(
        None, description='Data-contract violations: [{"feature", "kind", "rows"}] (rows: how many rows broke it).')


class CaptureBatch(BaseModel):
    """Body of the replicas' ``POST /internal/capture``."""

    records: list[CaptureRecord] = Field(max_length=MAX_BATCH)
    dropped: int = Field(0, ge=0, description="Records the replica dropped since its last batch (buffer full).")


class CaptureAccepted(BaseModel):
    """Answer (202) to a batch the platform took."""

    stored: int = Field(description="New records (a record sent twice is stored once).")


class CaptureTokens:
    """Derives and checks the per-endpoint capture tokens from the instance ``secret``."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def _mac(self, project: str, endpoint: str) -> str:
        return hmac.new(self._secret, _PURPOSE + f"{project}/{endpoint}".encode(), hashlib.sha256).hexdigest()

    def token(self, project: str, endpoint: str) -> str:
        """The token of ``project``'s endpoint ``endpoint``'s replicas."""
        return f"{project}.{endpoint}.{self._mac(project, endpoint)}"

    def endpoint_of(self, given: str | None) -> tuple[str, str]:
        """``(project, endpoint)`` of a token :meth:`token` issued; :class:`Unauthorized` for any other."""
        parts = (given or "").split(".")
        if len(parts) != 3 or not all(parts) or not hmac.compare_digest(parts[2].encode(),
                                                                         self._mac(*parts[:2]).encode()):
            raise Unauthorized("capture needs an endpoint's capture token (the platform hands it to the endpoint's "
                               "replicas)")
        return parts[0], parts[1]
