"""Pieces every ``loopml`` subcommand shares: the client, ``-P`` defaulting, ``-p k=v``, output.

Kept free of heavy imports: ``loopml --help`` and ``loopml jobs list`` load only click,
httpx, pydantic and tqdm.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

import click
from pydantic import BaseModel

from loopml.cli.common import PROJECT_ENV, Caller, Ended, default_project
from loopml.client import Client
from loopml.errors import InvalidInput
from loopml.executor.models import Job, JobStatus, Resources

F = TypeVar("F", bound=Callable[..., Any])


def caller_of(ctx: click.Context) -> Caller | None:
    """The :class:`Caller` the magic injected as the root context's ``obj``, if any."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Caller) else None


def has_injected_client(ctx: click.Context) -> bool:
    """Whether the caller gave the client (a test's :class:`Client`, the magic's :class:`Caller`)."""
    return isinstance(ctx.find_root().obj, (Client, Caller))


def client_from(ctx: click.Context) -> Client:
    """The client of this invocation: the root context's ``obj`` if it is a :class:`Client`
    (tests inject one) or a :class:`Caller`'s (the magic's), else one built from the client
    config, closed with the context."""
    root = ctx.find_root()
    if isinstance(root.obj, Caller):
        return root.obj.client
    if not isinstance(root.obj, Client):
        root.obj = Client()
        root.call_on_close(root.obj.close)
    return root.obj


def resolve_project(ctx: click.Context, project: str | None) -> str:
    """``-P`` if given, else ``$LOOPML_PROJECT``, else the caller's only project.

    Several (or no) visible projects are a usage error (exit 2) that lists them.
    """
    if project:
        return project
    try:
        return default_project(client_from(ctx))
    except InvalidInput as exc:
        raise click.UsageError(exc.message, ctx=ctx) from None


def project_option(f: F) -> F:
    return click.option(
        "-P",
        "--project",
        default=None,
        metavar="PROJECT",
        help=f"Project (default: ${PROJECT_ENV}, else your only project).",
    )(f)


