"""``loopml models …``: a project's registered models, their versions side by side, aliases.

Registered on the root group by :mod:`loopml.cli`. Every command is project-scoped (``-P``),
takes a model as ``NAME`` or ``<project>.NAME``, and prints the model with ``--json``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import click

from loopml.cli.common import Listing, fmt_time
from loopml.cli.util import (
    client_from,
    echo_fields,
    echo_json,
    echo_table,
    json_option,
    project_option,
    resolve_project,
)
from loopml.registry import CHALLENGER, CHAMPION, ContractView, Model, ModelVersion

MAX_COLUMNS = 6
"""Versions ``models show`` puts side by side; older ones are counted, ``--json`` has them all."""
MAX_CELL = 30
"""Longer params (MLflow allows 6000 characters) are cut so the columns stay readable."""
FIRST_ALIASES = (CHAMPION, CHALLENGER)


def aliases_text(aliases: dict[str, int]) -> str:
    """``champion=1 challenger=2 other=3``: champion and challenger first, the rest by name."""
    order = sorted(aliases, key=lambda a: (FIRST_ALIASES.index(a) if a in FIRST_ALIASES else len(FIRST_ALIASES), a))
    return " ".join(f"{alias}={aliases[alias]}" for alias in order)


def _cell(text: str | None) -> str | None:
    if text is None or len(text) <= MAX_CELL:
        return text
    return text[: MAX_CELL - 1] + "…"


def pipeline_of(version: ModelVersion) -> str | None:
    """``<pipeline run> (<step>)`` for a version a pipeline's step registered, else ``None``."""
    lineage = version.lineage
    if not lineage.pipeline_run_id:
        return None
    return f"{lineage.pipeline_run_id} ({lineage.pipeline_step})" if lineage.pipeline_step else lineage.pipeline_run_id


def version_rows(versions: Sequence[ModelVersion]) -> list[list[str | None]]:
    """Rows of the side-by-side table, one column per version: lineage first, then one row
    per metric and per param over all ``versions`` (blank where a version lacks it)."""
    rows: list[list[str | None]] = [
        ["aliases", *(" ".join(v.aliases) or None for v in versions)],
        ["created", *(fmt_time(v.created_at) for v in versions)],
        ["job", *(v.lineage.job_id for v in versions)],
        ["run", *((v.lineage.run_id or "")[:8] or None for v in versions)],
        ["user", *(v.lineage.user for v in versions)],
        ["notebook", *(_cell(v.lineage.notebook) for v in versions)],
        ["endpoints", *(_cell(", ".join(v.lineage.endpoints)) or None for v in versions)],
        ["status", *(v.status for v in versions)],
    ]
    if any(v.lineage.pipeline_run_id for v in versions):  # after job: the run and step that made it
        rows.insert(3, ["pipeline", *(pipeline_of(v) for v in versions)])
    for metric in _union(v.metrics for v in versions):
        rows.append([f"metric: {metric}", *(_number(v.metrics.get(metric)) for v in versions)])
    for param in _union(v.params for v in versions):
        rows.append([f"param: {param}", *(_cell(v.params.get(param)) for v in versions)])
    return rows


def _union(keys: Iterable[Iterable[str]]) -> list[str]:
    return sorted(set().union(*keys))


def _number(value: float | None) -> str | None:
    return None if value is None else f"{value:g}"


def _moved(model: Model, alias: str, version: int | None) -> int | None:
    """The version ``alias`` was on before the move to ``version`` (None: no alias), from the
    history the server records; ``None`` when the history does not say."""
    for change in reversed(model.alias_history):
        if change.alias == alias and change.version == version:
            return change.previous
    return None


@click.group("models")
def models_group() -> None:
    """Registered models: compare versions, promote, set aliases."""


@models_group.command("list")
@project_option
@json_option
@click.pass_context
def list_models(ctx: click.Context, project: str | None, as_json: bool) -> Listing | None:
    """The project's registered models with their aliases."""
    project = resolve_project(ctx, project)
    models = client_from(ctx).models(project)
    if as_json:
        echo_json(models)
        return None
    echo_table(
        ("NAME", "LATEST", "ALIASES", "UPDATED"),
        ((m.name, m.latest_version, aliases_text(m.aliases), fmt_time(m.updated_at)) for m in models),
    )
    return Listing(project, models)


@models_group.command("show")
@click.argument("name")
@project_option
@json_option
@click.pass_context
def show_model(ctx: click.Context, name: str, project: str | None, as_json: bool) -> Model | None:
    """Model NAME's versions side by side, newest first: lineage, metrics and params."""
    project = resolve_project(ctx, project)
    model = client_from(ctx).model(project, name)
    if as_json:
        echo_json(model)
        return None
    echo_fields([
        ("model", model.registered_name),
        ("aliases", aliases_text(model.aliases) or "-"),
        ("updated", fmt_time(model.updated_at)),
    ])
    if not model.versions:
        click.echo("no versions")
        return model
    shown = model.versions[:MAX_COLUMNS]
    click.echo()
    echo_table(("VERSION", *(str(v.version) for v in shown)), version_rows(shown))
    hidden = len(model.versions) - len(shown)
    if hidden:
        click.echo(f"({hidden} older version{'s' if hidden > 1 else ''} not shown; --json prints all)")
    return model


