"""``loopml pipelines …``: check, run and follow pipelines (DAGs of notebook jobs) from the shell.

Registered on the root group by :mod:`loopml.cli`. A pipeline FILE is a native
``*.pipeline.yaml`` or an Elyra ``.pipeline``; it travels with the files its steps name in its
folder (notebooks, scripts, ``dependencies``; :func:`loopml.executor.needed_files`) and nothing
else. Every command is project-scoped (``-P``) and every command that prints data takes
``--json``. ``--wait`` follows the run step by step on stderr: on a terminal a table redrawn in
place, otherwise one line per change of a step (logs and CI read those), and exits 1 with one
``error:`` line naming the failed steps unless the run SUCCEEDED.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import click

from loopml.cli.common import Ended, Listing, fmt_time, pairs
from loopml.cli.util import (
    caller_of,
    client_from,
    echo_fields,
    echo_json,
    echo_table,
    json_option,
    params_option,
    project_option,
    resolve_project,
    table_lines,
)
from loopml.errors import InvalidInput
from loopml.executor import PipelineCheck, PipelineChild, PipelineRun, PipelineStep, RunStatus, StepStatus

PIPELINE_FILE = click.Path(exists=True, dir_okay=False, path_type=Path)
ENDED = frozenset({StepStatus.SUCCEEDED, StepStatus.CACHED, StepStatus.SKIPPED})
"""A step that needs nothing more: what ``done`` counts (as the PipelinePanel does)."""
VALUE_CHARS = 40
"""An output or parameter value longer than this is cut, so a table row stays one line."""


class PipelineProblems(click.ClickException):
    """A pipeline refused for several reasons: one ``error: …`` line each on stderr, exit code 1.

    The root group would join a multi-line message into one line; a list of problems (each
    naming its step and field) reads better one per line. ``format_message`` (what the
    ``%loopml`` magic shows) joins them with ``; ``.
    """

    exit_code = 1

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)

    def show(self, file: IO[Any] | None = None) -> None:
        for problem in self.problems:
            click.echo(f"error: {problem}", file=file, err=file is None)


@contextmanager
def _one_line_per_problem() -> Iterator[None]:
    """Turn a refusal listing several problems (the platform's 422, or the local reader's) into
    :class:`PipelineProblems`; a single problem stays the usual one-line error."""
    try:
        yield
    except InvalidInput as exc:
        problems = [line.strip() for line in exc.message.splitlines() if line.strip()]
        if len(problems) > 1:
            raise PipelineProblems(problems) from exc
        raise


# -- text ---------------------------------------------------------------------------------


def steps_done(run: PipelineRun) -> str:
    """``"2/4"``: the steps that succeeded, were cached or were skipped, of all."""
    return f"{sum(step.status in ENDED for step in run.steps)}/{len(run.steps)}"


def _picked(step: PipelineStep) -> int | None:
    """Index of the child whose outputs a finished foreach/search step took (its job is the step's)."""
    if step.status not in ENDED or step.job_id is None:
        return None
    return next((child.index for child in step.children if child.job_id == step.job_id), None)


def _children_text(step: PipelineStep) -> str:
    """``"3 children, 1 done"`` while they run, ``"3 children, picked #1"`` after; empty without."""
    if not step.children:
        return ""
    noun = "child" if len(step.children) == 1 else "children"
    picked = _picked(step)
    if picked is not None:
        return f"{len(step.children)} {noun}, picked #{picked}"
    done = sum(child.status in ENDED | {StepStatus.FAILED, StepStatus.CANCELLED} for child in step.children)
    return f"{len(step.children)} {noun}, {done} done"


def step_details(step: PipelineStep) -> str:
    """What a step said or produced: its message, its children, its outputs and files."""
    parts = [step.message or "", _children_text(step), pairs(step.outputs, VALUE_CHARS)]
    if step.files:
        parts.append("files: " + ", ".join(step.files))
    return " · ".join(part for part in parts if part)


def outcome(run: PipelineRun) -> str:
    """One line saying where the run is, or how it ended."""
    return f"pipeline run {run.id} {run.status.value} ({steps_done(run)} steps done)"


def failure(run: PipelineRun) -> str:
    """Why a run did not succeed: each failed or cancelled step with its message."""
    broken = [step for step in run.steps if step.status in (StepStatus.FAILED, StepStatus.CANCELLED)]
    why = "; ".join(
        f"step {step.id!r} {step.status.value}" + (f" (job {step.job_id})" if step.job_id else "")
        + (f": {step.message}" if step.message else "")
        for step in broken
    )
    return f"pipeline run {run.id} {run.status.value}" + (f": {why}" if why else "")


def stages(steps: Sequence[PipelineStep]) -> dict[str, int]:
    """Step id → its stage: 1 without upstream steps, else one after its latest upstream step.
    Steps of one stage may run at the same time. (The platform refused cycles already.)"""
    after = {step.id: step.after for step in steps}
    found: dict[str, int] = {}

    def stage(step_id: str) -> int:
        if step_id not in found:
            found[step_id] = 1 + max((stage(up) for up in after.get(step_id, ()) if up in after), default=0)
        return found[step_id]

    return {step.id: stage(step.id) for step in steps}


# -- following a run ----------------------------------------------------------------------


class LiveSteps:
    """The ``--wait`` display on ``stream``: with ``tty`` a compact step table redrawn in place,
    else one line per step whose status, job or children changed (none for steps still QUEUED)."""

    def __init__(self, stream: IO[str], tty: bool) -> None:
        self.stream = stream
        self.tty = tty
        self._seen: dict[str, tuple[Any, ...]] = {}
        self._drawn = 0

    def update(self, run: PipelineRun) -> None:
        if self.tty:
            self._redraw(run)
        else:
            self._changes(run)
        self.stream.flush()

    def _changes(self, run: PipelineRun) -> None:
        for step in run.steps:
            key = (step.status, step.job_id, _children_text(step))
            if self._seen.get(step.id, (StepStatus.QUEUED, None, _children_text(step))) != key:
                details = step_details(step)
                self.stream.write(f"{step.id}: {step.status.value}" + (f" (job {step.job_id})" if step.job_id else "")
                                  + (f": {details}" if details else "") + "\n")
            self._seen[step.id] = key

    def _redraw(self, run: PipelineRun) -> None:
        # A line as wide as the terminal would wrap, and more lines than it has would scroll:
        # either moves what the cursor-up of the next redraw lands on.
        size = shutil.get_terminal_size()
        width, height = size.columns - 1, max(size.lines - 1, 3)
        lines = [f"{run.name} {run.id}: {run.status.value}, {steps_done(run)} steps done"]
        lines += table_lines(("STEP", "STATUS", "JOB", "DETAILS"),
                             [(step.id, step.status.value, step.job_id or "-", step_details(step))
                              for step in run.steps])
        if len(lines) > height:
            lines[height - 1:] = [f"… {len(lines) - height + 1} more steps (`loopml pipelines show {run.id}`)"]
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}F\x1b[J")  # back to the first line drawn, clear below
        self.stream.write("".join(line[:width] + "\n" for line in lines))
        self._drawn = len(lines)


def _wait(ctx: click.Context, project: str, run: PipelineRun, timeout: float | None) -> PipelineRun:
    """Wait for ``run`` with the live step display on stderr (none when the :class:`Caller`
    asks for none: the magic's panel shows the steps).

    Ctrl-C stops waiting, not the run: it says so and exits 130 (:class:`Ended` with the run).
    """
    caller = caller_of(ctx)
    on_update = None
    if caller is None or caller.progress:
        on_update = LiveSteps(sys.stderr, sys.stderr.isatty()).update
        on_update(run)
    try:
        return client_from(ctx).wait_pipeline_run(project, run.id, timeout=timeout, on_update=on_update)
    except KeyboardInterrupt:
        click.echo(f"stopped waiting; pipeline run {run.id} keeps running "
                   f"(`loopml pipelines cancel {run.id} -P {project}` stops it)", err=True)
        raise Ended(130, run) from None


def follow_run(ctx: click.Context, project: str, run: PipelineRun, wait: bool, timeout: float | None, as_json: bool,
            started: str) -> PipelineRun | None:
    """Print a run just started, or follow it; with ``wait`` exit 0 only if it SUCCEEDED (else
    one ``error:`` line and :class:`Ended` with the run). Returns the run (``None`` with ``--json``)."""
    if not wait:
        if as_json:
            echo_json(run)
            return None
        click.echo(started)
        click.echo(f"follow it with `loopml pipelines show {run.id} -P {project}`")
        return run
    click.echo(started, err=True)
    run = _wait(ctx, project, run, timeout)
    if as_json:
        echo_json(run)
    else:
        click.echo(outcome(run))
    if run.status is not RunStatus.SUCCEEDED:
        click.echo(f"error: {failure(run)}", err=True)
        raise Ended(1, None if as_json else run)
    return None if as_json else run


WAIT = click.option("--wait", is_flag=True, help="Follow the steps until the run ends; exit 0 only if it SUCCEEDED.")
TIMEOUT = click.option("--timeout", "timeout", type=click.FloatRange(min=0, min_open=True), default=None, metavar="S",
                       help="With --wait: stop waiting after S seconds (exit 1; the run keeps running).")


def _check_timeout(wait: bool, timeout: float | None) -> None:
    if timeout is not None and not wait:
        raise click.UsageError("--timeout limits --wait: give --wait too")


# -- commands -----------------------------------------------------------------------------


@click.group("pipelines")
def pipelines_group() -> None:
    """Check, run, list, inspect, cancel and retry pipelines of notebook jobs."""


@pipelines_group.command("validate")
@click.argument("file", type=PIPELINE_FILE, metavar="FILE")
@project_option
@json_option
@click.pass_context
def validate_pipeline(ctx: click.Context, file: Path, project: str | None, as_json: bool) -> PipelineCheck | None:
    """Check pipeline FILE and the files it names, running nothing.

    Prints the steps in the order they would run (steps of one stage may run at the same time)
    and the properties of an Elyra file that have no meaning here; a bad pipeline exits 1 with
    one error line per problem, each naming the step and the field.
    """
    project = resolve_project(ctx, project)
    with _one_line_per_problem():
        check = client_from(ctx).validate_pipeline(project, file)
    if as_json:
        echo_json(check)
        return None
    click.echo(f"{file.name}: pipeline {check.name} is valid, {len(check.steps)} steps")
    echo_fields([("parameters", pairs(check.parameters, VALUE_CHARS) or None)])
    order = stages(check.steps)
    echo_table(("STAGE", "STEP", "KIND", "AFTER"),
               ((order[step.id], step.id, step.kind, ", ".join(step.after) or "-")
                for step in sorted(check.steps, key=lambda step: order[step.id])))
    for item in check.ignored:
        click.echo(f"ignored: {item}")
    return check


@pipelines_group.command("run")
@click.argument("file", type=PIPELINE_FILE, metavar="FILE")
@project_option
@params_option
@click.option("--no-cache", is_flag=True, help="Run every step, even those the cache has a result for.")
@WAIT
@TIMEOUT
@json_option
@click.pass_context
def run_pipeline(ctx: click.Context, file: Path, project: str | None, parameters: dict[str, str], no_cache: bool,
                 wait: bool, timeout: float | None, as_json: bool) -> PipelineRun | None:
    """Run pipeline FILE; -p overrides its parameters.

    The notebooks, scripts and dependencies its steps name are uploaded from FILE's folder,
    nothing else of it (never a file a symlink leads out of the folder to).
    """
    _check_timeout(wait, timeout)
    project = resolve_project(ctx, project)
    with _one_line_per_problem():
        run = client_from(ctx).run_pipeline(project, file, parameters=parameters, no_cache=no_cache)
    for item in run.ignored:
        click.echo(f"ignored: {item}", err=True)
    return follow_run(ctx, project, run, wait, timeout, as_json,
                   f"started pipeline run {run.id} ({run.name}) in project {project}: {run.status.value}")


@pipelines_group.command("list")
@project_option
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="How many runs, newest first.")
@json_option
@click.pass_context
def list_pipeline_runs(ctx: click.Context, project: str | None, limit: int, as_json: bool) -> Listing | None:
    """The project's pipeline runs, newest first."""
    project = resolve_project(ctx, project)
    runs = client_from(ctx).pipeline_runs(project, limit=limit)
    if as_json:
        echo_json(runs)
        return None
    echo_table(("ID", "NAME", "STATUS", "STEPS", "CREATED", "USER"),
               ((r.id, r.name, r.status.value, steps_done(r), fmt_time(r.created_at), r.user) for r in runs))
    return Listing(project, runs)


