"""``loopml submit``, ``loopml jobs …`` and ``loopml schedules …``: notebook jobs from the shell.

Registered on the root group by :mod:`loopml.cli`. Every command is project-scoped
(``-P``) and every command that prints data takes ``--json``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from loopml.cli.common import Ended, Listing, fmt_time
from loopml.cli.util import (
    caller_of,
    client_from,
    echo_fields,
    echo_json,
    echo_table,
    fmt_progress,
    job_models_text,
    job_options,
    json_option,
    outcome,
    params_option,
    project_option,
    resolve_project,
    resources_from,
    resources_text,
    wait_with_progress,
)
from loopml.executor.models import Job, JobStatus

NOTEBOOK = click.Path(exists=True, dir_okay=False, path_type=Path)


def _finish(ctx: click.Context, project: str, job: Job, wait: bool, as_json: bool, submitted: str) -> Job | None:
    """Print a just-created job, or wait for it; with ``wait`` exit 0 only if it SUCCEEDED
    (:class:`Ended` with the job otherwise). Returns the job (``None`` with ``--json``)."""
    if wait:
        click.echo(submitted, err=True)
        job = wait_with_progress(ctx, project, job)
        if as_json:
            echo_json(job)
        else:
            click.echo(outcome(job))
        if job.status is not JobStatus.SUCCEEDED:
            raise Ended(1, None if as_json else job)
        return None if as_json else job
    if as_json:
        echo_json(job)
        return None
    click.echo(submitted)
    click.echo(f"follow it with `loopml jobs show {job.id} -P {project}`")
    return job


def _notebook_to_submit(ctx: click.Context, notebook: Path | None,
                        parameters: dict[str, str]) -> tuple[Path | dict[str, Any], str | None] | None:
    """``(notebook, default job name)`` to submit: NOTEBOOK, or what the :class:`Caller` supplies
    (the magic: the cell, the kernel's notebook; ``None``: nothing to submit). From the shell a
    missing NOTEBOOK is a usage error."""
    caller = caller_of(ctx)
    if caller is not None and caller.notebook is not None:
        return caller.notebook(notebook, parameters)
    if notebook is None:
        raise click.MissingParameter(ctx=ctx, param=next(p for p in ctx.command.params if p.name == "notebook"))
    return notebook, None


@click.command()
@click.argument("notebook", type=NOTEBOOK, required=False, metavar="NOTEBOOK")
@project_option
@params_option
@job_options
@click.option("--name", default=None, help="Job name (default: the notebook's file name).")
@click.option("--wait", is_flag=True, help="Show progress until the job ends; exit 0 only if it SUCCEEDED.")
@json_option
@click.pass_context
def submit(
    ctx: click.Context,
    notebook: Path | None,
    project: str | None,
    parameters: dict[str, str],
    cpus: float | None,
    gpus: float | None,
    memory_mb: int | None,
    custom: dict[str, float],
    timeout_s: float | None,
    max_retries: int,
    name: str | None,
    wait: bool,
    as_json: bool,
) -> Job | None:
    """Run NOTEBOOK as a job on the cluster."""
    chosen = _notebook_to_submit(ctx, notebook, parameters)
    if chosen is None:
        return None
    source, default_name = chosen
    project = resolve_project(ctx, project)
    job = client_from(ctx).submit(
        project,
        source,
        parameters=parameters,
        resources=resources_from(cpus, gpus, memory_mb, custom),
        timeout_s=timeout_s,
        max_retries=max_retries,
        name=name or default_name,
    )
    return _finish(ctx, project, job, wait, as_json,
                   f"submitted job {job.id} ({job.name}) to project {project}: {job.status.value}")


@click.group("jobs")
def jobs_group() -> None:
    """List, inspect, cancel and requeue notebook jobs."""


@jobs_group.command("list")
@project_option
@click.option(
    "--status",
    type=click.Choice([s.value for s in JobStatus], case_sensitive=False),
    default=None,
    help="Only jobs in this status.",
)
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="How many jobs, newest first.")
@json_option
@click.pass_context
def list_jobs(ctx: click.Context, project: str | None, status: str | None, limit: int,
              as_json: bool) -> Listing | None:
    """The project's jobs, newest first."""
    project = resolve_project(ctx, project)
    jobs = client_from(ctx).jobs(project, status=status, limit=limit)
    if as_json:
        echo_json(jobs)
        return None
    echo_table(
        ("ID", "NAME", "STATUS", "PROGRESS", "ATTEMPT", "TRIGGER", "CREATED"),
        (
            (j.id, j.name, j.status.value, fmt_progress(j), j.attempt, j.trigger.value, fmt_time(j.created_at))
            for j in jobs
        ),
    )
    return Listing(project, jobs, status.upper() if status else None)


@jobs_group.command("show")
@click.argument("job_id", metavar="ID")
@project_option
@json_option
@click.pass_context
def show_job(ctx: click.Context, job_id: str, project: str | None, as_json: bool) -> Job | None:
    """Everything about one job."""
    project = resolve_project(ctx, project)
    job = client_from(ctx).job(project, job_id)
    if as_json:
        echo_json(job)
        return None
    error = job.error
    echo_fields(
        [
            ("id", job.id),
            ("name", job.name),
            ("project", job.project),
            ("user", job.user),
            ("status", job.status.value),
            ("message", job.message),
            ("progress", f"{fmt_progress(job)} cells"),
            ("attempt", f"{job.attempt} (retries allowed: {job.max_retries})"),
            ("parameters", json.dumps(job.parameters) if job.parameters else None),
            ("resources", resources_text(job.resources)),
            ("timeout", f"{job.timeout_s:g} s" if job.timeout_s else None),
            ("trigger", job.trigger.value),
            ("parent job", job.parent_id),
            ("schedule", job.schedule_id),
            ("mlflow run", job.mlflow_run_id),
            ("models", job_models_text(job)),
            ("outputs", json.dumps(job.outputs) if job.outputs else None),
            ("input files", ", ".join(job.input_files) or None),
            ("output files", ", ".join(job.output_files) or None),
            ("created", fmt_time(job.created_at)),
            ("started", fmt_time(job.started_at)),
            ("finished", fmt_time(job.finished_at)),
            ("error", error.reason if error else None),
            ("error message", error.message if error else None),
            ("failed cell", error.cell_index if error else None),
            ("exception", f"{error.ename}: {error.evalue}" if error and error.ename else None),
        ]
    )
    return job


@jobs_group.command("logs")
@click.argument("job_id", metavar="ID")
@project_option
@click.pass_context
def job_logs(ctx: click.Context, job_id: str, project: str | None) -> None:
    """The job's log so far."""
    project = resolve_project(ctx, project)
    text = client_from(ctx).logs(project, job_id)
    click.echo(text, nl=not text.endswith("\n"))


@jobs_group.command("output")
@click.argument("job_id", metavar="ID")
@project_option
@click.option(
    "-o", "--output", "path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Where to write the executed notebook (default: ID.ipynb).",
)
@click.pass_context
def job_output(ctx: click.Context, job_id: str, project: str | None, path: Path | None) -> None:
    """Write the executed notebook (partial while the job runs) and print its path."""
    project = resolve_project(ctx, project)
    notebook = client_from(ctx).output(project, job_id)
    path = path or Path(f"{job_id}.ipynb")
    import nbformat

    path.write_text(nbformat.writes(notebook), encoding="utf-8")
    click.echo(str(path))


@jobs_group.command("cancel")
@click.argument("job_id", metavar="ID")
@project_option
@json_option
@click.pass_context
def cancel_job(ctx: click.Context, job_id: str, project: str | None, as_json: bool) -> Job | None:
    """Cancel a queued or running job."""
    project = resolve_project(ctx, project)
    job = client_from(ctx).cancel(project, job_id)
    if as_json:
        echo_json(job)
        return None
    click.echo(outcome(job))
    return job


@jobs_group.command("requeue")
@click.argument("job_id", metavar="ID")
@project_option
@params_option
@click.option("--wait", is_flag=True, help="Show progress until the new job ends; exit 0 only if it SUCCEEDED.")
@json_option
@click.pass_context
def requeue_job(
    ctx: click.Context, job_id: str, project: str | None, parameters: dict[str, str], wait: bool, as_json: bool
) -> Job | None:
    """Run a job again as a new job; -p values override the original parameters."""
    project = resolve_project(ctx, project)
    job = client_from(ctx).requeue(project, job_id, parameters=parameters)
    return _finish(ctx, project, job, wait, as_json, f"requeued job {job_id} as job {job.id}: {job.status.value}")


@click.group("schedules")
def schedules_group() -> None:
    """Run notebooks or pipelines on a cron schedule."""


@schedules_group.command("list")
@project_option
@json_option
@click.pass_context
def list_schedules(ctx: click.Context, project: str | None, as_json: bool) -> None:
    """The project's schedules."""
    project = resolve_project(ctx, project)
    schedules = client_from(ctx).schedules(project)
    if as_json:
        echo_json(schedules)
        return
    echo_table(
        ("ID", "NAME", "CRON", "NEXT RUN", "LAST RUN", "LAST JOB", "USER", "STATE"),
        (
            (s.id, s.name, s.cron, fmt_time(s.next_run_at), fmt_time(s.last_run_at),
             (f"run {s.last_pipeline_run_id}" if s.last_pipeline_run_id else None) if s.pipeline else s.last_job_id,
             s.user, "paused" if s.paused_reason else "active")
            for s in schedules
        ),
    )
    for s in schedules:
        if s.paused_reason:
            click.echo(f"schedule {s.id} is paused: {s.paused_reason}")


@schedules_group.command("create")
@click.argument("cron")
@click.argument("notebook", type=NOTEBOOK)
@project_option
@params_option
@job_options
@click.option("--name", default=None, help="Name of the schedule and of its jobs (default: the notebook's file name).")
@click.option("--no-cache", is_flag=True, help="A pipeline's runs run every step, even those the cache has.")
@json_option
@click.pass_context
def create_schedule(
    ctx: click.Context,
    cron: str,
    notebook: Path,
    project: str | None,
    parameters: dict[str, str],
    name: str | None,
    no_cache: bool,
    as_json: bool,
    **job: Any,
) -> None:
    """Submit NOTEBOOK at every tick of CRON (5 fields, e.g. "0 3 * * *"; quote it).

    NOTEBOOK may be a pipeline file (*.pipeline.yaml, or Elyra's .pipeline): each tick runs the
    pipeline, with the files its steps name uploaded now; -p overrides its parameters.
    """
    project = resolve_project(ctx, project)
    if notebook.name.endswith((".yaml", ".yml", ".pipeline")):
        schedule = client_from(ctx).create_pipeline_schedule(project, cron, notebook, name=name,
                                                             parameters=parameters, no_cache=no_cache)
    else:
        schedule = client_from(ctx).create_schedule(
            project,
            cron,
            notebook,
            name=name,
            parameters=parameters,
            resources=resources_from(job["cpus"], job["gpus"], job["memory_mb"], job["custom"]),
            timeout_s=job["timeout_s"],
            max_retries=job["max_retries"],
        )
    if as_json:
        echo_json(schedule)
    else:
        click.echo(f"created schedule {schedule.id} ({schedule.name}) in project {project}: "
                   f"next run {fmt_time(schedule.next_run_at)}")


@schedules_group.command("delete")
@click.argument("schedule_id", metavar="ID")
@project_option
@click.pass_context
def delete_schedule(ctx: click.Context, schedule_id: str, project: str | None) -> None:
    """Delete a schedule; the jobs it started are kept."""
    project = resolve_project(ctx, project)
    client_from(ctx).delete_schedule(project, schedule_id)
    click.echo(f"deleted schedule {schedule_id}")


COMMANDS = (submit, jobs_group, schedules_group)
