"""The ``loopml`` command.

One root group, :data:`main` (the console-script entry point). Subcommands register on it
with ``@main.command()`` / ``main.add_command(...)``; the job commands live in
:mod:`loopml.cli.jobs`, the model commands in :mod:`loopml.cli.models`, ``deploy`` and the
endpoint commands in :mod:`loopml.cli.endpoints`, ``monitor`` and ``feedback`` in
:mod:`loopml.cli.monitor`. Contract for every subcommand:

- a :class:`loopml.errors.LoopMLError` (or an ``OSError``) becomes ONE line
  ``error: <message>`` on stderr and exit code 1, never a traceback; usage errors exit 2;
- ``-P/--project`` defaults to ``$LOOPML_PROJECT``, else the caller's only project;
- ``--json`` prints the pydantic model(s) as ``model_dump(mode="json")``;
- the callback returns what it computed (the job, the model, a :class:`~loopml.cli.common.Listing`…;
  ``None`` with ``--json``) besides printing it: the ``%loopml`` magic runs this same tree
  (:mod:`loopml.jupyter_ext.magics`) with a :class:`~loopml.cli.common.Caller` as ``obj`` and
  renders that result as a panel;
- startup stays light: ray, mlflow, papermill, pandas, fastapi and sqlalchemy are imported
  only inside the commands that need them (``tests/unit/test_cli.py`` checks this).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from loopml.cli.common import fmt_time
from loopml.cli.demo import COMMANDS as DEMO_COMMANDS
from loopml.cli.endpoints import COMMANDS as ENDPOINT_COMMANDS
from loopml.cli.jobs import COMMANDS as JOB_COMMANDS
from loopml.cli.models import COMMANDS as MODEL_COMMANDS
from loopml.cli.monitor import COMMANDS as MONITOR_COMMANDS
from loopml.cli.pipelines import COMMANDS as PIPELINE_COMMANDS
from loopml.cli.policies import COMMANDS as POLICY_COMMANDS
from loopml.cli.util import (
    client_from,
    echo_fields,
    echo_json,
    echo_table,
    has_injected_client,
    json_option,
    resolve_project,
)
from loopml.errors import InvalidInput, LoopMLError
from loopml.settings import Settings, load_settings

if TYPE_CHECKING:
    from loopml.projects import Project  # imports FastAPI and SQLAlchemy: not at CLI startup


class CLIError(click.ClickException):
    """A user-facing failure: printed as one ``error: …`` line on stderr, exit code 1."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


class LoopMLGroup(click.Group):
    """Root group: turns the errors users cause into :class:`CLIError` for every subcommand."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LoopMLError as exc:
            raise CLIError(_one_line(exc.message)) from exc
        except BrokenPipeError:  # `loopml ... | head`: click ends quietly on a closed pipe
            raise
        except OSError as exc:  # e.g. jobs output -o into a read-only folder
            raise CLIError(_one_line(str(exc))) from exc


def _one_line(text: str) -> str:
    return " ".join(text.split())


@click.group(cls=LoopMLGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="loopml", prog_name="loopml")
def main() -> None:
    """loopml: notebooks as jobs on Ray, tracked in MLflow, served and monitored."""


for _command in (*JOB_COMMANDS, *MODEL_COMMANDS, *ENDPOINT_COMMANDS, *MONITOR_COMMANDS, *POLICY_COMMANDS,
                 *PIPELINE_COMMANDS, *DEMO_COMMANDS):
    main.add_command(_command)


def command_paths(group: click.Group = main, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, click.Command]]:
    """Every command path below ``group`` (``"jobs"``, ``"jobs list"``, …) with its command,
    groups before their commands, in name order."""
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        yield " ".join(path), command
        if isinstance(command, click.Group):
            yield from command_paths(command, path)


def _settings(**flags: Any) -> Settings:
    """:func:`load_settings` with the CLI's flags; a bad value is an InvalidInput naming it."""
    try:
        return load_settings(**flags)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidInput(f"invalid setting: {problems}") from None


DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data dir of the platform (default: $LOOPML_HOME, else ~/.loopml).",
)


# -- local platform ---------------------------------------------------------------------


