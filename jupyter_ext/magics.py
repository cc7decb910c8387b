"""``%loopml`` and ``%%loopml``: the CLI's subcommands in a notebook, answered with panels.

The grammar is :data:`~loopml.jupyter_ext._magic_args.USAGE` (what ``%loopml help``
prints; parsing lives in :mod:`loopml.jupyter_ext._magic_args`); the option names are the
CLI's, ``-P/--project`` defaults to ``$LOOPML_PROJECT``, else your only project, and ENDPOINT
is ``NAME`` or ``PROJECT/NAME``.

Every subcommand takes ``-P PROJECT`` and ``-h``. ``%loopml submit`` without NOTEBOOK submits
the notebook this kernel runs, as last saved. ``--wait`` blocks until the job ends (what a
notebook run as a job needs), prints how it ended and returns the final panel.

Errors: a bad argument or a platform error prints ONE line ``loopml: <what is wrong>`` on
stderr and the magic returns ``None``, never a traceback. Inside a loopml job (a notebook
run by papermill, no one to read stderr) the same line is raised instead, as an error
whose traceback is that one line, so the job stops at the step that failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class

from loopml.errors import LoopMLError
from loopml.jupyter_ext._magic_args import (
    USAGE,
    MagicUsageError,
    HelpShown,
    cell_notebook,
    current_notebook,
    endpoint_ref,
    parse_line,
    usage,
)

__all__ = ["USAGE", "LoopmlMagicError", "LoopmlMagics", "load_ipython_extension", "unload_ipython_extension"]


class LoopmlMagicError(Exception):
    """Raised instead of printed inside a job; its traceback is the one error line."""

    def _render_traceback_(self) -> list[str]:  # IPython shows these lines instead of a traceback
        return [f"loopml: {self}"]


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _in_job() -> bool:
    return bool(os.environ.get("LOOPML_JOB_ID"))


# -- the magics ---------------------------------------------------------------------------


@magics_class
class LoopmlMagics(Magics):
    """``%loopml`` / ``%%loopml`` (see the module docstring for the grammar).

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
        """Run a loopml subcommand and return its panel; ``%loopml help`` lists them."""
        try:
            return self._run(line, cell)
        except HelpShown:
            return None
        except MagicUsageError as exc:
            return self._fail(str(exc))
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
        ns = parse_line(line)
        if ns is None or ns.command == "help":
            print(usage(ns.topic if ns is not None else None), end="")
            return None
        if cell is not None and ns.command != "submit":
            raise MagicUsageError("%%loopml runs a cell as a job: use %%loopml submit [options]")
        handler = getattr(self, f"_{ns.command}_{ns.action}" if getattr(ns, "action", None) else f"_{ns.command}")
        return handler(ns, cell) if ns.command == "submit" else handler(ns)

    def _project(self, ns: argparse.Namespace, project: str | None = None) -> str:
        from loopml.jupyter_ext.context import default_project

        return project or ns.project or default_project(self.client)

    # -- jobs ---------------------------------------------------------------------------

    def _submit(self, ns: argparse.Namespace, cell: str | None):
        from loopml._cli_util import resources_from

        parameters = dict(ns.parameters)
        name = ns.name
        if cell is not None:
            if ns.notebook:
                raise MagicUsageError("%%loopml submit runs the cell: give no NOTEBOOK "
                                      "(or use %loopml submit NOTEBOOK)")
            notebook: Any = cell_notebook(cell, parameters)
            name = name or self._cell_job_name()
        elif ns.notebook:
            notebook = Path(ns.notebook).expanduser()
        elif _in_job():  # this notebook runs as a job already: submitting it again would never end
            print(f"loopml: skipped: this notebook already runs as job {os.environ['LOOPML_JOB_ID']}")
            return None
        else:
            notebook = current_notebook(os.environ, self.shell.user_ns, Path.cwd())
            print(f"submitting {notebook.name} as last saved")
        project = self._project(ns)
        job = self.client.submit(project, notebook, parameters=parameters,
                                 resources=resources_from(ns.cpus, ns.gpus, ns.memory_mb, dict(ns.custom)),
                                 timeout_s=ns.timeout_s, max_retries=ns.max_retries, name=name)
        return self._job_panel(job.id, project, ns.wait)

    def _cell_job_name(self) -> str:
        try:
            return f"{current_notebook(os.environ, self.shell.user_ns, Path.cwd()).name} (cell)"
        except MagicUsageError:
            return "notebook cell"

    def _job_panel(self, job_id: str, project: str, wait: bool = False):
        from loopml._cli_util import outcome
        from loopml.jupyter_ext.panels import JobPanel

        if wait:
            try:
                print(outcome(self.client.wait(project, job_id)))
            except KeyboardInterrupt:
                print(f"loopml: stopped waiting; job {job_id} keeps running", file=sys.stderr)
        panel = JobPanel(job_id, self.client, project)
        panel.refresh()
        return panel

    def _jobs_list(self, ns: argparse.Namespace):
        from loopml.jupyter_ext.panels import JobsPanel

        project = self._project(ns)
        self.client.jobs(project, status=ns.status, limit=1)  # a bad project is an error line, not a red panel
        panel = JobsPanel(self.client, project, status=ns.status)
        panel.refresh()
        return panel

    def _jobs_show(self, ns: argparse.Namespace):
        project = self._project(ns)
        self.client.job(project, ns.job_id)
        return self._job_panel(ns.job_id, project)

    def _jobs_logs(self, ns: argparse.Namespace) -> None:
        text = self.client.logs(self._project(ns), ns.job_id)
        print(text, end="" if text.endswith("\n") else "\n")

    def _jobs_cancel(self, ns: argparse.Namespace):
        project = self._project(ns)
        self.client.cancel(project, ns.job_id)
        return self._job_panel(ns.job_id, project)

    def _jobs_requeue(self, ns: argparse.Namespace):
        project = self._project(ns)
        job = self.client.requeue(project, ns.job_id, parameters=dict(ns.parameters))
        print(f"requeued job {ns.job_id} as job {job.id}")
        return self._job_panel(job.id, project, ns.wait)

    # -- models -------------------------------------------------------------------------

    def _models_panel(self, project: str, name: str | None):
        from loopml.jupyter_ext.panels import ModelsPanel

        panel = ModelsPanel(name, self.client, project)
        panel.refresh()
        return panel

    def _models_list(self, ns: argparse.Namespace):
        project = self._project(ns)
        self.client.models(project)
        return self._models_panel(project, None)

    def _models_show(self, ns: argparse.Namespace):
        project = self._project(ns)
        self.client.model(project, ns.name)
        return self._models_panel(project, ns.name)

    def _promote(self, ns: argparse.Namespace):
        from loopml._cli_models import _moved

        project = self._project(ns)
        model = self.client.promote(project, ns.name, ns.version)
        previous = _moved(model, "champion", ns.version)
        if previous == ns.version:
            print(f"version {ns.version} of {model.registered_name} is still champion")
        else:
            print(f"version {ns.version} of {model.registered_name} is now champion (was {previous or 'none'})")
        return self._models_panel(project, ns.name)

    _models_promote = _promote

    # -- endpoints ----------------------------------------------------------------------

    def _endpoint_panel(self, project: str, name: str, key: str | None = None):
        from loopml.jupyter_ext.panels import EndpointPanel

        panel = EndpointPanel(name, self.client, project)
        panel.key = key  # a new key is in no other answer: the magic's caller reads it here
        panel.refresh()
        if key is not None:
            print(f"endpoint {name} has a new key: read it now from this panel's .key; it is not shown again")
        return panel

    def _deploy(self, ns: argparse.Namespace):
        from loopml._cli_endpoints import version_text

        project = self._project(ns)
        deployed = self.client.deploy(project, ns.model, ns.endpoint_name, public=ns.public, replicas=ns.replicas,
                                      canary=ns.canary, autoscale=ns.autoscale,
                                      resources={"custom": dict(ns.custom)} if ns.custom else None)
        endpoint = deployed.endpoint
        print(f"endpoint {endpoint.name} serves {version_text(endpoint)} at {endpoint.url}")
        return self._endpoint_panel(project, endpoint.name, deployed.key)

    def _endpoints_list(self, ns: argparse.Namespace):
        from loopml.jupyter_ext.panels import EndpointPanel
        from loopml.jupyter_ext.panels.dashboard import EndpointPicker

        project = self._project(ns)
        self.client.endpoints(project)
        picker = EndpointPicker(lambda name: EndpointPanel(name, self.client, project), self.client, project)
        picker.refresh()
        return picker

    def _endpoints_show(self, ns: argparse.Namespace):
        project = self._project(ns)
        self.client.endpoint(project, ns.name)
        return self._endpoint_panel(project, ns.name)

    def _endpoints_update(self, ns: argparse.Namespace):
        project = self._project(ns)
        deployed = self.client.update_endpoint(project, ns.name, replicas=ns.replicas, autoscale=ns.autoscale,
                                               canary_percent=ns.canary, rotate_key=ns.rotate_key)
        return self._endpoint_panel(project, ns.name, deployed.key)

    def _endpoints_promote(self, ns: argparse.Namespace):
        project = self._project(ns)
        self.client.promote_endpoint(project, ns.name)
        return self._endpoint_panel(project, ns.name)

    def _endpoints_rollback(self, ns: argparse.Namespace):
        from loopml._cli_endpoints import version_text

        project = self._project(ns)
        endpoint = self.client.rollback_endpoint(project, ns.name)
        print(f"endpoint {ns.name} now serves {version_text(endpoint)}")
        return self._endpoint_panel(project, ns.name)

    _rollback = _endpoints_rollback

    def _endpoints_delete(self, ns: argparse.Namespace) -> None:
        self.client.delete_endpoint(self._project(ns), ns.name)
        print(f"deleted endpoint {ns.name}")

    # -- monitoring ---------------------------------------------------------------------

    def _monitor_panel(self, project: str, name: str, window: str = "1h"):
        from loopml.jupyter_ext.panels import MonitorPanel

        panel = MonitorPanel(name, self.client, project, window=window)
        panel.refresh()
        return panel

    def _monitor(self, ns: argparse.Namespace):
        owner, name = endpoint_ref(ns.endpoint, ns.project)
        project = self._project(ns, owner)
        self.client.monitor(project, name, ns.window)  # an unknown endpoint or bad window is an error line
        return self._monitor_panel(project, name, ns.window)

    def _feedback(self, ns: argparse.Namespace):
        from loopml._cli_monitor import SHOWN_UNKNOWN, read_labels

        items = read_labels(Path(ns.file).expanduser())
        owner, name = endpoint_ref(ns.endpoint, ns.project)
        project = self._project(ns, owner)
        result = self.client.feedback(project, name, items)
        print(f"{name}: {result.accepted} accepted, {result.updated} updated, {result.unchanged} unchanged, "
              f"{len(result.unknown)} unknown")
        if result.unknown:
            shown = ", ".join(result.unknown[:SHOWN_UNKNOWN])
            more = f" and {len(result.unknown) - SHOWN_UNKNOWN} more" if len(result.unknown) > SHOWN_UNKNOWN else ""
            print(f"loopml: warning: {len(result.unknown)} request ids have no captured request of "
                  f"{project}/{name}: {shown}{more}", file=sys.stderr)
        return self._monitor_panel(project, name)

    def _requeue(self, ns: argparse.Namespace):
        owner, name = endpoint_ref(ns.endpoint, ns.project)
        project = self._project(ns, owner)
        requeued = self.client.requeue_endpoint(project, name, parameters=dict(ns.parameters), alert_id=ns.alert_id)
        print(f"requeued the training job of {name} as job {requeued.job.id} (alert {requeued.alert.id})")
        return self._job_panel(requeued.job.id, project, ns.wait)

    def _dashboard(self, ns: argparse.Namespace):
        from loopml.jupyter_ext.panels import dashboard

        return dashboard(project=self._project(ns), client=self.client)


def load_ipython_extension(ipython) -> None:
    """Register ``%loopml`` / ``%%loopml`` on ``ipython`` (idempotent: a second call replaces them)."""
    ipython.register_magics(LoopmlMagics)


def unload_ipython_extension(ipython) -> None:
    """Remove ``%loopml`` / ``%%loopml``; panels already shown keep working."""
    for kind in ("line", "cell"):
        ipython.magics_manager.magics[kind].pop("loopml", None)
