"""The pipeline engine: a pure, deterministic state machine that decides what a run does next.

It does no I/O: no database, no Ray, no HTTP, no clock. A driver (the platform service) keeps the
:class:`RunState` (plain JSON: ``model_dump_json`` / ``model_validate_json``, never pickled),
carries out the actions the engine returns and feeds back what happened::

    state, actions = start(pipeline, overrides, content_hash=hashes, cache_lookup=lookup)
    ...                                   # carry out actions, then for each event that comes back:
    state, actions = advance(state, event, cache_lookup=lookup)

Every function returns a new state and leaves the one it was given alone.

Actions: :class:`LaunchJob` (submit a job), :class:`RunAction` (a built-in register, promote or
deploy), :class:`CancelJob`, :class:`StoreCache` (remember a step's result under its cache key).
Events: :class:`JobLaunched` (the job layer gave the job an id), :class:`JobFinished`,
:class:`ActionFinished`. The cache is asked through ``cache_lookup(step_id, cache_key)``, a
callable that answers a :class:`CachedResult` or ``None`` synchronously and changes nothing.

Rules (where issue 16 leaves a choice, the choice is said here):

- A step is ready when every direct upstream step is SUCCEEDED or CACHED; all ready steps start
  at once. RUNNING means "launched" (the job may still wait in the job queue).
- ``when`` is evaluated when the step is ready; false: SKIPPED, with the explanation. A step
  whose upstream was SKIPPED is SKIPPED too ("upstream deploy was skipped"); a run whose steps
  are all SUCCEEDED, CACHED or SKIPPED succeeded. A condition or template that cannot be
  evaluated (a missing output, numbers compared with strings) fails the step, with the reason.
- A FAILED (or externally CANCELLED) step fails the run: its dependents are SKIPPED ("upstream
  train failed") at once; steps already running finish, and branches that do not depend on it
  go on (as Airflow and Databricks jobs do), so a retry has less to redo. The run ends when
  nothing runs: FAILED if a step failed, else CANCELLED if one was cancelled, else SUCCEEDED.
- A job that succeeds without writing one of its declared ``outputs`` files fails its step.
- Cache: a notebook or script step's key is :func:`cache_key` of its rendered parameters, its
  file's content hash, its input files' and dependencies' hashes (and its grid or sweep).
  ``cache: false`` or a run's ``no_cache`` skip the lookup; a result is stored
  (:class:`StoreCache`) whenever a step succeeded by running. Built-in actions have side effects
  and are never cached. A foreach/search step is cached as a whole (its selected result), never
  child by child.
- foreach: one child per combination of the grid (cartesian product, keys in the order given,
  the last varying fastest), all launched together. ``select`` picks the child with the best
  output (ties: the first); its outputs and files become the step's. Without ``select`` the
  step's outputs are ``{"children": [each child's outputs]}`` and it passes no files on.
- search: ``trials`` children, at most ``parallel`` running. Each trial is sampled by an Optuna
  study rebuilt from the finished trials (``TPESampler`` seeded from the run's seed, the step
  and the trial's number), so the same events give the same trials. The best trial (ties: the
  first) gives the step its outputs and files.
- A failed child (or one that did not set the selected or objective output to a number) fails
  its step once the running children finished; no further trial is started.
- cancel: the run is CANCELLED at once; running jobs get :class:`CancelJob` (a job whose id is
  not known yet gets it when :class:`JobLaunched` arrives), queued and running steps are
  CANCELLED. A built-in action already started is not undone. Events that come later are ignored.
- retry: a FAILED or CANCELLED run re-runs its FAILED and CANCELLED steps and the steps SKIPPED
  because of them, keeping what SUCCEEDED, was CACHED or was SKIPPED by a condition. A
  foreach/search step re-runs all its children (the same seed samples the same trials).
"""

from __future__ import annotations

import fnmatch
import hashlib
import itertools
import json
import logging
import math
from collections.abc import Mapping
from typing import Any, Literal

from loopml.errors import Conflict, InvalidInput

from .dag import direct_upstream, topological_order, upstream
from .expr import ExpressionError, kind_of, parse_condition, render
from .run_state import (
    _BROKEN,
    DONE,
    Action,
    ActionFinished,
    CacheLookup,
    CancelJob,
    ChildState,
    Files,
    JobFinished,
    JobLaunched,
    LaunchJob,
    RunAction,
    RunState,
    RunStatus,
    StepState,
    StepStatus,
    StoreCache,
)
from .spec import Pipeline, Step