@main.command()
@click.option("--no-hub", is_flag=True, help="Headless: the platform service with static tokens, no JupyterHub.")
@DATA_DIR
@click.option("--ray-address", default=None, help="Join this Ray cluster instead of starting a head node.")
@click.option("--mlflow-uri", default=None, help="Use this MLflow tracking server instead of starting one.")
@click.option("--db-url", default=None, help="SQLAlchemy URL of the platform DB (default: SQLite in the data dir).")
@click.option("--port", type=int, default=None, help="Port of the platform service (default 8899).")
def up(
    no_hub: bool,
    data_dir: Path | None,
    ray_address: str | None,
    mlflow_uri: str | None,
    db_url: str | None,
    port: int | None,
) -> None:
    """Start the platform on this machine (Ray, MLflow, the platform service)."""
    from loopml import launcher

    settings = _settings(data_dir=data_dir, ray_address=ray_address, mlflow_uri=mlflow_uri, db_url=db_url, port=port,
                         hub=False if no_hub else None)
    click.echo(f"starting loopml in {settings.home}" + ("" if settings.hub else " (headless: no hub)"))
    result = launcher.up(settings, on_step=lambda step: click.echo(f"  {step}"))
    click.echo("loopml is up")
    if result.dev_idp_users:
        click.secho(f"WARNING: logins go to the bundled DEVELOPMENT identity provider; demo users "
                    f"{', '.join(result.dev_idp_users)} (password 'demo', see docs/hub.md). Configure [oauth] "
                    "for real users.", fg="yellow", err=True)
    echo_fields([
        ("hub", f"{result.hub_url}  (log in, open a project workspace)" if result.hub_url else None),
        ("platform", f"{result.url}  (REST {result.url}/api/v1, OpenAPI {result.url}/openapi.json)"),
        ("mlflow", result.mlflow_url),
        ("ray", f"{result.ray_address}" + (f"  (dashboard {result.ray_dashboard_url})" if result.ray_dashboard_url else "")),
        ("logs", str(result.logs)),
        ("started", ", ".join(result.started) or "nothing (all running)"),
        ("kept", ", ".join(result.kept) or None),
        ("authenticate", result.how_to_authenticate),
    ])
    if result.ray_env:
        click.echo("Ray drivers (scripts, notebooks) connect with: export "
                   + " ".join(f"{name}={value}" for name, value in result.ray_env.items()))


@main.command()
@DATA_DIR
def down(data_dir: Path | None) -> None:
    """Stop what `loopml up` started from this data dir."""
    from loopml import launcher

    stopped = launcher.down(_settings(data_dir=data_dir).home)
    for name in stopped:
        click.echo(f"stopped {name}")
    if not stopped:
        click.echo("nothing was running")


@main.command()
@DATA_DIR
@json_option
@click.pass_context
def status(ctx: click.Context, data_dir: Path | None, as_json: bool) -> None:
    """Local processes and, if reachable, the platform's view of its services.

    Exit code 0 only when the platform answered and every service it reports is ok.
    """
    from loopml import launcher
    from loopml.client import Client
    from loopml.settings import read_client_config

    home = _settings(data_dir=data_dir).home
    local = launcher.status(home)
    platform: dict[str, Any] | None = None
    problem: str | None = None
    try:
        if has_injected_client(ctx) or data_dir is None:
            platform = client_from(ctx).status()
        else:  # the platform of that data dir: its client.json (LOOPML_URL/LOOPML_TOKEN still win)
            try:
                config = read_client_config(home)
            except ValueError:
                raise InvalidInput(f"{home / 'client.json'} is not valid JSON: run `loopml up` again") from None
            if config is None:
                raise InvalidInput(f"no client config in {home}: run `loopml up --data-dir {home}`")
            with Client(config.url, config.token) as client:
                platform = client.status()
    except LoopMLError as exc:
        problem = _one_line(exc.message)
    healthy = platform is not None and all(
        part.get("ok", False) for part in platform.values() if isinstance(part, dict)
    )
    if as_json:
        echo_json({"local": local, "platform": platform, "error": problem})
    else:
        echo_status(local, platform, problem)
    ctx.exit(0 if healthy else 1)


def echo_status(local: dict[str, dict[str, Any]], platform: dict[str, Any] | None, problem: str | None) -> None:
    """Two tables: the processes this machine runs, then the services as the platform sees them."""
    echo_table(["PROCESS", "STATE", "PID", "URL", "LOG"],
               [(name, part.get("state", "?"), part.get("pid") or "-", part.get("url") or "-", part.get("log") or "-")
                for name, part in local.items()])
    env = (local.get("ray") or {}).get("env") or {}
    if env:
        click.echo("Ray drivers connect with: " + " ".join(f"export {k}={v}" for k, v in sorted(env.items())))
    click.echo()
    if platform is None:
        click.echo(f"platform: not reachable: {problem}")
        return
    echo_table(["SERVICE", "HEALTH", "DETAILS"],
               [(name, ("ok" if part.get("ok") else "DOWN") if isinstance(part, dict) else "-", _details(name, part))
                for name, part in platform.items()])


