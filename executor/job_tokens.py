"""Job tokens: what a running job's kernel uses to call the platform (``LOOPML_TOKEN``).

A notebook run as a job may use the client, the CLI or the magics (submit another job,
deploy, monitor). It must not get its submitter's own token, nor any other credential that
outlives it, so each job gets ``loopml-job.<job id>.<HMAC>``, derived from the admin token:

- it acts as the job's user, in the job's project only (``User.only_projects``), never as
  an admin;
- it is valid while the job is not finished (QUEUED or RUNNING), while its user is still a
  member of the job's project (checked on every request: removed from the member list, the
  token stops at once; removed from the hub group, within the hub user cache's 30 s), until
  the attempt's ``timeout_s`` is over and never longer than ``job_token_max_s`` after the
  submit, even while the job still runs; otherwise it is refused like an unknown token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from collections.abc import Callable

from loopml.auth import User
from loopml.db import Database, utcnow
from loopml.executor.models import JobStatus
from loopml.executor.orm import JobRow

PREFIX = "loopml-job."
DEFAULT_MAX_S = 24 * 3600.0


class JobTokens:
    """Issues job tokens and authenticates them (an authenticator of the chain in the app)."""

    def __init__(self, db: Database, admin_token: str | None, *, is_member: Callable[[str, str], bool],
                 max_s: float = DEFAULT_MAX_S) -> None:
        """``is_member(user, project)``: whether the user is a member of the project now
        (:meth:`loopml.projects.ProjectService.member_now`)."""
        self.db = db
        self.is_member = is_member
        self.max_s = max_s
        self._key = hmac.new((admin_token or "").encode(), b"loopml-job-tokens", hashlib.sha256).digest()
        self.enabled = bool(admin_token)

    def _signature(self, job_id: str) -> str:
        return hmac.new(self._key, job_id.encode(), hashlib.sha256).hexdigest()

    def issue(self, job_id: str) -> str | None:
        """The token of job ``job_id`` (None when the platform has no admin token to derive it)."""
        return f"{PREFIX}{job_id}.{self._signature(job_id)}" if self.enabled else None

    def authenticate(self, token: str) -> User | None:
        """The job's user, limited to the job's project, while the token is valid (see the
        module docstring); else None."""
        if not self.enabled or not token.startswith(PREFIX):
            return None
        job_id, _, signature = token[len(PREFIX):].rpartition(".")
        if not job_id or not hmac.compare_digest(signature.encode(), self._signature(job_id).encode()):
            return None
        with self.db.session() as session:
            row = session.get(JobRow, job_id)
            if row is None or JobStatus(row.status).terminal or utcnow() >= self._expiry(row):
                return None
            user, project = row.user, row.project
        if not self.is_member(user, project):
            return None
        return User(name=user, admin=False, only_projects=frozenset({project}))

    def _expiry(self, row: JobRow) -> dt.datetime:
        """When the token stops: ``max_s`` after the submit, or the attempt's timeout if sooner."""
        ends = row.created_at + dt.timedelta(seconds=self.max_s)
        if row.timeout_s and row.started_at is not None:
            ends = min(ends, row.started_at + dt.timedelta(seconds=row.timeout_s))
        return ends
