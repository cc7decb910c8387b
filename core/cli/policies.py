"""``loopml requeue``, ``loopml policy`` and ``loopml alerts``: the feedback loop from the shell.

Registered on the root group by :mod:`loopml.cli`. ENDPOINT is ``NAME`` (with ``-P``) or
``PROJECT/NAME``.
"""

from __future__ import annotations

from typing import Any

import click

from loopml.cli.common import Ended, Listing, fmt_time
from loopml.cli.monitor import endpoint_ref
from loopml.cli.pipelines import follow_run
from loopml.cli.util import (
    client_from,
    echo_fields,
    echo_json,
    echo_table,
    json_option,
    params_option,
    project_option,
    resolve_project,
    wait_with_progress,
)
from loopml.errors import NotFound
from loopml.executor import PipelineRun
from loopml.executor.models import Job, JobStatus
from loopml.monitor.models import Policy


@click.command("requeue")
@click.argument("endpoint")
@project_option
@params_option
@click.option("--alert", "alert_id", default=None, metavar="ID", help="The alert this requeue answers.")
@click.option("--wait", is_flag=True, help="Show the training job's progress until it ends.")
@json_option
@click.pass_context
def requeue(ctx: click.Context, endpoint: str, project: str | None, parameters: dict[str, str],
            alert_id: str | None, wait: bool, as_json: bool) -> Job | PipelineRun | None:
    """Run the training job of the version ENDPOINT serves again (-p overrides parameters).

    A version a pipeline registered is retrained by re-running that pipeline (same files and
    parameters, no cache). The version it registers becomes the challenger, scored against the
    champion on the endpoint's labelled requests (see `loopml alerts`).
    """
    project, name = endpoint_ref(ctx, endpoint, project)
    requeued = client_from(ctx).requeue_endpoint(project, name, parameters=parameters, alert_id=alert_id)
    if as_json and not wait:
        echo_json(requeued)
        return None
    if requeued.pipeline_run is not None:
        run = requeued.pipeline_run
        return follow_run(ctx, project, run, wait, None, as_json, f"requeued the training pipeline of {name}: "
                          f"pipeline run {run.id} re-runs {run.parent_id} (alert {requeued.alert.id})")
    click.echo(f"requeued the training job of {name} as job {requeued.job.id} (alert {requeued.alert.id})")
    if not wait:
        return requeued.job
    job = wait_with_progress(ctx, project, requeued.job)
    click.echo(f"job {job.id}: {job.status.value}")
    if job.status is not JobStatus.SUCCEEDED:
        raise Ended(1, job)
    return job


@click.command("policy")
@click.argument("endpoint")
@project_option
@click.option("--window", default=None, help="Window the thresholds are evaluated over, e.g. 15m.")
@click.option("--min-samples", type=click.IntRange(1), default=None, help="Requests needed before anything fires.")
@click.option("--drift/--no-drift", default=None, help="Fire when any feature drifts.")
@click.option("--accuracy-below", type=click.FloatRange(0, 1), default=None, help="Fire below this accuracy.")
@click.option("--error-rate-above", type=click.FloatRange(0, 1), default=None, help="Fire above this 5xx share.")
@click.option("--estimated-accuracy-below", type=click.FloatRange(0, 1), default=None,
              help="Fire below this estimated accuracy (no labels needed).")
@click.option("--estimated-mae-above", type=click.FloatRange(0), default=None,
              help="Fire above this estimated MAE (no labels needed).")
@click.option("--violations-above", type=click.FloatRange(0, 1), default=None, metavar="SHARE",
              help="Fire when more than this share of requests break the data contract.")
@click.option("--drift-needs-estimate/--no-drift-needs-estimate", default=None,
              help="Fire on drift only when estimated performance has dropped too.")
@click.option("--estimate-drop", type=click.FloatRange(0, 1), default=None,
              help="The drop --drift-needs-estimate waits for (accuracy points, or relative MAE).")
@click.option("--promote-on-estimate/--no-promote-on-estimate", default=None,
              help="A challenger must also beat the champion's estimated performance on recent traffic.")
@click.option("--action", type=click.Choice(["alert", "requeue"]), default=None, help="What a firing does.")
@click.option("--cooldown", "cooldown_s", type=click.FloatRange(0), default=None, metavar="SECONDS",
              help="At most one requeue per endpoint in this time.")
@click.option("--auto-promote/--no-auto-promote", default=None, help="Promote a challenger that wins.")
@click.option("--margin", "promote_margin", type=click.FloatRange(0, 1), default=None, help="What winning takes.")
@params_option
@json_option
@click.pass_context
def policy(ctx: click.Context, endpoint: str, project: str | None, parameters: dict[str, str], as_json: bool,
           **changes: Any) -> Policy | None:
    """Show ENDPOINT's monitoring policy, or change the options given (others are kept)."""
    project, name = endpoint_ref(ctx, endpoint, project)
    client = client_from(ctx)
    changes = {key: value for key, value in changes.items() if value is not None}
    if parameters:
        changes["parameters"] = parameters
    if changes:
        try:
            current = client.policy(project, name).spec.model_dump()
        except NotFound:
            current = {}
        shown = client.set_policy(project, name, {**current, **changes})
    else:
        shown = client.policy(project, name)
    if as_json:
        echo_json(shown)
        return None
    echo_fields([("endpoint", f"{project}/{name}"), *shown.spec.model_dump().items(),
                 ("last requeue", fmt_time(shown.last_requeue_at)), ("updated by", shown.updated_by),
                 ("updated", fmt_time(shown.updated_at))])
    return shown


@click.command("alerts")
@project_option
@click.option("--endpoint", default=None, help="Only this endpoint's alerts.")
@click.option("--open", "only_open", is_flag=True, help="Only open alerts.")
@json_option
@click.pass_context
def alerts(ctx: click.Context, project: str | None, endpoint: str | None, only_open: bool,
           as_json: bool) -> Listing | None:
    """Alerts of the project's endpoints, newest first, with the job and challenger each led to."""
    project = resolve_project(ctx, project)
    found = client_from(ctx).alerts(project, endpoint=endpoint, status="open" if only_open else None)
    if as_json:
        echo_json(found)
        return None
    echo_table(("ID", "ENDPOINT", "KIND", "VALUE", "STATUS", "ACTION", "JOB", "CHALLENGER", "RESULT", "OPENED"),
               ((a.id[:8], a.endpoint, a.kind, f"{a.value:.3g}", a.status, a.action, a.job_id,
                 a.produced_version, (a.evaluation or {}).get("winner") or (a.evaluation or {}).get("result"),
                 fmt_time(a.opened_at)) for a in found))
    return Listing(project, found)


COMMANDS = (requeue, policy, alerts)
