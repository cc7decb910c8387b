"""``%loopml`` and ``%%loopml``: the ``loopml`` command in a notebook, answered with panels.

The grammar is the CLI's click tree (:data:`loopml.cli.main`), so every command, option and
help text is the CLI's: ``%loopml <command> --help`` prints it, ``%loopml`` alone prints the
root help. The magic runs the command with its output captured and returns the panel of its
result (:data:`PANELS`); where a panel shows what the command printed (:data:`SHOWN_BY_PANEL`)
the text is left out, else it is printed too, and a command without a panel (``jobs logs``,
``alerts``, ``policy``, anything with ``--json``) just prints its text.

Beyond the CLI: ``%%loopml submit [options]`` runs the cell as a job; ``%loopml submit``
without NOTEBOOK submits the notebook this kernel runs, as last saved (inside a job it says
it skipped that). ``--wait`` blocks until the job ends, prints how it ended and returns the
final panel, whatever the job's status. ``up`` and ``down`` start and stop processes on this
machine: the magic refuses them in one line.

Errors: a bad argument or a platform error prints ONE line ``loopml: <what is wrong>`` on
stderr and the magic returns ``None``, never a traceback. Inside a loopml job (a notebook
run by papermill, no one to read stderr) the same line is raised instead, as an error
whose traceback is that one line, so the job stops at the step that failed.
"""

from __future__ import annotations

import functools
import io
import os
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import click
from IPython.core.magic import Magics, line_cell_magic, magics_class

from loopml.cli import main
from loopml.cli.common import Caller
from loopml.errors import LoopMLError
from loopml.jupyter_ext.notebook_files import cell_notebook, current_notebook

__all__ = ["PANELS", "SHOWN_BY_PANEL", "LoopmlMagicError", "LoopmlMagics", "load_ipython_extension",
           "unload_ipython_extension"]

PROG = "%loopml"

NOT_IN_A_KERNEL = {
    "up": "`loopml up` starts the platform's processes on this machine: run it in a terminal, not in a kernel",
    "down": "`loopml down` stops the platform's processes on this machine: run it in a terminal, not in a kernel",
}


class LoopmlMagicError(Exception):
    """Raised instead of printed inside a job; its traceback is the one error line."""

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead of a traceback
        return [f"loopml: {self}"]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _in_job() -> bool:
    return bool(os.environ.get("LOOPML_JOB_ID"))


def command_path(args: Sequence[str]) -> str:
    """``"jobs list"`` for ``["jobs", "list", "--status", "failed"]``: the leading words that
    name commands of the click tree (its groups take no options but ``--help``)."""
    command: click.Command = main
    path = []
    for word in args:
        if not isinstance(command, click.Group) or word not in command.commands:
            break
        command = command.commands[word]
        path.append(word)
    return " ".join(path)


# -- panels: a command's result as the widget that shows it --------------------------------


def _refreshed(panel):
    panel.refresh()
    return panel


def _job_panel(client, job):
    from loopml.jupyter_ext.panels import JobPanel

    return _refreshed(JobPanel(job.id, client, job.project))


def _jobs_panel(client, listing):
    from loopml.jupyter_ext.panels import JobsPanel

    return _refreshed(JobsPanel(client, listing.project, status=listing.status))


def _pipeline_panel(client, run):
    from loopml.jupyter_ext.panels import PipelinePanel

    return _refreshed(PipelinePanel(run.id, client, run.project))


def _pipelines_panel(client, listing):
    from loopml.jupyter_ext.panels import PipelinesPanel

    return _refreshed(PipelinesPanel(client, listing.project))


def _model_panel(client, model):
    from loopml.jupyter_ext.panels import ModelsPanel

    project = model.registered_name.removesuffix(f".{model.name}")  # registered as <project>.<name>
    return _refreshed(ModelsPanel(model.name, client, project))


def _models_panel(client, listing):
    from loopml.jupyter_ext.panels import ModelsPanel

    return _refreshed(ModelsPanel(None, client, listing.project))


