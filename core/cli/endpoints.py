"""``loopml deploy`` and ``loopml endpoints …``: serve a model version, list, show, update, delete endpoints.

Registered on the root group by :mod:`loopml.cli`. Every command is project-scoped (``-P``)
and prints the server's answer with ``--json``.
"""

from __future__ import annotations

import click

from loopml.cli.common import Listing, fmt_time
from loopml.cli.util import (
    client_from,
    custom_resources,
    echo_fields,
    echo_json,
    echo_table,
    json_option,
    project_option,
    resolve_project,
)
from loopml.serving.models import MAX_REPLICAS, Deployed, Endpoint


def routes(endpoint: Endpoint) -> tuple[str, str]:
    """The two request routes of ``endpoint``: MLflow's ``/invocations`` and the v2 infer route."""
    return f"POST {endpoint.url}/invocations", f"POST {endpoint.url}/v2/models/{endpoint.name}/infer"


def scaling_text(endpoint: Endpoint) -> str:
    """``2`` for fixed replicas, ``1:4 (auto)`` when autoscaling."""
    if endpoint.autoscale is None:
        return str(endpoint.replicas)
    return f"{endpoint.autoscale.min}:{endpoint.autoscale.max} (auto)"


def version_text(endpoint: Endpoint) -> str:
    """``demo.iris v2 (champion)``: the served version, the alias it was resolved from, and a canary."""
    alias = f" ({endpoint.alias})" if endpoint.alias else ""
    canary = (f" + canary v{endpoint.canary_version} at {endpoint.canary_percent:g}%"
              if endpoint.canary_version is not None else "")
    return f"{endpoint.model} v{endpoint.version}{alias}{canary}"


def _echo_deployed(deployed: Deployed) -> None:
    endpoint = deployed.endpoint
    invocations, infer = routes(endpoint)
    echo_fields([
        ("endpoint", f"{endpoint.name}  ({endpoint.status})"),
        ("url", endpoint.url),
        ("version", version_text(endpoint)),
        ("access", "public (no key)" if endpoint.public else None),
        ("invocations", invocations),
        ("v2 infer", infer),
    ])
    if deployed.key is None:
        return
    # the server keeps only a hash: this answer is the one place the key can be read
    click.echo()
    click.echo(f"key: {deployed.key}")
    click.echo("warning: the key is shown only once; store it now (deleting and re-deploying makes a new one)")
    click.echo("try:")
    click.echo(f'  curl -H "Authorization: Bearer {deployed.key}" -H "Content-Type: application/json" '
               f"-d '{{\"inputs\": [[...]]}}' {endpoint.url}/invocations")


on_violation_option = click.option(
    "--on-violation", type=click.Choice(["pass", "refuse", "header"]), default=None,
    help="What a request that breaks the version's data contract gets: pass (scored, counted; the default), "
         "refuse (422 naming the feature and rule) or header (scored, with x-loopml-violations); an existing "
         "endpoint keeps its own when left out.")
probabilities_option = click.option(
    "--capture-probabilities/--no-capture-probabilities", default=None,
    help="Capture a classifier's class probabilities with each request (estimated accuracy needs them; on by "
         "default); an existing endpoint keeps its own when left out.")


@click.command("deploy")
@click.argument("model")
@click.option("--endpoint", "endpoint_name", required=True, metavar="NAME",
              help="Endpoint name (lowercase letters, digits, '-', '_'); an existing one switches version.")
@project_option
@click.option("--public", is_flag=True, help="Serve without a key (only when creating the endpoint).")
@click.option("--replicas", type=click.IntRange(1, MAX_REPLICAS), default=None,
              help="Fixed number of replicas (default 1; an existing endpoint keeps its scaling).")
@click.option("--autoscale", default=None, metavar="MIN:MAX", help="Scale between MIN and MAX replicas with load.")
@click.option("--canary", type=click.FloatRange(0, 100, min_open=True, max_open=True), default=None, metavar="PCT",
              help="Serve MODEL to PCT% of requests beside the live version (`endpoints promote` ends it).")
@click.option("--resource", "custom", multiple=True, callback=custom_resources, metavar="NAME=AMOUNT",
              help="Custom Ray resource each replica reserves, e.g. node2=0.1 to place replicas on the node "
                   "that offers it; repeat for more (default: an existing endpoint keeps its own).")
@on_violation_option
@probabilities_option
@json_option
@click.pass_context
def deploy(ctx: click.Context, model: str, endpoint_name: str, project: str | None, public: bool,
           replicas: int | None, autoscale: str | None, canary: float | None, custom: dict[str, float],
           on_violation: str | None, capture_probabilities: bool | None, as_json: bool) -> Deployed | None:
    """Serve MODEL (NAME@ALIAS, NAME/VERSION, or NAME for NAME@champion) at an endpoint.

    Prints the URL, its request routes and, when the endpoint is created with a key, the key:
    it is shown only this once.
    """
    project = resolve_project(ctx, project)
    deployed = client_from(ctx).deploy(project, model, endpoint_name, public=public, replicas=replicas,
                                       canary=canary, autoscale=autoscale,
                                       resources={"custom": custom} if custom else None, on_violation=on_violation,
                                       capture_probabilities=capture_probabilities)
    if as_json:
        echo_json(deployed)
        return None
    _echo_deployed(deployed)
    return deployed


