"""The jupyter-server extension ``loopml``: the ``%loopml`` magics in every Python kernel.

Enabled by installing the package: ``etc/jupyter/jupyter_server_config.d/loopml.json``
(installed from ``jupyter-config/``) sets ``ServerApp.jpserver_extensions.loopml``; jupyter
imports ``loopml``, whose ``_jupyter_server_extension_points`` delegates here.

How the kernels get the magics: when the extension loads, it points ``PYTHONSTARTUP`` in the
server's environment at :mod:`loopml.jupyter_ext._kernel_startup`. Kernels inherit the
server's environment (jupyter-server builds each kernel's from ``os.environ``), and IPython
kernels run that file at start (``InteractiveShellApp.exec_PYTHONSTARTUP``, on by default),
which registers the magics; other kernels and languages ignore the variable. A
``PYTHONSTARTUP`` set before is kept in ``LOOPML_CHAINED_PYTHONSTARTUP`` and run first.

The workspace context: a hub workspace's environment carries ``LOOPML_PROJECT``,
``LOOPML_URL`` and ``LOOPML_TOKEN`` (see :mod:`loopml.hub_config.spawner`); the kernels
inherit them and the magics default to them. The extension adds what notebook code needs
besides: ``MLFLOW_TRACKING_URI`` from the platform's ``/status`` when it is not set (so
``loopml.log_model`` run interactively registers in the platform's MLflow, as in a job),
and the server's root dir as ``LOOPML_JUPYTER_ROOT``, which ``%loopml submit`` needs to find
a notebook from a root-relative ``JPY_SESSION_NAME``.

A workspace server also tells the platform that it started (``POST
/projects/<LOOPML_PROJECT>/workspaces``, with the workspace's own token): nothing else records
that a member opened the project's workspace, the first stage of the loop's state tracker
(``GET /projects/{p}/loop``). The hub only knows its servers of now (and keeps a record of a
refused start too), so the server that did start is the one to say so.

Nothing here imports ipywidgets or the panels: the server only ever imports this module.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from pathlib import Path

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool

from loopml.jupyter_ext.notebook_files import ROOT_ENV

log = logging.getLogger(__name__)

STARTUP_FILE = Path(__file__).with_name("_kernel_startup.py")
CHAINED_ENV = "LOOPML_CHAINED_PYTHONSTARTUP"
MLFLOW_ENV = "MLFLOW_TRACKING_URI"


def enable_autoload(environ: MutableMapping[str, str], root_dir: str | None = None) -> None:
    """Make the Python kernels started with ``environ`` load the magics (idempotent).

    Sets ``PYTHONSTARTUP`` to :data:`STARTUP_FILE`, keeping a different previous value in
    :data:`CHAINED_ENV` (the startup file runs it first), and ``LOOPML_JUPYTER_ROOT`` to
    ``root_dir`` when given.
    """
    startup = str(STARTUP_FILE)
    previous = environ.get("PYTHONSTARTUP")
    if previous and previous != startup:
        environ[CHAINED_ENV] = previous
    environ["PYTHONSTARTUP"] = startup
    if root_dir:
        environ[ROOT_ENV] = str(Path(root_dir).expanduser().resolve())


class LoopmlExtension(ExtensionApp):
    """The ``loopml`` server extension (no handlers: it prepares the kernels' environment)."""

    name = "loopml"
    description = "loopml: the %loopml magics in every Python kernel of this server"

    autoload_magics = Bool(
        True,
        config=True,
        help="Load the %loopml magics in every Python kernel this server starts (no %load_ext loopml).",
    )

    mlflow_from_platform = Bool(
        True,
        config=True,
        help="Give kernels MLFLOW_TRACKING_URI from the platform's /status when it is unset and LOOPML_URL is set.",
    )

    report_workspace_opened = Bool(
        True,
        config=True,
        help="Tell the platform this workspace started (POST /projects/<LOOPML_PROJECT>/workspaces) when "
             "LOOPML_URL and LOOPML_PROJECT are set: the loop's 'workspace opened' stage.",
    )

    def initialize_settings(self) -> None:
        project = os.environ.get("LOOPML_PROJECT")
        if self.report_workspace_opened and os.environ.get("LOOPML_URL") and project:
            if report_workspace_opened(project):
                self.log.info("loopml: the platform knows this workspace of %s started", project)
        if self.mlflow_from_platform and os.environ.get("LOOPML_URL") and not os.environ.get(MLFLOW_ENV):
            uri = platform_mlflow_uri()
            if uri:
                os.environ[MLFLOW_ENV] = uri
                self.log.info("loopml: kernels log to the platform's MLflow at %s", uri)
        if not self.autoload_magics:
            self.log.info("loopml: %%loopml autoload is off (LoopmlExtension.autoload_magics)")
            return
        enable_autoload(os.environ, self.serverapp.root_dir if self.serverapp else None)
        self.log.info("loopml: Python kernels load the %%loopml magics (PYTHONSTARTUP=%s)", STARTUP_FILE)


def platform_mlflow_uri(timeout: float = 10.0) -> str | None:
    """The MLflow tracking URI the configured platform reports, or ``None`` (logged) when it
    cannot be asked: the server must start even when the platform is down."""
    from loopml.client import Client
    from loopml.errors import LoopMLError

    try:
        with Client(timeout=timeout) as client:
            uri = (client.status().get("mlflow") or {}).get("uri")
    except LoopMLError as exc:
        log.warning("loopml: no MLflow tracking URI from the platform: %s", exc.message)
        return None
    return uri if isinstance(uri, str) and uri else None


def report_workspace_opened(project: str, timeout: float = 5.0) -> bool:
    """Tell the configured platform that this workspace of ``project`` started; ``False`` (logged)
    when it cannot be told: the server must start even when the platform is down."""
    from loopml.client import Client
    from loopml.errors import LoopMLError

    try:
        with Client(timeout=timeout) as client:
            client.workspace_opened(project)
    except LoopMLError as exc:
        log.warning("loopml: could not tell the platform that this workspace of %s started: %s", project,
                    exc.message)
        return False
    return True


def _jupyter_server_extension_points() -> list[dict]:
    """The server extension of ``loopml`` (re-exported by the ``loopml`` package)."""
    return [{"module": "loopml.jupyter_ext.extension", "app": LoopmlExtension}]