@pipelines_group.command("show")
@click.argument("run_id", metavar="RUN")
@project_option
@json_option
@click.pass_context
def show_pipeline_run(ctx: click.Context, run_id: str, project: str | None, as_json: bool) -> PipelineRun | None:
    """One pipeline run, its steps and their children.

    Each step with its outputs and files, and under a foreach/search step its children (grid
    points, trials) with their parameters and values.
    """
    project = resolve_project(ctx, project)
    run = client_from(ctx).pipeline_run(project, run_id)
    if as_json:
        echo_json(run)
        return None
    echo_fields([
        ("id", run.id),
        ("name", run.name),
        ("file", run.source_name),
        ("project", run.project),
        ("user", run.user),
        ("status", run.status.value),
        ("steps done", steps_done(run)),
        ("attempt", run.attempt),
        ("parameters", pairs(run.parameters, VALUE_CHARS) or None),
        ("cache", "off (--no-cache)" if run.no_cache else None),
        ("trigger", run.trigger.value),
        ("re-run of", run.parent_id),
        ("mlflow run", run.mlflow_run_id),
        ("ignored", ", ".join(run.ignored) or None),
        ("created", fmt_time(run.created_at)),
        ("updated", fmt_time(run.updated_at)),
        ("finished", fmt_time(run.finished_at)),
    ])
    click.echo()
    rows: list[tuple[Any, ...]] = []
    for step in run.steps:
        rows.append((step.id, step.kind, step.status.value, ", ".join(step.after) or "-", step.job_id or "-",
                     step_details(step)))
        picked = _picked(step)
        rows += [_child_row(step, child, child.index == picked) for child in step.children]
    echo_table(("STEP", "KIND", "STATUS", "AFTER", "JOB", "DETAILS"), rows)
    return run