def _endpoint_panel(client, endpoint):
    from loopml.jupyter_ext.panels import EndpointPanel

    return _refreshed(EndpointPanel(endpoint.name, client, endpoint.project))


def _deployed_panel(client, deployed):
    panel = _endpoint_panel(client, deployed.endpoint)
    panel.key = deployed.key  # a new key is in no other answer: the magic's caller reads it here
    if deployed.key is not None:
        print(f"endpoint {deployed.endpoint.name} has a new key: read it now from this panel's .key; "
              "it is not shown again")
    return panel


def _endpoints_panel(client, listing):
    from loopml.jupyter_ext.panels import EndpointPanel
    from loopml.jupyter_ext.panels.dashboard import EndpointPicker

    return _refreshed(EndpointPicker(lambda name: EndpointPanel(name, client, listing.project), client,
                                     listing.project))


def _monitor_panel(client, report):
    from loopml.jupyter_ext.panels import MonitorPanel

    return _refreshed(MonitorPanel(report.endpoint, client, report.project, window=report.window))


def _labelled_panel(client, sent):
    from loopml.jupyter_ext.panels import MonitorPanel

    return _refreshed(MonitorPanel(sent.endpoint, client, sent.project))


def _dashboard(client, project):
    from loopml.jupyter_ext.panels import dashboard

    return dashboard(project=project.name, client=client)


PANELS: Mapping[str, Callable[[Any, Any], Any]] = {
    "submit": _job_panel,
    "jobs list": _jobs_panel,
    "jobs show": _job_panel,
    "jobs cancel": _job_panel,
    "jobs requeue": _job_panel,
    "requeue": _job_panel,
    "pipelines run": _pipeline_panel,
    "pipelines list": _pipelines_panel,
    "pipelines show": _pipeline_panel,
    "pipelines cancel": _pipeline_panel,
    "pipelines retry": _pipeline_panel,
    "models list": _models_panel,
    "models show": _model_panel,
    "models promote": _model_panel,
    "models alias": _model_panel,
    "models unalias": _model_panel,
    "deploy": _deployed_panel,
    "endpoints list": _endpoints_panel,
    "endpoints show": _endpoint_panel,
    "endpoints update": _deployed_panel,
    "endpoints promote": _endpoint_panel,
    "endpoints rollback": _endpoint_panel,
    "monitor": _monitor_panel,
    "feedback": _labelled_panel,
    "projects show": _dashboard,
}
"""Command path -> the panel of its result; the other commands answer with their text."""

SHOWN_BY_PANEL = frozenset({"jobs list", "jobs show", "pipelines list", "pipelines show", "models list",
                            "models show", "endpoints list", "endpoints show", "monitor", "projects show", "deploy",
                            "endpoints update"})
"""Commands whose text the panel shows (or, for a new key, must not land in the notebook):
the magic leaves it out."""


# -- the magics ---------------------------------------------------------------------------