def _echo_alias_change(model: Model, alias: str, version: int, as_json: bool) -> Model | None:
    if as_json:
        echo_json(model)
        return None
    previous = _moved(model, alias, version)
    if previous == version:
        click.echo(f"version {version} of {model.registered_name} is still {alias}")
    else:
        click.echo(f"version {version} of {model.registered_name} is now {alias} (was {previous or 'none'})")
    return model


@models_group.command("promote")
@click.argument("name")
@click.argument("version", type=click.IntRange(min=1))
@project_option
@json_option
@click.pass_context
def promote(ctx: click.Context, name: str, version: int, project: str | None, as_json: bool) -> Model | None:
    """Make VERSION of model NAME the champion (it stops being challenger)."""
    project = resolve_project(ctx, project)
    return _echo_alias_change(client_from(ctx).promote(project, name, version), CHAMPION, version, as_json)


@models_group.command("alias")
@click.argument("name")
@click.argument("alias")
@click.argument("version", type=click.IntRange(min=1))
@project_option
@json_option
@click.pass_context
def set_alias(ctx: click.Context, name: str, alias: str, version: int, project: str | None,
              as_json: bool) -> Model | None:
    """Point ALIAS of model NAME at VERSION (lowercase; 'latest' and 'v<n>' are MLflow's)."""
    project = resolve_project(ctx, project)
    return _echo_alias_change(client_from(ctx).set_alias(project, name, alias, version), alias, version, as_json)


@models_group.command("unalias")
@click.argument("name")
@click.argument("alias")
@project_option
@json_option
@click.pass_context
def delete_alias(ctx: click.Context, name: str, alias: str, project: str | None, as_json: bool) -> Model | None:
    """Remove ALIAS from model NAME."""
    project = resolve_project(ctx, project)
    model = client_from(ctx).delete_alias(project, name, alias)
    if as_json:
        echo_json(model)
        return None
    previous = _moved(model, alias, None)
    was = f" (was on version {previous})" if previous else ""
    click.echo(f"removed alias {alias} from {model.registered_name}{was}")
    return model


def _version_ref(ref: str) -> tuple[str, int]:
    name, slash, version = ref.rpartition("/")
    if not slash or not name or not version.isdigit() or int(version) < 1:
        raise click.BadParameter(f"{ref!r}: write NAME/VERSION, such as wine/3", param_hint="NAME/VERSION")
    return name, int(version)


def contract_rows(view: ContractView) -> list[tuple[str, ...]]:
    """One row per feature of the effective contract; an overridden rule is marked ``*``."""
    rows = []
    for feature, rule in (view.contract.features.items() if view.contract else ()):
        changed = view.overrides.get(feature, {})

        def cell(text: str, *rules: str, changed=changed) -> str:
            return text + ("*" if any(r in changed for r in rules) else "")

        categories = (",".join(rule.categories) if rule.categories is not None
                      else "any" if rule.type == "string" else "-")
        rows.append((feature, rule.type, "yes" if rule.required else "no",
                     cell(f"{rule.max_missing_share:.2%}", "missing"),
                     cell("-" if rule.min is None else f"{rule.min:.6g}", "min"),
                     cell("-" if rule.max is None else f"{rule.max:.6g}", "max"),
                     cell(_cell(categories) or "", "categories"), cell("on" if rule.check else "off", "check")))
    return rows


@models_group.command("contract")
@click.argument("ref", metavar="NAME/VERSION")
@click.option("--set", "changes", multiple=True, metavar="FEATURE.RULE=VALUE",
              help="Override a rule: min, max (a number or none), categories (a,b,c or none), missing (a share "
                   "0-1), check (on/off); the value logged drops an override. Repeat for more.")
@project_option
@json_option
@click.pass_context
def contract(ctx: click.Context, ref: str, changes: tuple[str, ...], project: str | None,
             as_json: bool) -> ContractView | None:
    """The data contract of model NAME's VERSION, the overrides applied (marked *); --set changes them,
    and the endpoints serving the version check against the result at once."""
    project = resolve_project(ctx, project)
    name, version = _version_ref(ref)
    view = client_from(ctx).contract(project, name, version, changes=changes)
    if as_json:
        echo_json(view)
        return None
    if view.contract is None:
        click.echo(f"version {version} of {name} has no data contract")
        return view
    echo_table(("FEATURE", "TYPE", "REQUIRED", "MISSING", "MIN", "MAX", "CATEGORIES", "CHECK"), contract_rows(view))
    if view.overrides:
        click.echo(f"* overridden (last by {view.updated_by}, {fmt_time(view.updated_at)})")
    if changes:
        click.echo(f"endpoints now checking it: {', '.join(view.endpoints) or 'none'}")
    return view


COMMANDS = (models_group,)