def json_option(f: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(f)


def _pairs(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> dict[str, str]:
    """``("k=v", "a=b=c")`` -> ``{"k": "v", "a": "b=c"}``: split on the first ``=``."""
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", ctx=ctx, param=param)
        pairs[key.strip()] = value
    return pairs


def params_option(f: F) -> F:
    return click.option(
        "-p",
        "--param",
        "parameters",
        multiple=True,
        callback=_pairs,
        metavar="KEY=VALUE",
        help="Notebook parameter; repeat for more. Values are sent as text; "
        "the server converts them to the parameter's declared type.",
    )(f)


def custom_resources(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> dict[str, float]:
    amounts: dict[str, float] = {}
    for name, amount in _pairs(ctx, param, values).items():
        try:
            amounts[name] = float(amount)
        except ValueError:
            raise click.BadParameter(f"amount of {name!r} is not a number: {amount!r}", ctx=ctx, param=param) from None
    return amounts


def job_options(f: F) -> F:
    """``--cpus --gpus --memory --resource --timeout --retries``; read back with :func:`resources_from`."""
    options = [
        click.option("--cpus", type=float, default=None, help="CPU cores per attempt (default 1)."),
        click.option("--gpus", type=float, default=None, help="GPUs per attempt, fractions allowed (default 0)."),
        click.option("--memory", "memory_mb", type=int, default=None, metavar="MB", help="Memory to reserve, MiB."),
        click.option(
            "--resource",
            "custom",
            multiple=True,
            callback=custom_resources,
            metavar="NAME=AMOUNT",
            help="Custom Ray resource, e.g. node2=1; repeat for more.",
        ),
        click.option("--timeout", "timeout_s", type=float, default=None, metavar="S", help="Wall-clock limit of one attempt."),
        click.option("--retries", "max_retries", type=click.IntRange(0, 10), default=0, help="Retries after a system failure."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def resources_from(
    cpus: float | None, gpus: float | None, memory_mb: int | None, custom: dict[str, float]
) -> dict[str, Any] | None:
    """The ``resources`` body for the flags given, or ``None`` (server defaults) when none was."""
    given = {"cpus": cpus, "gpus": gpus, "memory_mb": memory_mb, "custom": custom or None}
    given = {k: v for k, v in given.items() if v is not None}
    return given or None


def echo_json(data: BaseModel | Iterable[BaseModel] | dict[str, Any]) -> None:
    """Print a model, a list of models or plain data as indented JSON on stdout."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    elif not isinstance(data, dict):
        data = [item.model_dump(mode="json") for item in data]
    click.echo(json.dumps(data, indent=2))


def table_lines(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """Left-aligned columns separated by two spaces, the header first, as lines."""
    table = [list(headers)] + [["" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip() for row in table]


def echo_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Print :func:`table_lines`."""
    for line in table_lines(headers, rows):
        click.echo(line)


def echo_fields(fields: Iterable[tuple[str, Any]]) -> None:
    """Print ``label: value`` lines, labels aligned; ``None`` values are skipped."""
    fields = [(label, value) for label, value in fields if value is not None]
    width = max((len(label) for label, _ in fields), default=0)
    for label, value in fields:
        click.echo(f"{label + ':':<{width + 1}} {value}")


def fmt_progress(job: Job) -> str:
    return f"{job.progress.cells_done}/{job.progress.cells_total}"


def job_models_text(job: Job) -> str | None:
    """``demo.iris v2, demo.wine v1``: the model versions ``job`` registered, or ``None``."""
    return ", ".join(f"{ref.name} v{ref.version}" for ref in job.models) or None


def outcome(job: Job) -> str:
    """One line saying how the job ended (or where it is)."""
    line = f"job {job.id} {job.status.value} ({fmt_progress(job)} cells)"
    if job.error is not None:
        where = f" in cell {job.error.cell_index}" if job.error.cell_index is not None else ""
        what = f"{job.error.ename}: {job.error.evalue}" if job.error.ename else (job.error.message or "")
        line += f": {job.error.reason}{where}" + (f": {what}" if what else "")
    elif job.message and job.status is not JobStatus.SUCCEEDED:
        line += f": {job.message}"
    return line


def resources_text(resources: Resources) -> str:
    """``1 CPU, 0 GPU, memory 512 MiB, node2 1``."""
    parts = [f"{resources.cpus:g} CPU", f"{resources.gpus:g} GPU"]
    if resources.memory_mb:
        parts.append(f"memory {resources.memory_mb} MiB")
    parts += [f"{name} {amount:g}" for name, amount in resources.custom.items()]
    return ", ".join(parts)


def wait_with_progress(ctx: click.Context, project: str, job: Job) -> Job:
    """Wait for ``job`` with a progress bar on stderr (cells done / total and the status; none
    when the :class:`Caller` asks for none).

    Ctrl-C stops waiting, not the job: it says so and exits 130 (:class:`Ended` with the job).
    """
    from tqdm import tqdm

    client = client_from(ctx)
    caller = caller_of(ctx)
    bar_format = "{desc}{n_fmt}/{total_fmt} cells |{bar:24}| {elapsed}{postfix}"
    with tqdm(total=job.progress.cells_total or None, file=sys.stderr, bar_format=bar_format,
              disable=caller is not None and not caller.progress) as bar:

        def update(current: Job) -> None:
            if current.progress.cells_total and bar.total != current.progress.cells_total:
                bar.total = current.progress.cells_total
            bar.n = current.progress.cells_done
            bar.set_description(current.status.value, refresh=False)
            bar.set_postfix_str(current.message or "", refresh=False)
            bar.refresh()

        update(job)
        try:
            return client.wait(project, job.id, on_update=update)
        except KeyboardInterrupt:
            bar.close()
            click.echo(
                f"stopped waiting; job {job.id} keeps running (`loopml jobs cancel {job.id} -P {project}` stops it)",
                err=True,
            )
            raise Ended(130, job) from None