log = logging.getLogger(__name__)

CACHE_KEY_VERSION = 1


def _override(name: str, default: Any, value: Any) -> Any:
    """``value`` for parameter ``name``: text (as ``-p k=v`` sends it) is read as the default's
    JSON type; anything else must already be of that type."""
    if isinstance(value, str) and not isinstance(default, str):
        text = value.strip()
        try:
            value = json.loads(text.lower() if text.lower() in ("true", "false") else text)
        except ValueError:
            if default is not None:
                raise InvalidInput(f"parameter {name!r} is a {kind_of(default)} (default {json.dumps(default)}): "
                                   f"{text!r} is not one", field=f"parameters.{name}") from None
    if default is None or kind_of(value) == kind_of(default):
        return float(value) if isinstance(default, float) and kind_of(value) == "number" else value
    raise InvalidInput(f"parameter {name!r} is a {kind_of(default)} (default {json.dumps(default)}), got "
                       f"{kind_of(value)} {json.dumps(value)}", field=f"parameters.{name}")


def resolve_parameters(pipeline: Pipeline, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The pipeline's parameters with ``overrides`` applied; :class:`InvalidInput` for a name the
    pipeline does not declare (listing those it does) or a value of the wrong type."""
    resolved = dict(pipeline.parameters)
    unknown = sorted(set(overrides or {}) - set(resolved))
    if unknown:
        known = ", ".join(resolved) or "none"
        raise InvalidInput(f"unknown pipeline parameter{'s' if len(unknown) > 1 else ''} "
                           f"{', '.join(map(repr, unknown))}: pipeline {pipeline.name!r} declares {known}",
                           field=f"parameters.{unknown[0]}")
    for name, value in (overrides or {}).items():
        resolved[name] = _override(name, resolved[name], value)
    return resolved


def cache_key(step: Step, parameters: Mapping[str, Any], *, file_hash: str, input_hashes: Mapping[str, str],
              dependency_hashes: Mapping[str, str], seed: int) -> str:
    """The sha256 (hex) of everything that decides a notebook or script step's result: its file
    and that file's hash, its rendered parameters, environment, declared outputs, grid or sweep
    (a sweep with ``seed``), and the hashes of its input files and dependencies by path.
    Resources, timeouts and retries are left out: they do not change what a step computes."""
    payload = {
        "version": CACHE_KEY_VERSION, "kind": step.kind, "file": step.file, "file_sha256": file_hash,
        "parameters": dict(parameters), "env": step.env, "outputs": sorted(step.outputs),
        "foreach": step.foreach, "select": step.select.model_dump() if step.select else None,
        "search": {**step.search.model_dump(), "seed": seed} if step.search else None,
        "inputs": dict(sorted(input_hashes.items())), "dependencies": dict(sorted(dependency_hashes.items())),
    }
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _seed_of(*parts: Any) -> int:
    return int(hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def start(pipeline: Pipeline, overrides: Mapping[str, Any] | None = None, *, content_hash: Mapping[str, str],
          no_cache: bool = False, cache_lookup: CacheLookup | None = None,
          seed: int | None = None) -> tuple[RunState, list[Action]]:
    """A new run of ``pipeline`` (checked by :func:`.validate.validate` beforehand) and its first
    actions: every step with no upstream is launched (or taken from the cache, or skipped).

    ``content_hash``: sha256 of the pipeline's files by relative path (each step's notebook or
    script at least). ``seed`` (default: derived from the pipeline's name, so a re-run samples
    the same trials and its sweeps can be served from the cache) seeds the sweeps.
    :class:`InvalidInput` for an unknown override, a cycle or a step file without a hash.
    """
    parameters = resolve_parameters(pipeline, overrides)
    try:
        topological_order(pipeline)
    except ValueError as exc:
        raise InvalidInput(f"{pipeline.source}: {exc}", field="steps") from None
    missing = sorted({step.file for step in pipeline.steps.values() if step.file and step.file not in content_hash})
    if missing:
        raise InvalidInput(f"no content hash for {', '.join(missing)}: hash every notebook and script of the "
                           "pipeline", field="content_hash")
    state = RunState(pipeline=pipeline, parameters=parameters, no_cache=no_cache, content_hash=dict(content_hash),
                     seed=_seed_of("pipeline", pipeline.name) if seed is None else seed,
                     status=RunStatus.RUNNING, steps={step_id: StepState() for step_id in pipeline.steps})
    return _Run(state, cache_lookup).schedule()


def advance(state: RunState, event: JobLaunched | JobFinished | ActionFinished,
            cache_lookup: CacheLookup | None = None) -> tuple[RunState, list[Action]]:
    """``state`` after ``event``, and what to do now. An event about a step or child that is no
    longer running (a duplicate, one that arrives after cancel or a stale one replaced by a
    retry) changes nothing; one naming no step or child of the run is :class:`InvalidInput`."""
    run = _Run(state, cache_lookup)
    if isinstance(event, JobLaunched):
        run.launched(event)
        return run.state, run.actions
    if isinstance(event, JobFinished):
        run.job_finished(event)
    else:
        run.action_finished(event)
    return run.schedule()


def cancel(state: RunState) -> tuple[RunState, list[Action]]:
    """The run CANCELLED, with a :class:`CancelJob` for each running job whose id is known.
    A finished run is returned as it is, with no action."""
    run = _Run(state, None)
    if run.state.status in (RunStatus.QUEUED, RunStatus.RUNNING):
        run.cancel()
    return run.state, run.actions


def retry(state: RunState, cache_lookup: CacheLookup | None = None) -> tuple[RunState, list[Action]]:
    """A FAILED or CANCELLED run running again from its failed and cancelled steps and those
    they skipped; :class:`Conflict` for a run in any other state."""
    if state.status not in (RunStatus.FAILED, RunStatus.CANCELLED):
        raise Conflict(f"only a failed or cancelled run can be retried; this one is {state.status.value}",
                       field="status")
    run = _Run(state, cache_lookup)
    for step_id, step_state in run.state.steps.items():
        if step_state.status in _BROKEN or step_state.skipped_because == "failure" \
                or step_state.status in (StepStatus.QUEUED, StepStatus.RUNNING):
            jobs = [step_state.job_id, *(child.job_id for child in step_state.children)]
            run.state.steps[step_id] = StepState(
                replaced_jobs=[*step_state.replaced_jobs, *(job for job in jobs if job is not None)])
    run.state.attempt += 1
    run.state.status = RunStatus.RUNNING
    return run.schedule()


class _Run:
    """One transition: a private copy of the state, the actions decided so far."""

    def __init__(self, state: RunState, cache_lookup: CacheLookup | None) -> None:
        self.state = state.model_copy(deep=True)
        self.pipeline = self.state.pipeline
        self.lookup = cache_lookup
        self.actions: list[Action] = []
        self.graph = direct_upstream(self.pipeline)
        self.order = topological_order(self.pipeline)

    # --- scheduling ------------------------------------------------------------------------------------------

    def schedule(self) -> tuple[RunState, list[Action]]:
        """Start, skip or take from the cache every queued step that can be decided now, in
        topological order (so one pass settles chains of skips and cache hits); then end the run
        when nothing is left to run."""
        if self.state.status == RunStatus.RUNNING:
            for step_id in self.order:
                if self.state.steps[step_id].status != StepStatus.QUEUED:
                    continue
                blocked = self._blocked(step_id)
                if blocked is not None:
                    self._skip(step_id, *blocked)
                elif all(self.state.steps[up].status in DONE for up in self.graph[step_id]):
                    self._begin(step_id)
            self._settle()
        return self.state, self.actions

    def _blocked(self, step_id: str) -> tuple[Literal["condition", "failure"], str] | None:
        ups = [(up, self.state.steps[up]) for up in self.graph[step_id]]
        for up, up_state in ups:
            if up_state.status == StepStatus.FAILED:
                return "failure", f"upstream {up} failed"
            if up_state.status == StepStatus.CANCELLED:
                return "failure", f"upstream {up} was cancelled"
            if up_state.skipped_because == "failure":
                return "failure", f"upstream {up} was skipped ({up_state.message})"
        for up, up_state in ups:
            if up_state.status == StepStatus.SKIPPED:
                return "condition", f"upstream {up} was skipped"
        return None

    def _settle(self) -> None:
        statuses = {step_state.status for step_state in self.state.steps.values()}
        if statuses & {StepStatus.QUEUED, StepStatus.RUNNING}:
            return
        if StepStatus.FAILED in statuses:
            self.state.status = RunStatus.FAILED
        elif StepStatus.CANCELLED in statuses:
            self.state.status = RunStatus.CANCELLED
        else:
            self.state.status = RunStatus.SUCCEEDED

    def _context(self) -> dict[str, Any]:
        return {"params": self.state.parameters,
                "steps": {step_id: {"status": step_state.status.value, "outputs": step_state.outputs}
                          for step_id, step_state in self.state.steps.items()}}

    def _begin(self, step_id: str) -> None:
        step, step_state, context = self.pipeline.steps[step_id], self.state.steps[step_id], self._context()
        try:
            if step.when is not None:
                go, why = parse_condition(step.when).evaluate(context)
                if not go:
                    self._skip(step_id, "condition", f"condition is false: {why}")
                    return
            if step.action is not None:
                arguments = render(step.action.model_dump(mode="json"), context)
            else:
                step_state.parameters = render(step.parameters, context)
        except ExpressionError as exc:
            self._fail(step_id, exc.message)
            return
        step_state.status = StepStatus.RUNNING
        if step.action is not None:
            self.actions.append(RunAction(step=step_id, kind=step.kind, arguments=arguments))
            return
        step_state.inputs = self._inputs(step_id)
        step_state.cache_key = self._cache_key(step_id)
        if self.lookup is not None and step.cache and not self.state.no_cache:
            hit = self.lookup(step_id, step_state.cache_key)
            if hit is not None:
                step_state.status, step_state.message = StepStatus.CACHED, "the cache had its result"
                step_state.outputs, step_state.files = dict(hit.outputs), dict(hit.files)
                return
        if step.foreach is not None:
            grid = [dict(zip(step.foreach, values, strict=True)) for values in itertools.product(*step.foreach.values())]
            for index, point in enumerate(grid):
                self._launch_child(step_id, index, point)
        elif step.search is not None:
            self._more_trials(step_id)
        else:
            self.actions.append(LaunchJob(step=step_id, parameters=step_state.parameters, input_files=step_state.inputs,
                                          cache_key=step_state.cache_key))

    def _inputs(self, step_id: str) -> Files:
        """Every upstream step's files by relative path (a later step in topological order wins
        a path two of them write)."""
        ups = upstream(self.pipeline, step_id)
        inputs: Files = {}
        for other in self.order:
            if other in ups:
                inputs.update(self.state.steps[other].files)
        return inputs

    def _cache_key(self, step_id: str) -> str:
        step, step_state, hashes = self.pipeline.steps[step_id], self.state.steps[step_id], self.state.content_hash
        dependencies = {path: digest for path, digest in hashes.items()
                        if any(fnmatch.fnmatchcase(path, pattern) for pattern in step.dependencies)}
        return cache_key(step, step_state.parameters, file_hash=hashes[step.file],
                         input_hashes={path: ref.sha256 for path, ref in step_state.inputs.items()},
                         dependency_hashes=dependencies, seed=self.state.seed)

    def _launch_child(self, step_id: str, index: int, values: dict[str, Any]) -> None:
        step_state = self.state.steps[step_id]
        step_state.children.append(ChildState(index=index, parameters=values))
        self.actions.append(LaunchJob(step=step_id, child_index=index, parameters={**step_state.parameters, **values},
                                      input_files=step_state.inputs, cache_key=None))

    def _more_trials(self, step_id: str) -> None:
        search, children = self.pipeline.steps[step_id].search, self.state.steps[step_id].children
        if any(child.status in _BROKEN for child in children):
            return
        running = sum(child.status == StepStatus.RUNNING for child in children)
        while len(children) < search.trials and running < search.parallel:
            self._launch_child(step_id, len(children), self._sample(step_id))
            running += 1

    def _sample(self, step_id: str) -> dict[str, Any]:
        """The next trial's values, from an Optuna study rebuilt from the finished trials."""
        import optuna

        _quiet_optuna()
        search, children = self.pipeline.steps[step_id].search, self.state.steps[step_id].children
        distributions = {name: param.distribution() for name, param in search.params.items()}
        sampler = optuna.samplers.TPESampler(seed=_seed_of(self.state.seed, step_id, len(children)))
        study = optuna.create_study(direction=search.objective.direction, sampler=sampler)
        for child in children:
            if child.status == StepStatus.SUCCEEDED:
                study.add_trial(optuna.trial.create_trial(params=child.parameters, distributions=distributions,
                                                          value=child.value))
        return dict(study.ask(distributions).params)

    # --- ends of steps ---------------------------------------------------------------------------------------

    def _skip(self, step_id: str, because: Literal["condition", "failure"], message: str) -> None:
        step_state = self.state.steps[step_id]
        step_state.status, step_state.skipped_because, step_state.message = StepStatus.SKIPPED, because, message

    def _fail(self, step_id: str, message: str, status: StepStatus = StepStatus.FAILED) -> None:
        step_state = self.state.steps[step_id]
        step_state.status, step_state.message = status, message

    def _succeed(self, step_id: str, outputs: dict[str, Any], files: Files, message: str | None = None) -> None:
        step_state = self.state.steps[step_id]
        step_state.status, step_state.outputs, step_state.files = StepStatus.SUCCEEDED, outputs, files
        step_state.message = message
        if step_state.cache_key is not None:
            self.actions.append(StoreCache(step=step_id, cache_key=step_state.cache_key, outputs=outputs, files=files))

    def _missing_files(self, step_id: str, files: Files) -> str | None:
        missing = [path for path in self.pipeline.steps[step_id].outputs if path not in files]
        if not missing:
            return None
        return f"the job succeeded without writing its declared outputs: {', '.join(missing)}"

    # --- events ----------------------------------------------------------------------------------------------

    def _target(self, step_id: str, child_index: int | None) -> tuple[StepState, ChildState | None]:
        step = self.pipeline.steps.get(step_id)
        if step is None:
            raise InvalidInput(f"the event names step {step_id!r}, which pipeline {self.pipeline.name!r} does not "
                               f"have (steps: {', '.join(self.pipeline.steps)})", field="step")
        step_state = self.state.steps[step_id]
        fans_out = step.foreach is not None or step.search is not None
        if fans_out != (child_index is not None):
            raise InvalidInput(f"step {step_id!r} {'runs children: name one' if fans_out else 'has no children'} "
                               f"(child_index {child_index})", field="child_index")
        if child_index is None:
            return step_state, None
        if not 0 <= child_index < len(step_state.children):
            raise InvalidInput(f"step {step_id!r} has no child {child_index} (it has {len(step_state.children)})",
                               field="child_index")
        return step_state, step_state.children[child_index]

    def launched(self, event: JobLaunched) -> None:
        step_state, child = self._target(event.step, event.child_index)
        target = child or step_state
        if event.job_id in step_state.replaced_jobs:
            log.info("ignoring %s for step %s: job %s was replaced by a retry", event.type, event.step, event.job_id)
        elif target.status == StepStatus.RUNNING and target.job_id is None:
            target.job_id = event.job_id
        elif target.status == StepStatus.CANCELLED and target.job_id is None:
            target.job_id = event.job_id
            self.actions.append(CancelJob(step=event.step, child_index=event.child_index, job_id=event.job_id))
        else:
            log.info("ignoring %s for step %s (%s)", event.type, event.step, target.status.value)

    def _current(self, event: JobFinished, step_state: StepState, target: StepState | ChildState) -> bool:
        stale = event.job_id is not None and (event.job_id in step_state.replaced_jobs
                                              or target.job_id not in (None, event.job_id))
        if target.status != StepStatus.RUNNING or stale:
            log.info("ignoring %s for step %s (%s, job %s)", event.type, event.step, target.status.value, event.job_id)
            return False
        return True

    def job_finished(self, event: JobFinished) -> None:
        step_state, child = self._target(event.step, event.child_index)
        if self.pipeline.steps[event.step].action is not None:
            raise InvalidInput(f"step {event.step!r} is a built-in action: it ends with action_finished", field="type")
        if not self._current(event, step_state, step_state) or (child and not self._current(event, step_state, child)):
            return
        missing = self._missing_files(event.step, event.files) if event.status == StepStatus.SUCCEEDED else None
        status = StepStatus.FAILED if missing else event.status
        message = missing or event.message or (None if status == StepStatus.SUCCEEDED else f"the job {status.lower()}")
        if child is None:
            if status == StepStatus.SUCCEEDED:
                self._succeed(event.step, dict(event.outputs), dict(event.files))
            else:
                self._fail(event.step, message, status)
            return
        child.status, child.message, child.outputs, child.files = status, message, dict(event.outputs), dict(event.files)
        if status == StepStatus.SUCCEEDED:
            self._score(event.step, child)
        self._child_ended(event.step)

    def _score(self, step_id: str, child: ChildState) -> None:
        step = self.pipeline.steps[step_id]
        metric = step.search.objective.metric if step.search else step.select.output if step.select else None
        if metric is None:
            return
        value = child.outputs.get(metric)
        if kind_of(value) != "number" or not math.isfinite(value):
            child.status = StepStatus.FAILED
            child.message = (f"output {metric!r} must be a number, got {json.dumps(value)}" if metric in child.outputs
                             else f"it did not set output {metric!r} (it set: {', '.join(child.outputs) or 'none'})")
            return
        child.value = float(value)

    def _child_ended(self, step_id: str) -> None:
        step = self.pipeline.steps[step_id]
        children = self.state.steps[step_id].children
        if step.search is not None:
            self._more_trials(step_id)
        if any(child.status == StepStatus.RUNNING for child in children):
            return
        broken = [child for child in children if child.status in _BROKEN]
        if broken:
            worst = next((child for child in broken if child.status == StepStatus.FAILED), broken[0])
            self._fail(step_id, f"child {worst.index} ({_shown(worst.parameters)}) {worst.status.lower()}: "
                                f"{worst.message}", worst.status)
            return
        if step.search is None and step.select is None:
            self._succeed(step_id, {"children": [child.outputs for child in children]}, {})
            return
        maximize = step.search.objective.direction == "maximize" if step.search else step.select.max is not None
        metric = step.search.objective.metric if step.search else step.select.output
        pick = max if maximize else min  # both return the first of equals: ties go to the first child
        best = pick(children, key=lambda child: child.value)
        self.state.steps[step_id].job_id = best.job_id  # the step's job: the one whose outputs it took
        self._succeed(step_id, dict(best.outputs), dict(best.files),
                      f"child {best.index} ({_shown(best.parameters)}) is the best: {metric} = {best.value}")

    def action_finished(self, event: ActionFinished) -> None:
        step_state, _ = self._target(event.step, None)
        if self.pipeline.steps[event.step].action is None:
            raise InvalidInput(f"step {event.step!r} runs a job: it ends with job_finished", field="type")
        if step_state.status != StepStatus.RUNNING:
            log.info("ignoring %s for step %s (%s)", event.type, event.step, step_state.status.value)
        elif event.status == StepStatus.SUCCEEDED:
            self._succeed(event.step, dict(event.outputs), {}, event.message)
        else:
            self._fail(event.step, event.message or f"the {self.pipeline.steps[event.step].kind} action failed")

    def cancel(self) -> None:
        for step_id, step_state in self.state.steps.items():
            if step_state.status not in (StepStatus.QUEUED, StepStatus.RUNNING):
                continue
            for child in step_state.children:
                if child.status == StepStatus.RUNNING:
                    child.status, child.message = StepStatus.CANCELLED, "the run was cancelled"
                    if child.job_id is not None:
                        self.actions.append(CancelJob(step=step_id, child_index=child.index, job_id=child.job_id))
            if step_state.status == StepStatus.RUNNING and step_state.job_id is not None:
                self.actions.append(CancelJob(step=step_id, job_id=step_state.job_id))
            step_state.status, step_state.message = StepStatus.CANCELLED, "the run was cancelled"
        self.state.status = RunStatus.CANCELLED


def _shown(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{name}={json.dumps(value)}" for name, value in values.items())


_quieted = False


def _quiet_optuna() -> None:
    """Drop the INFO line Optuna logs for each in-memory study: the engine builds one per trial,
    and Optuna's own handler would print each to stderr. Only that one logger, only that line."""
    global _quieted
    if not _quieted:
        logging.getLogger("optuna.storages._in_memory").addFilter(
            lambda record: not record.getMessage().startswith("A new study created in memory"))
        _quieted = True
