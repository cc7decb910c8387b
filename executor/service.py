"""JobService: the jobs of every project, from submit to a final status.

Requests call the synchronous methods (FastAPI runs them in its thread pool); two
background loops owned by :meth:`JobService.run` hand queued jobs to the backend
(respecting per-project quotas) and store what the backend reports. Retries, quotas and
history are the platform's: the backend only runs attempts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any

import nbformat
from sqlalchemy import func, select
from sqlalchemy.orm import object_session

from loopml import sandbox
from loopml.db import Database, utcnow
from loopml.errors import Conflict, InvalidInput, NotFound, TooMany, Unavailable
from loopml.executor.attempts import AttemptOptions, AttemptRecord, AttemptSpec, key
from loopml.executor.backend import JobBackend
from loopml.executor.job_tokens import JobTokens
from loopml.executor.models import Job, JobFailure, JobRequeue, JobStatus, JobSubmit, Progress, Resources, Trigger
from loopml.executor.orm import JobOutputRow, JobRow
from loopml.executor.params import validate_parameters
from loopml.executor.workdir import check_path
from loopml.projects import ProjectRow
from loopml.registry import mlflow_auth
from loopml.registry.models import ModelRef
from loopml.registry.tracking import INPUTS, JobTracking
from loopml.settings import Settings

log = logging.getLogger(__name__)

ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)
CANCEL_WAIT_S = 5.0


def to_job(row: JobRow) -> Job:
    return Job(
        id=row.id, project=row.project, user=row.user, name=row.name, status=JobStatus(row.status),
        message=row.message, progress=Progress(cells_done=row.cells_done, cells_total=row.cells_total),
        error=JobFailure(**row.error) if row.error else None, attempt=row.attempt, node=row.node, parameters=row.parameters,
        resources=Resources(**row.resources), timeout_s=row.timeout_s, max_retries=row.max_retries,
        mlflow_run_id=row.mlflow_run_id, models=[ModelRef(**m) for m in row.models or []], outputs=row.outputs or {},
        input_files=row.input_files or [], output_files=row.output_files or [],
        output_hashes=row.output_hashes or {}, trigger=Trigger(row.trigger), parent_id=row.parent_id,
        schedule_id=row.schedule_id, created_at=row.created_at, started_at=row.started_at,
        finished_at=row.finished_at,
    )


def read_notebook(notebook: dict[str, Any], max_mb: float) -> nbformat.NotebookNode:
    """The submitted notebook as a validated nbformat v4 node, or InvalidInput saying why not."""
    text = json.dumps(notebook)
    if len(text) > max_mb * 1024 * 1024:
        raise InvalidInput(f"the notebook is larger than {max_mb:g} MiB: clear its outputs and resubmit", field="notebook")
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidInput(f"the notebook is not a valid nbformat v4 document: {first_line[:300]}", field="notebook") from None
    if not any(c.cell_type == "code" for c in nb.cells):
        raise InvalidInput("the notebook has no code cell to run", field="notebook")
    return nb


class JobService:
    """Submits, reads, cancels and requeues jobs; runs the dispatch and update loops."""

    def __init__(self, settings: Settings, db: Database, tracking: JobTracking, backend: JobBackend, *,
                 job_tokens: JobTokens | None = None) -> None:
        self.settings = settings
        self.db = db
        self.tracking = tracking
        self.backend = backend
        self.job_tokens = job_tokens
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ---- requests ---------------------------------------------------------------------

    def submit(self, user: str, project: str, spec: JobSubmit, *, trigger: Trigger = Trigger.USER,
               parent_id: str | None = None, schedule_id: str | None = None,
               files: Mapping[str, bytes] | None = None, parent_run_id: str | None = None,
               run_tags: Mapping[str, str] | None = None) -> Job:
        """Accept a job: validate notebook and parameters, open its MLflow run, store it QUEUED.

        The job's input files are ``spec.files`` (base64, from a REST body) and ``files`` (raw
        bytes, from callers in this process: requeue, pipelines); they are stored as artifacts
        ``inputs/<path>`` of its run and written into its working dir when it runs. Raises
        :class:`TooMany` when the project already has ``max_queued_jobs_per_project`` jobs queued
        (checked first, so a full queue costs no parsing), :class:`InvalidInput` for a bad file
        path or files over ``max_job_files_mb``. ``parent_run_id`` makes the job's MLflow run a
        child of that run, with ``run_tags`` on it (a pipeline run's steps).
        """
        self._check_queue(project)
        inputs = self._input_files(spec, files)
        nb = read_notebook(spec.notebook, self.settings.max_notebook_mb)
        kernel_name = spec.kernel_name or nb.metadata.get("kernelspec", {}).get("name") or self.settings.kernel_name
        check_kernel_name(kernel_name)
        parameters = validate_parameters(nb, spec.parameters, kernel_name)
        name = spec.name or nb.metadata.get("loopml", {}).get("name") or "notebook.ipynb"
        job_id = uuid.uuid4().hex[:16]
        notebook = nbformat.writes(nb)
        child = {"parent_run_id": parent_run_id, "tags": dict(run_tags or {})} if parent_run_id else {}
        run_id = self.tracking.start_run(project=project, job_id=job_id, name=name, user=user, trigger=trigger.value,
                                         parameters=parameters, notebook=notebook, parent_id=parent_id, **child)
        try:
            if inputs:
                self.tracking.log_files(run_id, inputs, prefix=INPUTS)
        except Exception as exc:
            self.tracking.delete_run(run_id)
            log.warning("could not store the input files of job %s: %s", job_id, exc)
            raise Unavailable(f"the MLflow tracking server at {self.tracking.tracking_uri} did not take the job's "
                              f"input files ({type(exc).__name__}); nothing was created: retry when it is back",
                              component="mlflow") from None
        row = JobRow(id=job_id, project=project, user=user, name=name, notebook=notebook, kernel_name=kernel_name,
                     parameters=parameters, resources=spec.resources.model_dump(), timeout_s=spec.timeout_s,
                     max_retries=spec.max_retries, status=JobStatus.QUEUED.value, attempt=1, trigger=trigger.value,
                     parent_id=parent_id, schedule_id=schedule_id, mlflow_run_id=run_id, created_at=utcnow(),
                     message="queued", input_files=sorted(inputs), output_files=list(spec.output_files))
        try:
            with self.db.session() as session:
                session.add(row)
                session.flush()
                session.add(JobOutputRow(job_id=job_id, log="", earlier_log=""))
        except Exception:
            self.tracking.delete_run(run_id)
            raise
        self.wake()
        return to_job(row)

    def _input_files(self, spec: JobSubmit, files: Mapping[str, bytes] | None) -> dict[str, bytes]:
        """The job's input files by checked path: ``spec.files`` decoded, and ``files``."""
        inputs = spec.decoded_files()
        for path, content in (files or {}).items():
            try:
                checked = check_path(path)
            except ValueError as exc:
                raise InvalidInput(str(exc), field="files") from None
            if checked in inputs:
                raise InvalidInput(f"input file {checked!r} is given twice", field="files")
            inputs[checked] = bytes(content)
        limit = self.settings.max_job_files_mb
        total = sum(len(content) for content in inputs.values())
        if total > limit * 2**20:
            raise InvalidInput(f"the job's input files take {total / 2**20:.1f} MiB, more than the "
                               f"{limit:g} MiB a job may be given (max_job_files_mb)", field="files")
        return inputs

    def _check_queue(self, project: str) -> None:
        limit = self.settings.max_queued_jobs_per_project
        with self.db.session() as session:
            queued = session.scalar(select(func.count()).select_from(JobRow).where(
                JobRow.project == project, JobRow.status == JobStatus.QUEUED.value))
        if queued >= limit:
            raise TooMany(f"project {project!r} has {queued} jobs queued, the most it may have "
                          f"(max_queued_jobs_per_project = {limit}): wait for some to start, or cancel some "
                          "(loopml jobs cancel ID), then submit again", queued=queued, limit=limit)

    def requeue(self, user: str, project: str, job_id: str, change: JobRequeue, *,
                trigger: Trigger = Trigger.REQUEUE) -> Job:
        """A new job from ``job_id``'s notebook snapshot and parameters, with ``change`` on top."""
        with self.db.session() as session:
            original = self._row(session, project, job_id)
            spec = JobSubmit(
                notebook=json.loads(original.notebook), name=original.name,
                parameters={**original.parameters, **change.parameters},
                resources=change.resources or Resources(**original.resources),
                timeout_s=change.timeout_s if change.timeout_s is not None else original.timeout_s,
                max_retries=change.max_retries if change.max_retries is not None else original.max_retries,
                kernel_name=original.kernel_name, output_files=original.output_files or [],
            )
            run_id, input_paths = original.mlflow_run_id, original.input_files or []
        files = self._download_inputs(run_id, input_paths) if input_paths else None
        return self.submit(user, project, spec, trigger=trigger, parent_id=job_id, files=files)

    def _download_inputs(self, run_id: str | None, paths: list[str]) -> dict[str, bytes]:
        """A job's input files, from its run (:class:`NotFound` when the run lost one)."""
        if not run_id:
            raise NotFound("the job has input files but no MLflow run to keep them")
        try:
            return self.tracking.download_files(run_id, paths, prefix=INPUTS)
        except NotFound:
            raise
        except Exception as exc:
            raise Unavailable(f"the MLflow tracking server at {self.tracking.tracking_uri} did not send the job's "
                              f"input files ({type(exc).__name__}): retry when it is back", component="mlflow") from None

    def get(self, project: str, job_id: str) -> Job:
        with self.db.session() as session:
            return to_job(self._row(session, project, job_id))

    def list(self, project: str, status: JobStatus | None = None, limit: int = 50, offset: int = 0) -> list[Job]:
        query = select(JobRow).where(JobRow.project == project)
        if status is not None:
            query = query.where(JobRow.status == status.value)
        query = query.order_by(JobRow.created_at.desc(), JobRow.id).limit(limit).offset(offset)
        with self.db.session() as session:
            return [to_job(r) for r in session.scalars(query)]

    def logs(self, project: str, job_id: str) -> str:
        with self.db.session() as session:
            self._row(session, project, job_id)
            output = session.get(JobOutputRow, job_id)
            return (output.earlier_log + output.log) if output else ""

    def output(self, project: str, job_id: str) -> str:
        """The executed notebook (partial while running) as nbformat JSON text."""
        with self.db.session() as session:
            row = self._row(session, project, job_id)
            output = session.get(JobOutputRow, job_id)
            if output is None or not output.notebook:
                raise NotFound(f"job {job_id} has no output yet (it is {row.status}): try again once a cell has run",
                               job_id=job_id)
            return output.notebook

    async def cancel(self, user: str, project: str, job_id: str) -> Job:
        """Cancel a job; waits up to 5 s for it to reach CANCELLED. 409 if it already ended."""
        row = await asyncio.to_thread(self._request_cancel, user, project, job_id)
        if row.dispatched and row.status in ACTIVE:
            await self.backend.cancel(job_id, row.attempt)
            deadline = asyncio.get_running_loop().time() + CANCEL_WAIT_S
            while asyncio.get_running_loop().time() < deadline:
                job = await asyncio.to_thread(self.get, project, job_id)
                if job.status.terminal:
                    return job
                await asyncio.sleep(0.05)
        return await asyncio.to_thread(self.get, project, job_id)

    def _request_cancel(self, user: str, project: str, job_id: str) -> JobRow:
        with self.db.session() as session:
            row = self._row(session, project, job_id)
            if JobStatus(row.status).terminal:
                raise Conflict(f"job {job_id} already ended ({row.status}); nothing to cancel", job_id=job_id)
            row.cancel_requested = True
            row.message = f"cancel requested by {user}"
            if not row.dispatched:
                self._finish(row, JobStatus.CANCELLED, message=f"cancelled by {user} before it started")
            return row

    @staticmethod
    def _row(session, project: str, job_id: str) -> JobRow:
        row = session.get(JobRow, job_id)
        if row is None or row.project != project:
            raise NotFound(f"job {job_id!r} does not exist in project {project!r}: `loopml jobs list` shows them",
                           job_id=job_id)
        return row

    # ---- background loops -------------------------------------------------------------

    def wake(self) -> None:
        """Make the dispatch loop look at the queue now (callable from any thread)."""
        if self._loop is not None and self._wake is not None:
            self._loop.call_soon_threadsafe(self._wake.set)

    async def run(self) -> None:
        """Reconcile with the backend, then dispatch and follow jobs until cancelled."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        since = await self._reconcile()
        await asyncio.gather(self._dispatch_loop(), self._update_loop(since))

    async def _reconcile(self) -> int:
        """Store what the backend finished while we were away; jobs it lost become system failures."""
        first = await self.backend.updates(0, 0)
        await self._apply(first.records)
        known = set(await self.backend.known())
        lost = await asyncio.to_thread(self._mark_lost, known)
        if lost:
            log.warning("jobs lost by the backend while the platform was away: %s", ", ".join(lost))
        return first.seq

    def _mark_lost(self, known: set[str]) -> list[str]:
        lost = []
        with self.db.session() as session:
            rows = session.scalars(select(JobRow).where(JobRow.status.in_(ACTIVE), JobRow.dispatched.is_(True)))
            for row in rows:
                if key(row.id, row.attempt) not in known:
                    lost.append(row.id)
                    self._system_failure(row, "the runner was lost (the Ray cluster restarted or the dispatcher died)")
        return lost

    async def _dispatch_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                for spec, options, timeout_s in await asyncio.to_thread(self._next_to_dispatch):
                    spec = await asyncio.to_thread(self._with_input_files, spec)
                    if spec is not None:
                        await self.backend.submit(spec, options, timeout_s)
            except Exception:
                log.exception("dispatch failed; retrying")
                await asyncio.sleep(1.0)

    def _next_to_dispatch(self) -> list[tuple[AttemptSpec, AttemptOptions, float | None]]:
        """Mark the queued jobs that fit their project's quota as dispatched and return their specs."""
        ready = []
        with self.db.session() as session:
            queued = session.scalars(select(JobRow).where(JobRow.status == JobStatus.QUEUED.value,
                                                          JobRow.dispatched.is_(False)).order_by(JobRow.created_at))
            running: dict[str, int] = {}
            for row in queued:
                if row.project not in running:
                    running[row.project] = session.scalar(select(func.count()).select_from(JobRow).where(
                        JobRow.project == row.project, JobRow.status.in_(ACTIVE), JobRow.dispatched.is_(True))) or 0
                limit = session.get(ProjectRow, row.project).max_concurrent_jobs
                if limit is not None and running[row.project] >= limit:
                    row.message = (f"waiting for a free slot: project {row.project!r} runs at most {limit} "
                                   "job(s) at once (max_concurrent_jobs)")
                    continue
                running[row.project] += 1
                row.dispatched = True
                row.message = "submitted to the Ray cluster"
                ready.append((self._spec(row), AttemptOptions.of(Resources(**row.resources)), row.timeout_s))
        return ready

    def _with_input_files(self, spec: AttemptSpec) -> AttemptSpec | None:
        """``spec`` with the job's input files fetched from its run; ``None`` when they could not
        be: the job then waits for MLflow (queued again) or fails when its run lost them."""
        with self.db.session() as session:
            row = session.get(JobRow, spec.job_id)
            run_id, paths = row.mlflow_run_id, row.input_files or []
        if not paths:
            return spec
        try:
            return spec.model_copy(update={"files": self._download_inputs(run_id, paths)})
        except (NotFound, Unavailable) as exc:
            failed, why = isinstance(exc, NotFound), exc.message
            log.warning("job %s: %s", spec.job_id, why)
        with self.db.session() as session:
            row = session.get(JobRow, spec.job_id)
            if row.status == JobStatus.QUEUED.value and row.dispatched:
                if failed:
                    self._finish(row, JobStatus.FAILED, message=f"its input files are gone: {why}",
                                 error={"reason": "system", "message": why})
                else:
                    row.dispatched = False
                    row.message = f"waiting for MLflow to send its input files: {why}"
        return None

    def _spec(self, row: JobRow) -> AttemptSpec:
        env = {"LOOPML_JOB_ID": row.id, "LOOPML_PROJECT": row.project, "LOOPML_USER": row.user,
               "LOOPML_ATTEMPT": str(row.attempt), "LOOPML_URL": self.settings.url, "LOOPML_JOB_NAME": row.name,
               "LOOPML_PARAMETERS": json.dumps(row.parameters),
               "LOOPML_NOTEBOOK_SHA256": hashlib.sha256(row.notebook.encode()).hexdigest(),
               "LOOPML_CONTRACT_TOLERANCE": str(self.settings.contract_tolerance),  # for log_model's contract
               "MLFLOW_TRACKING_URI": self.tracking.tracking_uri, "MLFLOW_RUN_ID": row.mlflow_run_id or "",
               "MLFLOW_EXPERIMENT_ID": self.tracking.experiment_id(row.project)}
        if mlflow_auth.in_use(self.settings):  # the project's own MLflow user, never the platform's
            env.update(mlflow_auth.project_env(self.settings.home, self.tracking.tracking_uri, row.project))
        token = self.job_tokens.issue(row.id) if self.job_tokens else None
        if token:  # the kernel may call the platform as the job's user, in its project, while it runs
            env["LOOPML_TOKEN"] = token
        return AttemptSpec(job_id=row.id, attempt=row.attempt, notebook=row.notebook, parameters=row.parameters,
                           kernel_name=row.kernel_name or self.settings.kernel_name, env=env,
                           warm_kernels=self.settings.warm_kernels, isolation=self.settings.job_isolation,
                           hide=sandbox.hidden_paths(self.settings.home), output_files=row.output_files or [],
                           max_files_bytes=int(self.settings.max_job_files_mb * 2**20))

    async def _update_loop(self, since: int) -> None:
        while True:
            try:
                batch = await self.backend.updates(since, 5.0)
                since = batch.seq
                await self._apply(batch.records)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("following the backend failed; reconnecting")
                await asyncio.sleep(1.0)
                try:
                    await self.backend.start()
                    since = await self._reconcile()
                except Exception:
                    log.exception("reconnecting to the backend failed")

    async def _apply(self, records: list[AttemptRecord]) -> None:
        done, to_cancel = await asyncio.to_thread(self._store, records)
        for job_id, attempt in to_cancel:  # cancelled while it was being handed to the backend
            await self.backend.cancel(job_id, attempt)
        await self.backend.ack(done)
        if done:
            self.wake()  # a slot may have freed, or a retry is queued

    def _store(self, records: list[AttemptRecord]) -> tuple[list[str], list[tuple[str, int]]]:
        """Write backend records to the DB.

        Returns the keys of finished attempts now stored, and the attempts still running
        although their job's cancel was requested.
        """
        done, to_cancel = [], []
        for record in records:
            with self.db.session() as session:
                row = session.get(JobRow, record.job_id)
                if row is None or row.attempt != record.attempt or JobStatus(row.status).terminal:
                    if record.finished:
                        done.append(record.key)
                    continue
                self._store_record(session, row, record)
                if not record.finished and row.cancel_requested:
                    to_cancel.append((row.id, row.attempt))
            if record.finished:
                done.append(record.key)
        return done, to_cancel

    def _store_record(self, session, row: JobRow, record: AttemptRecord) -> None:
        output = session.get(JobOutputRow, row.id)
        if record.output:
            output.notebook = record.output
        if record.log is not None and record.log != output.log:  # None: unchanged since the last update
            output.log = record.log
        if record.progress is not None:
            row.cells_done = record.progress.cells_done
            row.cells_total = record.progress.cells_total
        state = record.state
        if state in ("succeeded", "failed"):
            row.outputs = record.outputs
            if record.files and not self._log_output_files(row, record):
                return
        if state == "pending":
            row.message = record.message or row.message
        elif state == "running":
            if row.status != JobStatus.RUNNING.value:
                row.status = JobStatus.RUNNING.value
                row.started_at = record.started_at or utcnow()
                row.node = record.node
                row.message = f"running (attempt {row.attempt})"
        elif state == "succeeded":
            self._finish(row, JobStatus.SUCCEEDED, message="finished", output=output)
        elif state == "failed":
            error = record.error or JobFailure(reason="cell_error")
            self._finish(row, JobStatus.FAILED, error=error.model_dump(exclude_none=True), output=output,
                         message=f"cell {error.cell_index} raised {error.ename}: {error.evalue}"
                         if error.reason == "cell_error" else error.message)
        elif state == "cancelled":
            self._finish(row, JobStatus.CANCELLED, output=output, message="cancelled")
        elif state == "timeout":
            message = f"stopped after timeout_s={row.timeout_s:g} s"
            self._finish(row, JobStatus.FAILED, output=output, message=message,
                         error={"reason": "timeout", "message": message})
        elif state == "lost":
            self._system_failure(row, record.message or "the runner died", output=output)

    def _log_output_files(self, row: JobRow, record: AttemptRecord) -> bool:
        """Store the attempt's output files as artifacts ``outputs/<path>`` of the job's run.

        False when MLflow did not take them from a succeeded attempt: the job then is a system
        failure (retried if it may be), since its downstream would miss them. A failed attempt's
        files are kept if they can be, for whoever looks into it.
        """
        try:
            if not row.mlflow_run_id:
                raise RuntimeError("the job has no MLflow run")
            self.tracking.log_files(row.mlflow_run_id, record.files)
            row.output_hashes = {path: hashlib.sha256(content).hexdigest() for path, content in record.files.items()}
            return True
        except Exception as exc:
            log.exception("could not store the output files of job %s", row.id)
            if record.state != "succeeded":
                return True
            self._system_failure(row, f"its output files could not be stored in MLflow ({type(exc).__name__}: "
                                      f"{str(exc)[:300]})")
            return False

    def _system_failure(self, row: JobRow, why: str, output: JobOutputRow | None = None) -> None:
        """Retry the job if it has retries left, else FAILED with reason ``system``."""
        if row.attempt <= row.max_retries and not row.cancel_requested:
            row.message = f"attempt {row.attempt} failed: {why}; retrying (attempt {row.attempt + 1} of {row.max_retries + 1})"
            output = output or object_session(row).get(JobOutputRow, row.id)
            output.earlier_log += f"{output.log}[loopml] {row.message}\n"
            output.log = ""
            row.attempt += 1
            row.status = JobStatus.QUEUED.value
            row.dispatched = False
            row.cells_done = 0
            return
        status = JobStatus.CANCELLED if row.cancel_requested else JobStatus.FAILED
        self._finish(row, status, output=output, message=why,
                     error=None if row.cancel_requested else {"reason": "system", "message": why})

    def _finish(self, row: JobRow, status: JobStatus, *, message: str | None, error: dict | None = None,
                output: JobOutputRow | None = None) -> None:
        """Close the MLflow run (output notebook attached), then record the final status."""
        if row.mlflow_run_id:
            try:
                row.models = self.tracking.finish_run(
                    row.mlflow_run_id, status.value, output=output.notebook if output else None,
                    log_text=output.log if output else "", attempt=row.attempt) or []
            except Exception:
                log.exception("could not close MLflow run %s of job %s", row.mlflow_run_id, row.id)
        row.status = status.value
        row.message = message
        row.error = error
        row.finished_at = utcnow()


_KERNEL_NAME = re.compile(r"^[a-zA-Z0-9._-]{1,64}$")


def check_kernel_name(name: str) -> str:
    """Kernel names follow jupyter_client's kernelspec rule (they pick a kernelspec on the runner's node)."""
    if not _KERNEL_NAME.fullmatch(name):
        raise InvalidInput(f"invalid kernel name {name!r}: use the name of an installed kernelspec, e.g. python3",
                           field="kernel_name")
    return name
