"""PipelineService: pipeline runs in the platform service, driven by the pure engine.

A run is checked whole before anything is created (:meth:`PipelineService.validate`), then gets
an MLflow run of its own (the parent of its steps' job runs) that keeps the pipeline's files as
artifacts ``pipeline/<path>``, and a row in ``pipeline_runs`` that holds the engine's
:class:`~.run_state.RunState` as JSON. The service carries out what the engine asks for:

- :class:`~.run_state.LaunchJob`: a job (:meth:`JobService.submit`, trigger ``pipeline``) of the
  step's notebook with its rendered parameters, resources, timeout and retries; its declared
  ``outputs`` as the job's output files; its input files are the upstream steps' files
  (downloaded from their jobs' runs) and its dependencies (from the pipeline's files), at their
  paths relative to the step file's folder, which is the job's working dir. A script step runs
  as a one-cell notebook that runs the script (shipped as an input file) with
  ``runpy.run_path(..., run_name="__main__")``. A step's ``env`` becomes a first cell that sets
  ``os.environ`` (jobs take no environment of their own). A job that cannot be submitted
  (a full queue, MLflow away) fails its step with the reason: ``retry`` submits it again.
- :class:`~.run_state.RunAction`: the callable that ``actions`` gives for the kind (the platform
  passes register, promote and deploy in; see :mod:`loopml.server.pipeline_actions`).
- :class:`~.run_state.CancelJob`: :meth:`JobService.cancel`.
- :class:`~.run_state.StoreCache`: a row of ``pipeline_cache`` (project, cache key → outputs and
  file references). A hit reuses the earlier job's artifacts, which stay in its MLflow run.

The driver loop (:meth:`drive`) looks at the RUNNING runs every :data:`TICK_S` seconds and feeds
each finished step job to the engine. The state is stored after every transition, so a
restarted platform goes on where it stopped: a step whose job was being submitted (or whose
built-in action was running) when the platform went down is failed, with that reason, the first
time the new process sees the run (``retry`` re-runs it).

Atomicity: every change of a run (start, an event, cancel, retry) happens on the platform's one
event loop under that run's :class:`asyncio.Lock`, so two never interleave in this process
(blocking work runs in threads while the lock is held). The platform service is one process;
a second one driving the same DB would need a row lock instead.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import json
import logging
import posixpath
import uuid
import weakref
from collections import defaultdict, deque
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from loopml.db import Database, utcnow
from loopml.errors import Conflict, InvalidInput, LoopMLError, NotFound
from loopml.executor.models import Job, JobStatus, JobSubmit, Resources, Trigger
from loopml.executor.service import JobService
from loopml.executor.workdir import check_path
from loopml.registry import tags as tag
from loopml.registry.tracking import OUTPUTS, PIPELINE_FILES, JobTracking
from loopml.settings import Settings

from . import engine
from .actions import ActionCall, ActionRunner
from .dag import direct_upstream, upstream
from .local import read_pipeline
from .models import PipelineCheck, PipelineRun, PipelineStep
from .notebooks import script_notebook, with_env
from .orm import PipelineCacheRow, PipelineRunRow, to_pipeline_run
from .run_state import (
    DONE,
    ActionFinished,
    CachedResult,
    CancelJob,
    FileRef,
    JobFinished,
    JobLaunched,
    LaunchJob,
    RunAction,
    RunState,
    RunStatus,
    StepStatus,
    StoreCache,
)
from .spec import Pipeline, Step
from .validate import validate as validate_pipeline

log = logging.getLogger(__name__)

TICK_S = 0.5
START_TIMEOUT_S = 120.0  # a run started from a thread: checked, its files logged, its first steps submitted
ENDED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)


def _checked_files(files: Mapping[str, bytes]) -> dict[str, bytes]:
    checked = {}
    for path, content in files.items():
        try:
            checked[check_path(path)] = bytes(content)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="files") from None
    return checked


@dataclass
class _Live:
    """A run while this process changes it (under its lock)."""

    id: str
    project: str
    user: str
    mlflow_run_id: str | None
    files: list[str]
    state: RunState
    ended: bool = False  # its MLflow run was closed


class PipelineService:
    """Validates, runs, lists, cancels and retries pipeline runs; :meth:`drive` follows them."""

    def __init__(self, settings: Settings, db: Database, jobs: JobService, tracking: JobTracking, *,
                 actions: Mapping[str, ActionRunner] | None = None) -> None:
        self.settings = settings
        self.db = db
        self.jobs = jobs
        self.tracking = tracking
        self.actions = dict(actions or {})
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._files: dict[str, dict[str, bytes]] = {}  # the pipeline files of runs this process drives
        self._seen: set[str] = set()  # runs this process has driven (the others are checked for lost launches)
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop of drive(), once it runs

    # ---- requests ---------------------------------------------------------------------

    def validate(self, project: str, source_name: str, content: str, files: Mapping[str, bytes]) -> Pipeline:
        """The pipeline of ``content`` once every check passed against ``files`` (path relative
        to the pipeline file's folder → bytes); :class:`InvalidInput` listing every problem, each
        naming the step and the field."""
        return validate_pipeline(read_pipeline(source_name, content), _checked_files(files))

    def check(self, project: str, source_name: str, content: str, files: Mapping[str, bytes]) -> PipelineCheck:
        """:meth:`validate`, answered as the steps the run would have."""
        pipeline = self.validate(project, source_name, content, files)
        graph = direct_upstream(pipeline)
        return PipelineCheck(name=pipeline.name, parameters=pipeline.parameters, ignored=pipeline.ignored,
                             steps=[PipelineStep(id=step_id, kind=step.kind, after=graph[step_id],
                                                 status=StepStatus.QUEUED)
                                    for step_id, step in pipeline.steps.items()])

    async def run(self, user: str, project: str, source_name: str, content: str, files: Mapping[str, bytes],
                  overrides: Mapping[str, Any] | None = None, no_cache: bool = False, *,
                  trigger: Trigger = Trigger.USER, parent_id: str | None = None) -> PipelineRun:
        """Check the pipeline, open its MLflow run with its files, store the run and start its
        first steps. :class:`InvalidInput` (nothing created) for a bad pipeline or override,
        :class:`~loopml.errors.Unavailable` when MLflow does not take the run."""
        files = _checked_files(files)
        pipeline = await asyncio.to_thread(self.validate, project, source_name, content, files)
        hashes = {path: hashlib.sha256(data).hexdigest() for path, data in files.items()}
        state, actions = await asyncio.to_thread(engine.start, pipeline, overrides, content_hash=hashes,
                                                 no_cache=no_cache, cache_lookup=self._lookup(project))
        run_id = uuid.uuid4().hex[:16]
        async with self._lock(run_id):
            live = await asyncio.to_thread(self._create, run_id, user, project, source_name, content, files, state,
                                           trigger, parent_id)
            self._seen.add(run_id)
            await self._carry_out(live, actions)
            await asyncio.to_thread(self._ended, live)
        return await asyncio.to_thread(self.get, project, run_id)

    def _create(self, run_id: str, user: str, project: str, source_name: str, content: str,
                files: dict[str, bytes], state: RunState, trigger: Trigger, parent_id: str | None) -> _Live:
        stored = {**files, source_name.rpartition("/")[2]: content.encode()}
        mlflow_run_id = self.tracking.start_pipeline_run(project=project, pipeline_run_id=run_id,
                                                         name=state.pipeline.name, source=source_name, user=user,
                                                         parameters=state.parameters)
        try:
            self.tracking.log_files(mlflow_run_id, stored, prefix=PIPELINE_FILES)
            now = utcnow()
            with self.db.session() as session:
                session.add(PipelineRunRow(id=run_id, project=project, user=user, name=state.pipeline.name,
                                           source_name=source_name, status=state.status.value,
                                           state=state.model_dump_json(), files=sorted(stored),
                                           mlflow_run_id=mlflow_run_id, trigger=trigger.value, parent_id=parent_id,
                                           created_at=now, updated_at=now,
                                           finished_at=now if state.status in ENDED else None))
        except Exception:
            self.tracking.delete_run(mlflow_run_id)
            raise
        self._files[run_id] = stored
        return _Live(run_id, project, user, mlflow_run_id, sorted(stored), state)

    def list(self, project: str, limit: int = 50, offset: int = 0) -> list[PipelineRun]:
        """The project's pipeline runs, newest first."""
        query = (select(PipelineRunRow).where(PipelineRunRow.project == project)
                 .order_by(PipelineRunRow.created_at.desc(), PipelineRunRow.id).limit(limit).offset(offset))
        with self.db.session() as session:
            return [to_pipeline_run(row) for row in session.scalars(query)]

    def get(self, project: str, run_id: str) -> PipelineRun:
        with self.db.session() as session:
            return to_pipeline_run(self._row(session, project, run_id))

    async def cancel(self, user: str, project: str, run_id: str) -> PipelineRun:
        """Cancel a queued or running run: its running jobs are cancelled, its queued steps
        never start. :class:`Conflict` when it already ended."""
        await asyncio.to_thread(self.get, project, run_id)  # NotFound before anything else
        async with self._lock(run_id):
            live = await asyncio.to_thread(self._load, run_id)
            if live.state.status in ENDED:
                raise Conflict(f"pipeline run {run_id} already ended ({live.state.status.value}); nothing to cancel",
                               run_id=run_id)
            log.info("pipeline run %s cancelled by %s", run_id, user)
            live.state, actions = engine.cancel(live.state)
            await asyncio.to_thread(self._save, live)
            await self._carry_out(live, actions, user=user)
            await asyncio.to_thread(self._ended, live)
        return await asyncio.to_thread(self.get, project, run_id)

    async def retry(self, user: str, project: str, run_id: str) -> PipelineRun:
        """Run a FAILED or CANCELLED run again from its failed and cancelled steps, keeping what
        succeeded; :class:`Conflict` for a run in any other state."""
        await asyncio.to_thread(self.get, project, run_id)
        async with self._lock(run_id):
            live = await asyncio.to_thread(self._load, run_id)
            live.state, actions = await asyncio.to_thread(engine.retry, live.state, self._lookup(project))
            self._seen.add(run_id)
            await asyncio.to_thread(self._reopen, live)
            await asyncio.to_thread(self._save, live)
            await self._carry_out(live, actions)
            await asyncio.to_thread(self._ended, live)
        return await asyncio.to_thread(self.get, project, run_id)

    async def rerun(self, user: str, project: str, run_id: str, overrides: Mapping[str, Any] | None = None, *,
                    trigger: Trigger = Trigger.USER) -> PipelineRun:
        """Run the pipeline of run ``run_id`` again as a new run: the same file and files, its
        parameters with ``overrides`` on top, every step run afresh (``no_cache``: what the
        notebooks read may have changed since, which no cache key sees). The new run's
        ``parent_id`` is ``run_id``. :class:`NotFound`, :class:`~loopml.errors.Unavailable`."""
        earlier = await asyncio.to_thread(self.get, project, run_id)
        live = await asyncio.to_thread(self._load, run_id)
        files = dict(await asyncio.to_thread(self._pipeline_files, live))
        content = files.pop(earlier.source_name.rpartition("/")[2]).decode()
        return await self.run(user, project, earlier.source_name, content, files,
                              {**earlier.parameters, **(overrides or {})}, no_cache=True, trigger=trigger,
                              parent_id=run_id)

    def rerun_blocking(self, user: str, project: str, run_id: str, overrides: Mapping[str, Any] | None = None, *,
                       trigger: Trigger = Trigger.USER) -> PipelineRun:
        """:meth:`rerun` from a worker thread (a policy's requeue)."""
        return self._blocking(self.rerun(user, project, run_id, overrides, trigger=trigger))

    def run_blocking(self, user: str, project: str, source_name: str, content: str, files: Mapping[str, bytes],
                     overrides: Mapping[str, Any] | None = None, no_cache: bool = False, *,
                     trigger: Trigger = Trigger.USER) -> PipelineRun:
        """:meth:`run` from a worker thread (a schedule's tick)."""
        return self._blocking(self.run(user, project, source_name, content, files, overrides, no_cache,
                                       trigger=trigger))

    def _blocking(self, coroutine: Coroutine[Any, Any, PipelineRun]) -> PipelineRun:
        """Run ``coroutine`` on the loop that drives the runs when there is one (the runs' locks
        belong to it), else on a loop of its own; called from a worker thread, never that loop."""
        if self._loop is not None and self._loop.is_running():
            return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=START_TIMEOUT_S)
        return asyncio.run(coroutine)

    def registered_versions(self, project: str, run_id: str, model: str) -> tuple[list[int], str | None]:
        """The versions of ``model`` (short name) run ``run_id`` made and let through, newest first,
        with why there are none. A pipeline with register, promote or deploy steps for the model
        lets through what those steps acted on (a step its condition skipped lets nothing through:
        the gate held the version back); one without lets through what its steps' jobs registered
        (a grid or search step's: its picked child's)."""
        live = self._load(run_id)
        if live.project != project:
            raise NotFound(f"pipeline run {run_id!r} does not exist in project {project!r}", run_id=run_id)
        pipeline, steps = live.state.pipeline, live.state.steps
        gates = [step_id for step_id, step in pipeline.steps.items()
                 if step.action is not None and step.action.model == model]
        if gates:
            versions = {steps[step_id].outputs.get("version") for step_id in gates if steps[step_id].status in DONE}
            found = sorted((v for v in versions if isinstance(v, int)), reverse=True)
            held = "; ".join(f"{step_id}: {steps[step_id].message}" for step_id in gates
                             if steps[step_id].status == StepStatus.SKIPPED)
            return found, None if found else f"the pipeline's gate held the new version back ({held or 'not run'})"
        found = [version for name, version in self._registered(live, pipeline.steps).items() if name == model]
        return found, None if found else f"no step of pipeline run {run_id} registered a version of {model}"

    @staticmethod
    def _row(session, project: str, run_id: str) -> PipelineRunRow:
        row = session.get(PipelineRunRow, run_id)
        if row is None or row.project != project:
            raise NotFound(f"pipeline run {run_id!r} does not exist in project {project!r}: "
                           "`loopml pipelines list` shows them", run_id=run_id)
        return row

    # ---- the driver loop --------------------------------------------------------------

    async def drive(self) -> None:
        """Follow the RUNNING runs until cancelled (the platform's lifespan starts it)."""
        self._loop = asyncio.get_running_loop()
        while True:
            try:
                await self.poll()
            except Exception:
                log.exception("following the pipeline runs failed; will retry")
            await asyncio.sleep(TICK_S)

    async def poll(self) -> None:
        """One pass: feed every finished step job of every RUNNING run to the engine."""
        for run_id in await asyncio.to_thread(self._running):
            try:
                await self._follow(run_id)
            except Exception:
                log.exception("pipeline run %s: following its steps failed; will retry", run_id)

    def _running(self) -> list[str]:
        with self.db.session() as session:
            return list(session.scalars(select(PipelineRunRow.id).where(
                PipelineRunRow.status == RunStatus.RUNNING.value).order_by(PipelineRunRow.created_at)))

    async def _follow(self, run_id: str) -> None:
        async with self._lock(run_id):
            live = await asyncio.to_thread(self._load, run_id)
            if live.state.status != RunStatus.RUNNING:
                return
            events: list[JobFinished | ActionFinished] = []
            if run_id not in self._seen:
                events += self._lost(live)
                self._seen.add(run_id)
            events += await asyncio.to_thread(self._finished_jobs, live)
            for event in events:
                await self._feed(live, event)
            await asyncio.to_thread(self._ended, live)

    def _lost(self, live: _Live) -> list[JobFinished | ActionFinished]:
        """Events failing the steps that another process left half-launched: running, with no job."""
        why = "the platform restarted while this step was being started: retry the run to start it again"
        events: list[JobFinished | ActionFinished] = []
        for step_id, step_state in live.state.steps.items():
            if step_state.status != StepStatus.RUNNING:
                continue
            step = live.state.pipeline.steps[step_id]
            if step.action is not None:
                events.append(ActionFinished(step=step_id, status=StepStatus.FAILED, message=why))
            elif step_state.children:
                events += [JobFinished(step=step_id, child_index=child.index, status=StepStatus.FAILED, message=why)
                           for child in step_state.children if child.status == StepStatus.RUNNING and not child.job_id]
            elif step_state.job_id is None:
                events.append(JobFinished(step=step_id, status=StepStatus.FAILED, message=why))
        return events

    def _finished_jobs(self, live: _Live) -> list[JobFinished]:
        events = []
        for step_id, step_state in live.state.steps.items():
            if step_state.status != StepStatus.RUNNING or live.state.pipeline.steps[step_id].action is not None:
                continue
            targets = ([(child.index, child.job_id) for child in step_state.children
                        if child.status == StepStatus.RUNNING] if step_state.children
                       else [(None, step_state.job_id)])
            for child_index, job_id in targets:
                if job_id is None:
                    continue
                try:
                    job = self.jobs.get(live.project, job_id)
                except NotFound:
                    events.append(JobFinished(step=step_id, child_index=child_index, status=StepStatus.FAILED,
                                              job_id=job_id, message=f"its job {job_id} no longer exists"))
                    continue
                if job.status.terminal:
                    events.append(self._job_event(step_id, child_index, job))
        return events

    def _job_event(self, step_id: str, child_index: int | None, job: Job) -> JobFinished:
        """The engine's view of a finished job: its status, outputs and output files (by hash)."""
        status = StepStatus(job.status.value)
        files: dict[str, FileRef] = {}
        if job.status == JobStatus.SUCCEEDED and job.output_files:
            hashes = dict(job.output_hashes)
            unhashed = [path for path in job.output_files if path not in hashes]
            if unhashed and job.mlflow_run_id:  # a job stored before hashes were recorded
                try:
                    hashes |= {path: hashlib.sha256(data).hexdigest() for path, data in
                               self.tracking.download_files(job.mlflow_run_id, unhashed, prefix=OUTPUTS).items()}
                except NotFound:
                    pass  # the engine fails the step, naming the missing files
            files = {path: FileRef(sha256=digest, run_id=job.mlflow_run_id, artifact_path=f"{OUTPUTS}/{path}")
                     for path, digest in hashes.items() if path in job.output_files}
        message = None if status == StepStatus.SUCCEEDED else f"job {job.id} {status.value.lower()}: {job.message}"
        return JobFinished(step=step_id, child_index=child_index, status=status, outputs=job.outputs, files=files,
                           message=message, job_id=job.id)

    # ---- carrying out the engine's actions --------------------------------------------

    def _lock(self, run_id: str) -> asyncio.Lock:
        lock = self._locks.get(run_id)
        if lock is None:
            lock = self._locks[run_id] = asyncio.Lock()
        return lock

    async def _feed(self, live: _Live, event: JobLaunched | JobFinished | ActionFinished) -> None:
        def step() -> list:
            live.state, actions = engine.advance(live.state, event, cache_lookup=self._lookup(live.project))
            self._save(live)
            return actions

        await self._carry_out(live, await asyncio.to_thread(step))

    async def _carry_out(self, live: _Live, actions: list, *, user: str | None = None) -> None:
        """Do each action; feed what comes of it back to the engine, and do what that asks for."""
        todo = deque(actions)
        while todo:
            action = todo.popleft()
            event = None
            if isinstance(action, LaunchJob):
                event = await asyncio.to_thread(self._launch, live, action)
            elif isinstance(action, RunAction):
                event = await asyncio.to_thread(self._run_action, live, action)
            elif isinstance(action, CancelJob):
                await self._cancel_job(live, action, user or live.user)
            elif isinstance(action, StoreCache):
                await asyncio.to_thread(self._store_cache, live, action)
            if event is not None:
                def step(event=event) -> list:
                    live.state, more = engine.advance(live.state, event, cache_lookup=self._lookup(live.project))
                    self._save(live)
                    return more

                todo.extend(await asyncio.to_thread(step))

    def _launch(self, live: _Live, action: LaunchJob) -> JobLaunched | JobFinished:
        step = live.state.pipeline.steps[action.step]
        try:
            spec, files = self._job_spec(live, action, step)
            files.update(self._upstream_files(action.input_files))
            job = self.jobs.submit(live.user, live.project, spec, trigger=Trigger.PIPELINE, files=files,
                                   parent_run_id=live.mlflow_run_id,
                                   run_tags={tag.PIPELINE_RUN_ID: live.id, tag.PIPELINE_STEP: action.step})
        except Exception as exc:  # noqa: BLE001 - any refusal fails the step with its reason; retry submits again
            if not isinstance(exc, LoopMLError):
                log.exception("pipeline run %s: could not submit the job of step %s", live.id, action.step)
            why = exc.message if isinstance(exc, LoopMLError) else f"{type(exc).__name__}: {str(exc)[:300]}"
            return JobFinished(step=action.step, child_index=action.child_index, status=StepStatus.FAILED,
                               message=f"its job could not be submitted: {why}")
        return JobLaunched(step=action.step, child_index=action.child_index, job_id=job.id)

    def _job_spec(self, live: _Live, action: LaunchJob, step: Step) -> tuple[JobSubmit, dict[str, bytes]]:
        """The step's job and its input files from the pipeline's files (not yet the upstream ones)."""
        stored = self._pipeline_files(live)
        folder = posixpath.dirname(step.file)

        def in_workdir(path: str) -> str:
            local = posixpath.relpath(path, folder or ".")
            if local.startswith("../"):
                raise InvalidInput(f"{path!r} lies outside the folder of {step.file!r}, the step's working dir: "
                                   "keep a step's dependencies in its file's folder or below", field="dependencies")
            return local

        files: dict[str, bytes] = {}
        for pattern in step.dependencies:
            for path in stored:
                if fnmatch.fnmatchcase(path, pattern):
                    files[in_workdir(path)] = stored[path]
        name = f"{live.state.pipeline.name}/{action.step}"
        if action.child_index is not None:
            name += f"[{action.child_index}]"
        if step.notebook is not None:
            notebook = json.loads(stored[step.notebook])
        else:
            files[in_workdir(step.script)] = stored[step.script]
            notebook = script_notebook(in_workdir(step.script), name)
        if step.env:
            notebook = with_env(notebook, step.env)
        spec = JobSubmit(notebook=notebook, name=name, parameters=action.parameters,
                         resources=Resources(**step.resources.model_dump()), timeout_s=step.timeout_s,
                         max_retries=step.max_retries, output_files=list(step.outputs))
        return spec, files

    def _upstream_files(self, refs: Mapping[str, FileRef]) -> dict[str, bytes]:
        """The upstream files by their path in the working dir, from the runs that hold them."""
        wanted: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)  # (run, prefix) → {artifact: path}
        for path, ref in refs.items():
            prefix, _, artifact = (ref.artifact_path or "").partition("/")
            if not ref.run_id or not artifact:
                raise InvalidInput(f"upstream file {path!r} has no run to fetch it from", field="inputs")
            wanted[(ref.run_id, prefix)][artifact] = path
        found = {}
        for (run_id, prefix), paths in wanted.items():
            for artifact, data in self.tracking.download_files(run_id, list(paths), prefix=prefix).items():
                found[paths[artifact]] = data
        return found

    def _pipeline_files(self, live: _Live) -> dict[str, bytes]:
        if live.id not in self._files:
            self._files[live.id] = self.tracking.download_files(live.mlflow_run_id, live.files, prefix=PIPELINE_FILES)
        return self._files[live.id]

    def _run_action(self, live: _Live, action: RunAction) -> ActionFinished:
        runner = self.actions.get(action.kind)
        if runner is None:
            return ActionFinished(step=action.step, status=StepStatus.FAILED,
                                  message=f"this platform runs no {action.kind} steps")
        call = ActionCall(user=live.user, project=live.project, pipeline_run_id=live.id, step=action.step,
                          kind=action.kind, arguments=dict(action.arguments), mlflow_run_id=live.mlflow_run_id,
                          registered=self._registered(live, upstream(live.state.pipeline, action.step)))
        try:
            outputs = dict(runner(call))
        except LoopMLError as exc:
            return ActionFinished(step=action.step, status=StepStatus.FAILED, message=exc.message)
        except Exception as exc:  # noqa: BLE001 - the step fails with the reason; the run goes on
            log.exception("pipeline run %s: the %s step %s failed", live.id, action.kind, action.step)
            return ActionFinished(step=action.step, status=StepStatus.FAILED,
                                  message=f"the {action.kind} action failed: {type(exc).__name__}: {str(exc)[:300]}")
        return ActionFinished(step=action.step, status=StepStatus.SUCCEEDED, outputs=outputs)

    def _registered(self, live: _Live, step_ids: Iterable[str]) -> dict[str, int]:
        """Each model's newest version registered by the steps ``step_ids``: by a register step,
        else by the job of a notebook or script step (a foreach or search step's: its picked child's)."""
        from_steps: dict[str, int] = {}
        from_jobs: dict[str, int] = {}
        for other in step_ids:
            kind, state = live.state.pipeline.steps[other].kind, live.state.steps[other]
            if kind == "register" and state.status in DONE:
                model, version = state.outputs.get("model"), state.outputs.get("version")
                if isinstance(model, str) and isinstance(version, int):
                    from_steps[model] = max(version, from_steps.get(model, 0))
            elif kind in ("notebook", "script") and state.status == StepStatus.SUCCEEDED and state.job_id:
                try:
                    models = self.jobs.get(live.project, state.job_id).models
                except NotFound:
                    continue
                for ref in models:
                    name = ref.name.removeprefix(f"{live.project}.")
                    from_jobs[name] = max(ref.version, from_jobs.get(name, 0))
        return {**from_jobs, **from_steps}

    async def _cancel_job(self, live: _Live, action: CancelJob, user: str) -> None:
        try:
            await self.jobs.cancel(user, live.project, action.job_id)
        except (Conflict, NotFound):
            pass  # it ended (or went) by itself meanwhile
        except Exception:
            log.exception("pipeline run %s: could not cancel job %s", live.id, action.job_id)

    def _lookup(self, project: str) -> Callable[[str, str], CachedResult | None]:
        def lookup(step_id: str, key: str) -> CachedResult | None:
            with self.db.session() as session:
                row = session.get(PipelineCacheRow, (project, key))
                return CachedResult.model_validate(row.result) if row is not None else None
        return lookup

    def _store_cache(self, live: _Live, action: StoreCache) -> None:
        result = CachedResult(outputs=action.outputs, files=action.files).model_dump(mode="json")
        with self.db.session() as session:
            session.merge(PipelineCacheRow(project=live.project, cache_key=action.cache_key, step=action.step,
                                           result=result, pipeline_run_id=live.id, created_at=utcnow()))

    # ---- storage ----------------------------------------------------------------------

    def _load(self, run_id: str) -> _Live:
        with self.db.session() as session:
            row = session.get(PipelineRunRow, run_id)
            if row is None:
                raise NotFound(f"pipeline run {run_id!r} does not exist", run_id=run_id)
            return _Live(row.id, row.project, row.user, row.mlflow_run_id, list(row.files or []),
                         RunState.model_validate_json(row.state), ended=row.finished_at is not None)

    def _save(self, live: _Live) -> None:
        with self.db.session() as session:
            row = session.get(PipelineRunRow, live.id)
            row.state = live.state.model_dump_json()
            row.status = live.state.status.value
            row.updated_at = utcnow()
            if live.state.status in ENDED and row.finished_at is None:
                row.finished_at = row.updated_at
            elif live.state.status not in ENDED:
                row.finished_at = None

    def _ended(self, live: _Live) -> None:
        """Close the run's MLflow run once the run ended (once), and forget its files."""
        if live.state.status not in ENDED:
            return
        self._files.pop(live.id, None)
        if live.mlflow_run_id and not live.ended:
            try:
                self.tracking.end_pipeline_run(live.mlflow_run_id, live.state.status.value)
            except Exception:
                log.exception("could not close MLflow run %s of pipeline run %s", live.mlflow_run_id, live.id)
        live.ended = True

    def _reopen(self, live: _Live) -> None:
        if live.mlflow_run_id:
            try:
                self.tracking.reopen_pipeline_run(live.mlflow_run_id)
            except Exception:
                log.exception("could not reopen MLflow run %s of pipeline run %s", live.mlflow_run_id, live.id)
        live.ended = False
