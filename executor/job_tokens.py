"""Job tokens: what a running job's kernel uses to call the platform (``LOOPML_TOKEN``).

A notebook run as a job may use the client, the CLI or the magics (submit another job,
deploy, monitor). It must not get its submitter's own token, nor any other credential that
outlives it, so each job gets ``loopml-job.<job id>.<HMAC>``, derived from the admin token:

- it acts as the job's user, in the job's project only (``User.only_projects``), never as
  an admin;
- it is valid while the job is not finished (QUEUED or RUNNING); afterwards it is refused
  like an unknown token.
"""

from __future__ import annotations

import hashlib
import hmac

from loopml.auth import User
from loopml.db import Database
from loopml.executor.models import JobStatus
from loopml.executor.orm import JobRow

PREFIX = "loopml-job."


class JobTokens:
    """Issues job tokens and authenticates them (an authenticator of the chain in the app)."""

    def __init__(self, db: Database, admin_token: str | None) -> None:
        self.db = db
        self._key = hmac.new((admin_token or "").encode(), b"loopml-job-tokens", hashlib.sha256).digest()
        self.enabled = bool(admin_token)

    def _signature(self, job_id: str) -> str:
        return hmac.new(self._key, job_id.encode(), hashlib.sha256).hexdigest()

    def issue(self, job_id: str) -> str | None:
        """The token of job ``job_id`` (None when the platform has no admin token to derive it)."""
        return f"{PREFIX}{job_id}.{self._signature(job_id)}" if self.enabled else None

    def authenticate(self, token: str) -> User | None:
        """The job's user, limited to the job's project, while the job runs; else None."""
        if not self.enabled or not token.startswith(PREFIX):
            return None
        job_id, _, signature = token[len(PREFIX):].rpartition(".")
        if not job_id or not hmac.compare_digest(signature.encode(), self._signature(job_id).encode()):
            return None
        with self.db.session() as session:
            row = session.get(JobRow, job_id)
            if row is None or JobStatus(row.status).terminal:
                return None
            return User(name=row.user, admin=False, only_projects=frozenset({row.project}))
