"""The grammar of ``%loopml`` and the pure pieces of the magics: parsing a line into the
subcommand's arguments (argparse that raises :class:`MagicUsageError` instead of exiting),
the notebook ``%%loopml submit`` builds from a cell, and finding the notebook a kernel runs.

Nothing here talks to the platform; :mod:`loopml.jupyter_ext.magics` does.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

ROOT_ENV = "LOOPML_JUPYTER_ROOT"
"""Set by the server extension: the Jupyter server's root dir, which relative
``JPY_SESSION_NAME`` values are relative to."""

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


USAGE = """\
%loopml submit [NOTEBOOK] [-p KEY=VALUE]... [--cpus N] [--gpus N] [--memory MB]
               [--resource NAME=AMOUNT]... [--timeout S] [--retries N] [--name NAME] [--wait]
%%loopml submit [the same options, no NOTEBOOK]          -> JobPanel (the cell's code as a job)
%loopml jobs [list] [--status STATUS]                     -> JobsPanel
%loopml jobs show|cancel ID                               -> JobPanel
%loopml jobs requeue ID [-p KEY=VALUE]... [--wait]        -> JobPanel of the new job
%loopml jobs logs ID                                      -> prints the log
%loopml models [list]                                     -> ModelsPanel of every model
%loopml models [show] NAME                                -> ModelsPanel of NAME
%loopml promote NAME VERSION   (or: models promote ...)   -> ModelsPanel of NAME, after promoting
%loopml deploy MODEL --endpoint NAME [--public] [--replicas N] [--autoscale MIN:MAX] [--canary PCT]
               [--resource NAME=AMOUNT]...                -> EndpointPanel (.key: the new key)
%loopml endpoints [list]                                  -> an endpoint picker over its EndpointPanel
%loopml endpoints [show] NAME                             -> EndpointPanel
%loopml endpoints update NAME [--replicas N] [--autoscale MIN:MAX] [--canary PCT] [--rotate-key]
%loopml endpoints promote|rollback NAME                   -> EndpointPanel
%loopml endpoints delete NAME                             -> prints what it did
%loopml rollback NAME                                     -> EndpointPanel
%loopml monitor ENDPOINT [--window SPAN]                  -> MonitorPanel
%loopml feedback ENDPOINT FILE                            -> MonitorPanel, after sending the labels
%loopml requeue ENDPOINT [-p KEY=VALUE]... [--alert ID] [--wait]  -> JobPanel of the new job
%loopml dashboard                                         -> the project's dashboard (tabs)
%loopml help [SUBCOMMAND]                                 -> prints the usage
Every subcommand takes -P PROJECT (default: $LOOPML_PROJECT, else your only project) and -h.
ENDPOINT is NAME or PROJECT/NAME.
"""
"""The grammar of ``%loopml`` and what each subcommand returns."""


class MagicUsageError(Exception):
    """A bad argument: its text is the one line the user sees (after ``loopml: ``)."""


class HelpShown(Exception):
    """``-h`` printed a usage: nothing else to do."""


# -- parsing ------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting the kernel."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("%loopml").strip()
        raise MagicUsageError(f"{where}: {message}" if where else message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status:
            raise MagicUsageError(message or f"{self.prog}: exit {status}")
        raise HelpShown()


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key.strip(), value


def _amount(text: str) -> tuple[str, float]:
    name, value = _pair(text)
    try:
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"amount of {name!r} is not a number: {value!r}") from None


def _int_range(low: int, high: int | None = None) -> Callable[[str], int]:
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"{value} is less than {low}")
        if high is not None and value > high:
            raise argparse.ArgumentTypeError(f"{value} is more than {high}")
        return value
    return convert


def _percent(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 100:
        raise argparse.ArgumentTypeError(f"{value:g} is not between 0 and 100 (exclusive)")
    return value


def _status(text: str) -> str:
    from loopml.executor.models import JobStatus

    names = [s.value for s in JobStatus]
    if text.upper() not in names:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(names)}")
    return text.upper()


def _common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("-P", "--project", default=None, help="Project (default: $LOOPML_PROJECT, else your only one).")
    return parser


def _params(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-p", "--param", dest="parameters", action="append", type=_pair, default=[],
                        metavar="KEY=VALUE", help="Notebook parameter; repeat for more.")


def _wait(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--wait", action="store_true", help="Block until the job ends; print how it ended.")


def _job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cpus", type=float, default=None, help="CPU cores per attempt (default 1).")
    parser.add_argument("--gpus", type=float, default=None, help="GPUs per attempt, fractions allowed.")
    parser.add_argument("--memory", dest="memory_mb", type=int, default=None, metavar="MB", help="Memory, MiB.")
    parser.add_argument("--resource", dest="custom", action="append", type=_amount, default=[],
                        metavar="NAME=AMOUNT", help="Custom Ray resource; repeat for more.")
    parser.add_argument("--timeout", dest="timeout_s", type=float, default=None, metavar="S",
                        help="Wall-clock limit of one attempt.")
    parser.add_argument("--retries", dest="max_retries", type=_int_range(0, 10), default=0, metavar="N",
                        help="Retries after a system failure.")


def _scaling(parser: argparse.ArgumentParser) -> None:
    from loopml.serving.models import MAX_REPLICAS

    parser.add_argument("--replicas", type=_int_range(1, MAX_REPLICAS), default=None, metavar="N",
                        help="Fixed replicas.")
    parser.add_argument("--autoscale", default=None, metavar="MIN:MAX", help="Scale between MIN and MAX replicas.")
    parser.add_argument("--canary", type=_percent, default=None, metavar="PCT",
                        help="Share of requests for the canary version.")


GROUPS = {
    "jobs": ("list", "show", "logs", "cancel", "requeue"),
    "models": ("list", "show", "promote"),
    "endpoints": ("list", "show", "update", "promote", "rollback", "delete"),
}
SUBCOMMANDS = ("submit", "jobs", "models", "promote", "deploy", "endpoints", "rollback", "monitor", "feedback",
               "requeue", "dashboard", "help")


def build_parser() -> _Parser:
    """The parser of ``%loopml`` lines (without the leading ``%loopml``)."""
    root = _Parser(prog="%loopml", add_help=False, allow_abbrev=False)
    commands = root.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def command(name: str, help_text: str, parent=commands, prog: str | None = None) -> _Parser:
        parser = parent.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        if prog:
            parser.prog = prog
        return _common(parser)

    submit = command("submit", "Run NOTEBOOK (default: this notebook as saved; with %%loopml: the cell) as a job.")
    submit.add_argument("notebook", nargs="?", default=None, metavar="NOTEBOOK")
    _params(submit)
    _job_options(submit)
    submit.add_argument("--name", default=None, help="Job name (default: the notebook's file name).")
    _wait(submit)

    jobs = commands.add_parser("jobs", help="The project's jobs.", allow_abbrev=False)
    actions = jobs.add_subparsers(dest="action", required=True, parser_class=_Parser)
    listing = command("list", "The project's jobs, newest first.", actions, "%loopml jobs list")
    listing.add_argument("--status", type=_status, default=None, help="Only jobs in this status.")
    for name, text in (("show", "One job."), ("logs", "The job's log so far."), ("cancel", "Cancel the job.")):
        command(name, text, actions, f"%loopml jobs {name}").add_argument("job_id", metavar="ID")
    requeue_job = command("requeue", "Run the job again as a new job.", actions, "%loopml jobs requeue")
    requeue_job.add_argument("job_id", metavar="ID")
    _params(requeue_job)
    _wait(requeue_job)

    models = commands.add_parser("models", help="Registered models.", allow_abbrev=False)
    actions = models.add_subparsers(dest="action", required=True, parser_class=_Parser)
    command("list", "Every model of the project.", actions, "%loopml models list")
    command("show", "Model NAME's versions side by side.", actions, "%loopml models show").add_argument(
        "name", metavar="NAME")
    for parent, prog in ((actions, "%loopml models promote"), (commands, None)):
        promote = command("promote", "Make VERSION of model NAME the champion.", parent, prog)
        promote.add_argument("name", metavar="NAME")
        promote.add_argument("version", type=_int_range(1), metavar="VERSION")

    deploy = command("deploy", "Serve MODEL (NAME@ALIAS, NAME/VERSION or NAME) at an endpoint.")
    deploy.add_argument("model", metavar="MODEL")
    deploy.add_argument("--endpoint", dest="endpoint_name", required=True, metavar="NAME", help="Endpoint name.")
    deploy.add_argument("--public", action="store_true", help="Serve without a key (only when creating it).")
    _scaling(deploy)
    deploy.add_argument("--resource", dest="custom", action="append", type=_amount, default=[],
                        metavar="NAME=AMOUNT", help="Custom Ray resource each replica reserves; repeat for more.")

    endpoints = commands.add_parser("endpoints", help="Model endpoints.", allow_abbrev=False)
    actions = endpoints.add_subparsers(dest="action", required=True, parser_class=_Parser)
    command("list", "The project's endpoints.", actions, "%loopml endpoints list")
    for name, text in (("show", "Endpoint NAME."), ("promote", "End the canary: its version takes all traffic."),
                       ("rollback", "Drop the canary, or go back to the version served before."),
                       ("delete", "Stop serving endpoint NAME and forget it.")):
        command(name, text, actions, f"%loopml endpoints {name}").add_argument("name", metavar="NAME")
    update = command("update", "Change scaling, canary share or key.", actions, "%loopml endpoints update")
    update.add_argument("name", metavar="NAME")
    _scaling(update)
    update.add_argument("--rotate-key", action="store_true", help="Issue a new key; the old one stops working.")

    command("rollback", "Drop endpoint NAME's canary, or go back to its previous version.").add_argument(
        "name", metavar="NAME")

    monitor = command("monitor", "ENDPOINT's traffic, latency, drift and quality.")
    monitor.add_argument("endpoint", metavar="ENDPOINT")
    monitor.add_argument("--window", default="1h", metavar="SPAN", help="How far back, e.g. 15m, 24h (default 1h).")

    feedback = command("feedback", "Send true labels for ENDPOINT's requests from FILE (CSV: request_id,label).")
    feedback.add_argument("endpoint", metavar="ENDPOINT")
    feedback.add_argument("file", metavar="FILE")

    requeue = command("requeue", "Run the training job of the version ENDPOINT serves again.")
    requeue.add_argument("endpoint", metavar="ENDPOINT")
    _params(requeue)
    requeue.add_argument("--alert", dest="alert_id", default=None, metavar="ID", help="The alert this answers.")
    _wait(requeue)

    command("dashboard", "Every panel of the project in tabs.")
    helper = commands.add_parser("help", help="This usage.", add_help=False)
    helper.add_argument("topic", nargs="?", default=None)
    return root


def parse_line(line: str) -> argparse.Namespace | None:
    """The parsed ``%loopml`` line; ``None`` for an empty line.

    :class:`MagicUsageError` (its text is the line to show) for a bad argument, with a
    suggestion for a misspelt subcommand; :class:`HelpShown` after ``-h`` printed a usage.
    """
    try:
        tokens = shlex.split(line, posix=True)
    except ValueError as exc:
        raise MagicUsageError(f"cannot split the line: {exc}") from None
    if not tokens:
        return None
    first = tokens[0]
    if first in ("-h", "--help"):
        tokens[0] = "help"
    elif first not in SUBCOMMANDS:
        close = difflib.get_close_matches(first, SUBCOMMANDS, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        raise MagicUsageError(f"unknown subcommand {first!r} ({hint}try: {', '.join(SUBCOMMANDS)})")
    if first in GROUPS:  # `models` lists, `models iris` shows, like the panels they return
        rest = tokens[1:]
        if not rest or (rest[0].startswith("-") and rest[0] not in ("-h", "--help")):
            tokens.insert(1, "list")
        elif rest[0] not in GROUPS[first] and rest[0] not in ("-h", "--help"):
            tokens.insert(1, "show")
    ns, extra = build_parser().parse_known_args(tokens)
    if extra:
        where = " ".join(filter(None, (ns.command, getattr(ns, "action", None))))
        raise MagicUsageError(f"{where}: unrecognized arguments: {' '.join(extra)}")
    return ns


def usage(topic: str | None = None) -> str:
    """The usage text of ``%loopml`` or of one subcommand (``help submit``)."""
    if topic:
        try:
            build_parser().parse_args([topic, "-h"])
        except HelpShown:
            return ""
        except MagicUsageError as exc:
            return f"loopml: {exc}"
    return USAGE


# -- pure helpers -------------------------------------------------------------------------


def endpoint_ref(endpoint: str, project: str | None) -> tuple[str | None, str]:
    """``(project, name)`` of ENDPOINT (``NAME`` or ``PROJECT/NAME``); ``project`` stays ``None``
    when neither ENDPOINT nor ``-P`` names it. :class:`MagicUsageError` for a malformed one or a clash."""
    owner, sep, name = endpoint.partition("/")
    if not sep:
        return project, endpoint
    if not owner or not name or "/" in name:
        raise MagicUsageError(f"ENDPOINT {endpoint!r}: use NAME or PROJECT/NAME")
    if project and project != owner:
        raise MagicUsageError(f"ENDPOINT {endpoint!r} is in project {owner!r} but -P says {project!r}: give one")
    return owner, name


def parameter_literal(value: str) -> str:
    """Source text of a ``-p`` value in a parameters cell: the value itself when it reads as a
    Python literal (``0.01``, ``[1, 2]``, ``'text'``), else the value as a string."""
    try:
        ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return repr(value)
    return value.strip()


def cell_notebook(code: str, parameters: Mapping[str, str]) -> dict[str, Any]:
    """The one-cell notebook ``%%loopml submit`` runs: a ``parameters``-tagged cell declaring the
    ``-p`` values (so papermill injects them and the platform knows their types), then ``code``.

    :class:`MagicUsageError` for a parameter name that is not a Python identifier.
    """
    import nbformat

    nb = nbformat.v4.new_notebook()
    if parameters:
        bad = [name for name in parameters if not name.isidentifier()]
        if bad:
            raise MagicUsageError(f"parameter name {bad[0]!r} is not a Python identifier")
        cell = nbformat.v4.new_code_cell("\n".join(f"{k} = {parameter_literal(v)}" for k, v in parameters.items()))
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells.append(nbformat.v4.new_code_cell(code.rstrip("\n")))
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def current_notebook(environ: Mapping[str, str], user_ns: Mapping[str, Any], cwd: Path) -> Path:
    """The saved notebook this kernel runs.

    Looked up, in order, from VS Code's ``__vsc_ipynb_file__``, jupyter-server's
    ``JPY_SESSION_NAME`` (absolute, or relative to the server root, which the loopml server
    extension exports as ``LOOPML_JUPYTER_ROOT``) and ipykernel's ``__session__``; a relative
    path is also tried against ``cwd`` and its parents. :class:`MagicUsageError` when none
    names an existing ``.ipynb`` file (a console, a script, a renamed or never-saved notebook).
    """
    names = [user_ns.get("__vsc_ipynb_file__"), environ.get("JPY_SESSION_NAME"), user_ns.get("__session__")]
    names = [str(n) for n in names if n]
    root = environ.get(ROOT_ENV)
    for name in names:
        path = Path(name).expanduser()
        bases = [] if path.is_absolute() else [Path(root)] if root else []
        tries = [path] if path.is_absolute() else [b / path for b in (*bases, cwd, *cwd.parents)]
        for candidate in tries:
            if candidate.suffix == ".ipynb" and candidate.is_file():
                return candidate
    if names:
        raise MagicUsageError(f"this kernel's session {names[0]!r} is not a saved notebook here: save it, "
                              "or pass the notebook: %loopml submit NOTEBOOK")
    raise MagicUsageError("this kernel runs no saved notebook (a console?): pass one: %loopml submit NOTEBOOK")