def _details(name: str, part: Any) -> str:
    """One service's status in words: addresses, Ray's nodes and free resources, errors."""
    from loopml.units import free_text

    if not isinstance(part, dict):
        return str(part)
    if part.get("error"):
        return _one_line(str(part["error"]))
    if name == "platform":
        return f"{part.get('url', '')} as {part.get('user', '?')}{' (admin)' if part.get('admin') else ''}".strip()
    if name == "ray":
        words = [str(part.get("address") or "")]
        if "nodes" in part:
            words.append(f"{part['nodes']} node{'s' if part['nodes'] != 1 else ''}")
        if part.get("resources"):
            words.append(free_text(part["resources"], part.get("available") or {}))
        return "; ".join(w for w in words if w)
    known = {"uri": "{}", "backend": "{}", "isolation": "isolation {}"}
    words = [known.get(k, k + " {}").format(v) for k, v in part.items() if k != "ok" and not isinstance(v, (dict, list))]
    return ", ".join(words)


# -- projects ---------------------------------------------------------------------------


@main.group("projects")
def projects_group() -> None:
    """Projects: who may use them and how many jobs they may run at once."""


@projects_group.command("list")
@json_option
@click.pass_context
def list_projects(ctx: click.Context, as_json: bool) -> None:
    """The projects you may use (all of them for admins)."""
    projects = client_from(ctx).projects()
    if as_json:
        echo_json(projects)
        return
    echo_table(
        ("NAME", "MEMBERS", "MAX JOBS", "CREATED"),
        (
            (p.name, ",".join(sorted({*p.members, *p.group_members})) or "-", p.max_concurrent_jobs or "-",
             fmt_time(p.created_at))
            for p in projects
        ),
    )


@projects_group.command("create")
@click.argument("name")
@click.option("--member", "members", multiple=True, metavar="USER", help="User who may use it; repeat for more.")
@click.option(
    "--max-concurrent-jobs", type=click.IntRange(min=1), default=None, help="Jobs running at once (default: no limit)."
)
@json_option
@click.pass_context
def create_project(
    ctx: click.Context, name: str, members: tuple[str, ...], max_concurrent_jobs: int | None, as_json: bool
) -> None:
    """Create project NAME (admins only)."""
    project = client_from(ctx).create_project(name, members=members, max_concurrent_jobs=max_concurrent_jobs)
    if as_json:
        echo_json(project)
    else:
        click.echo(f"created project {project.name}")


@projects_group.command("update")
@click.argument("name")
@click.option("--member", "add", multiple=True, metavar="USER", help="Add a member; repeat for more.")
@click.option("--remove-member", "remove", multiple=True, metavar="USER", help="Remove a member added by an admin.")
@click.option("--max-concurrent-jobs", type=click.IntRange(min=1), default=None, help="Set the quota.")
@click.option("--no-quota", is_flag=True, help="Remove the max-concurrent-jobs quota.")
@json_option
@click.pass_context
def update_project(ctx: click.Context, name: str, add: tuple[str, ...], remove: tuple[str, ...],
                   max_concurrent_jobs: int | None, no_quota: bool, as_json: bool) -> None:
    """Add or remove members of project NAME, or change its quota (admins only).

    Members from the identity provider's group (loopml-NAME) are not listed here: they
    come and go with the group.
    """
    if max_concurrent_jobs is not None and no_quota:
        raise click.UsageError("give --max-concurrent-jobs or --no-quota, not both")
    client = client_from(ctx)
    members = None
    if add or remove:
        current = client.project(name).members
        members = sorted((set(current) | set(add)) - set(remove))
    project = client.update_project(name, members=members, max_concurrent_jobs=max_concurrent_jobs,
                                    clear_quota=no_quota)
    if as_json:
        echo_json(project)
    else:
        click.echo(f"updated project {project.name}: members {', '.join(project.members) or '-'}, "
                   f"max concurrent jobs {project.max_concurrent_jobs or 'no limit'}")


@projects_group.command("show")
@click.argument("name", required=False)
@json_option
@click.pass_context
def show_project(ctx: click.Context, name: str | None, as_json: bool) -> Project | None:
    """One project (default: $LOOPML_PROJECT, else your only project), and where it stands in
    the loop: each stage, whether it was reached, by what and when (``--json``: as ``loop``)."""
    client = client_from(ctx)
    project = client.project(resolve_project(ctx, name))
    loop = client.loop(project.name)
    if as_json:
        echo_json({**project.model_dump(mode="json"), "loop": loop.model_dump(mode="json")})
        return None
    echo_fields(
        [
            ("name", project.name),
            ("members", ", ".join(project.members) or "-"),
            (f"group {project.group}", ", ".join(project.group_members) or None),
            ("max concurrent jobs", project.max_concurrent_jobs or "no limit"),
            ("created", fmt_time(project.created_at)),
            ("loop", f"reached {loop.furthest.label}" if loop.furthest else "no stage reached yet"),
        ]
    )
    click.echo()
    echo_table(("STAGE", "REACHED", "BY", "WHEN"),
               ((stage.name.label, "yes" if stage.reached else "no",
                 str(stage.object) if stage.object else stage.note or "-", fmt_time(stage.at) or "-")
                for stage in loop.stages))
    return project