@magics_class
class LoopmlMagics(Magics):
    """``%loopml`` / ``%%loopml`` (see the module docstring).

    ``client_factory`` makes the platform client on first use (default:
    :func:`loopml.jupyter_ext.context.workspace_client`); the client is kept for the
    kernel's lifetime and shared with the panels it returns.
    """

    def __init__(self, shell=None, client_factory: Callable[[], Any] | None = None) -> None:
        super().__init__(shell)
        self._client_factory = client_factory
        self._client = None

    @property
    def client(self):
        if self._client is None:
            if self._client_factory is None:
                from loopml.jupyter_ext.context import workspace_client

                self._client = workspace_client()
            else:
                self._client = self._client_factory()
        return self._client

    @line_cell_magic
    def loopml(self, line: str, cell: str | None = None) -> Any:
        """Run a ``loopml`` command and return its panel; ``%loopml --help`` lists them."""
        try:
            return self._run(line, cell)
        except click.ClickException as exc:  # usage errors, and the CLI's own one-line errors
            return self._fail(exc.format_message())
        except LoopMLError as exc:
            return self._fail(exc.message)
        except OSError as exc:
            return self._fail(str(exc))

    def _fail(self, message: str) -> None:
        line = _one_line(message)
        if _in_job():
            raise LoopmlMagicError(line) from None
        print(f"loopml: {line}", file=sys.stderr, flush=True)
        return None

    def _run(self, line: str, cell: str | None) -> Any:
        try:
            args = shlex.split(line, posix=True) or ["--help"]
        except ValueError as exc:
            raise click.UsageError(f"cannot split the line: {exc}") from None
        path = command_path(args)
        if cell is not None and path != "submit":
            raise click.UsageError("%%loopml runs a cell as a job: use %%loopml submit [options]")
        if path in NOT_IN_A_KERNEL and not {"-h", "--help"} & set(args):
            raise click.UsageError(NOT_IN_A_KERNEL[path])
        caller = Caller(connect=lambda: self.client, notebook=functools.partial(self._notebook, cell), progress=False)
        out, err = io.StringIO(), io.StringIO()
        try:
            with redirect_stdout(out), redirect_stderr(err):
                result = _invoke(args, caller)
        except BaseException:
            _echo(out.getvalue(), err.getvalue())  # what it did before failing
            raise
        make_panel = PANELS.get(path) if result is not None else None
        _echo("" if make_panel and path in SHOWN_BY_PANEL else out.getvalue(), err.getvalue())
        return make_panel(caller.client, result) if make_panel else None

    def _notebook(self, cell: str | None, given: Path | None,
                  parameters: Mapping[str, str]) -> tuple[Path | dict[str, Any], str | None] | None:
        """What ``submit`` sends: the cell, NOTEBOOK, or the notebook this kernel runs as last saved."""
        if cell is not None:
            if given is not None:
                raise click.UsageError("%%loopml submit runs the cell: give no NOTEBOOK (or use %loopml submit NOTEBOOK)")
            return cell_notebook(cell, parameters), self._cell_job_name()
        if given is not None:
            return given, None
        if _in_job():  # this notebook runs as a job already: submitting it again would never end
            click.echo(f"loopml: skipped: this notebook already runs as job {os.environ['LOOPML_JOB_ID']}")
            return None
        notebook = current_notebook(os.environ, self.shell.user_ns, Path.cwd())
        click.echo(f"submitting {notebook.name} as last saved")
        return notebook, None

    def _cell_job_name(self) -> str:
        try:
            return f"{current_notebook(os.environ, self.shell.user_ns, Path.cwd()).name} (cell)"
        except LoopMLError:
            return "notebook cell"


def _invoke(args: list[str], caller: Caller) -> Any:
    """Run the click tree on ``args`` as ``%loopml``; the command's result, also when it exits
    with a status (``--wait`` on a job that failed), ``None`` after ``--help`` or the help a
    group without its command prints (``%loopml jobs``)."""
    try:
        with main.make_context(PROG, list(args), obj=caller) as ctx:
            return main.invoke(ctx)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message())
        return None
    except click.exceptions.Exit as exc:
        return getattr(exc, "result", None)


def _echo(out: str, err: str) -> None:
    """Show a command's captured output: its text on stdout, its warnings as ``loopml: warning: …``
    on stderr, its other notes (``submitted job …`` under ``--wait``) on stdout."""
    notes = [line for line in err.splitlines(keepends=True) if not line.startswith("warning:")]
    warnings = [f"loopml: {line}" for line in err.splitlines(keepends=True) if line.startswith("warning:")]
    if notes or out:
        print("".join(notes) + out, end="", flush=True)
    if warnings:
        print("".join(warnings), end="", file=sys.stderr, flush=True)


def load_ipython_extension(ipython) -> None:
    """Register ``%loopml`` / ``%%loopml`` on ``ipython`` (idempotent: a second call replaces them)."""
    ipython.register_magics(LoopmlMagics)


def unload_ipython_extension(ipython) -> None:
    """Remove ``%loopml`` / ``%%loopml``; panels already shown keep working."""
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("loopml", None)