def _child_row(step: PipelineStep, child: PipelineChild, picked: bool) -> tuple[Any, ...]:
    """A grid point's or trial's row under its step: its parameters, value, whether it was picked."""
    details = [pairs(child.parameters, VALUE_CHARS), f"value {child.value:.4g}" if child.value is not None else "",
               "picked" if picked else "", child.message or ""]
    return (f"  {step.id} #{child.index}", "child", child.status.value, "", child.job_id or "-",
            " · ".join(part for part in details if part))


@pipelines_group.command("cancel")
@click.argument("run_id", metavar="RUN")
@project_option
@json_option
@click.pass_context
def cancel_pipeline_run(ctx: click.Context, run_id: str, project: str | None, as_json: bool) -> PipelineRun | None:
    """Cancel a running pipeline run and its running jobs."""
    project = resolve_project(ctx, project)
    run = client_from(ctx).cancel_pipeline_run(project, run_id)
    if as_json:
        echo_json(run)
        return None
    click.echo(outcome(run))
    return run


@pipelines_group.command("retry")
@click.argument("run_id", metavar="RUN")
@project_option
@WAIT
@TIMEOUT
@json_option
@click.pass_context
def retry_pipeline_run(ctx: click.Context, run_id: str, project: str | None, wait: bool, timeout: float | None,
                       as_json: bool) -> PipelineRun | None:
    """Re-run a failed run from its failed steps.

    A failed or cancelled run re-runs its failed and cancelled steps and what follows them,
    keeping the steps that succeeded.
    """
    _check_timeout(wait, timeout)
    project = resolve_project(ctx, project)
    run = client_from(ctx).retry_pipeline_run(project, run_id)
    return follow_run(ctx, project, run, wait, timeout, as_json,
                   f"retrying pipeline run {run.id} (attempt {run.attempt}): {run.status.value}")


COMMANDS = (pipelines_group,)