@click.group("endpoints")
def endpoints_group() -> None:
    """Model endpoints: list, show with history, update, promote, roll back, delete."""


@endpoints_group.command("list")
@project_option
@json_option
@click.pass_context
def list_endpoints(ctx: click.Context, project: str | None, as_json: bool) -> Listing | None:
    """The project's endpoints with the version each serves."""
    project = resolve_project(ctx, project)
    endpoints = client_from(ctx).endpoints(project)
    if as_json:
        echo_json(endpoints)
        return None
    echo_table(
        ("NAME", "MODEL", "STATUS", "ACCESS", "REPLICAS", "URL"),
        ((e.name, version_text(e), e.status, "public" if e.public else "key", scaling_text(e), e.url)
         for e in endpoints),
    )
    return Listing(project, endpoints)


@endpoints_group.command("show")
@click.argument("name")
@project_option
@json_option
@click.pass_context
def show_endpoint(ctx: click.Context, name: str, project: str | None, as_json: bool) -> Endpoint | None:
    """Endpoint NAME: version, routes, status and its history."""
    project = resolve_project(ctx, project)
    endpoint = client_from(ctx).endpoint(project, name)
    if as_json:
        echo_json(endpoint)
        return None
    invocations, infer = routes(endpoint)
    echo_fields([
        ("endpoint", endpoint.name),
        ("status", endpoint.status),
        ("version", version_text(endpoint)),
        ("url", endpoint.url),
        ("invocations", invocations),
        ("v2 infer", infer),
        ("access", "public" if endpoint.public else "key"),
        ("replicas", scaling_text(endpoint)),
        ("resources", endpoint.resources.text() or None),
        ("on violation", endpoint.on_violation),
        ("capture probabilities", "on" if endpoint.capture_probabilities else "off"),
        ("created", fmt_time(endpoint.created_at)),
        ("updated", fmt_time(endpoint.updated_at)),
    ])
    if endpoint.history:
        click.echo()
        click.echo("history:")
        for entry in endpoint.history:
            click.echo(f"  {fmt_time(entry.at)}  {entry.user}  {entry.action}")
    return endpoint


@endpoints_group.command("update")
@click.argument("name")
@project_option
@click.option("--replicas", type=click.IntRange(1, MAX_REPLICAS), default=None, help="Fixed number of replicas.")
@click.option("--autoscale", default=None, metavar="MIN:MAX", help="Scale between MIN and MAX replicas with load.")
@click.option("--canary", "canary_percent", type=click.FloatRange(0, 100, min_open=True, max_open=True),
              default=None, metavar="PCT", help="New traffic share of the running canary.")
@click.option("--rotate-key", is_flag=True, help="Issue a new key; the old one stops working at once.")
@on_violation_option
@probabilities_option
@json_option
@click.pass_context
def update_endpoint(ctx: click.Context, name: str, project: str | None, replicas: int | None, autoscale: str | None,
                    canary_percent: float | None, rotate_key: bool, on_violation: str | None,
                    capture_probabilities: bool | None, as_json: bool) -> Deployed | None:
    """Change endpoint NAME's scaling, canary share, key, contract mode or probability capture in place."""
    project = resolve_project(ctx, project)
    deployed = client_from(ctx).update_endpoint(project, name, replicas=replicas, autoscale=autoscale,
                                                canary_percent=canary_percent, rotate_key=rotate_key,
                                                on_violation=on_violation,
                                                capture_probabilities=capture_probabilities)
    if as_json:
        echo_json(deployed)
        return None
    endpoint = deployed.endpoint
    click.echo(f"endpoint {name}: {version_text(endpoint)}, replicas {scaling_text(endpoint)}")
    if deployed.key is not None:
        click.echo(f"key: {deployed.key}")
        click.echo("warning: the key is shown only once; the previous key no longer works")
    return deployed


@endpoints_group.command("promote")
@click.argument("name")
@project_option
@json_option
@click.pass_context
def promote_endpoint(ctx: click.Context, name: str, project: str | None, as_json: bool) -> Endpoint | None:
    """End endpoint NAME's canary: its version takes all traffic."""
    project = resolve_project(ctx, project)
    endpoint = client_from(ctx).promote_endpoint(project, name)
    if as_json:
        echo_json(endpoint)
        return None
    click.echo(f"endpoint {name} now serves {version_text(endpoint)}")
    return endpoint


@endpoints_group.command("rollback")
@click.argument("name")
@project_option
@json_option
@click.pass_context
def rollback_endpoint(ctx: click.Context, name: str, project: str | None, as_json: bool) -> Endpoint | None:
    """Drop endpoint NAME's canary, or go back to the version it served before."""
    project = resolve_project(ctx, project)
    endpoint = client_from(ctx).rollback_endpoint(project, name)
    if as_json:
        echo_json(endpoint)
        return None
    click.echo(f"endpoint {name} now serves {version_text(endpoint)}")
    return endpoint


@endpoints_group.command("delete")
@click.argument("name")
@project_option
@click.pass_context
def delete_endpoint(ctx: click.Context, name: str, project: str | None) -> None:
    """Stop serving endpoint NAME and forget it and its key."""
    project = resolve_project(ctx, project)
    client_from(ctx).delete_endpoint(project, name)
    click.echo(f"deleted endpoint {name}")


COMMANDS = (deploy, endpoints_group)
