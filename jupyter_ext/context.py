"""Where notebook code finds its platform and project when it does not say: the workspace's defaults.

- :func:`workspace_client`: the client of the workspace's configuration, ``LOOPML_URL`` /
  ``LOOPML_TOKEN`` over ``$LOOPML_HOME/client.json`` (what ``loopml.Client()`` reads), one
  shared by every panel of the kernel.
- :func:`default_project`: ``LOOPML_PROJECT``, else the caller's only project.
- :func:`mlflow_ui_url`: the MLflow UI the platform reports, for links to runs.
"""

from __future__ import annotations

import logging
import threading
import weakref

from loopml.cli import common as cli_common
from loopml.cli.common import PROJECT_ENV
from loopml.client import Client
from loopml.errors import LoopMLError
from loopml.settings import read_client_config

log = logging.getLogger(__name__)

__all__ = ["PROJECT_ENV", "default_project", "mlflow_ui_url", "workspace_client"]

_shared: tuple[tuple[str, str], Client] | None = None
_shared_lock = threading.Lock()
_mlflow_urls: weakref.WeakKeyDictionary[Client, str | None] = weakref.WeakKeyDictionary()
_mlflow_lock = threading.Lock()


def workspace_client() -> Client:
    """The kernel's shared client of the configured platform.

    One client (one connection pool) serves every panel, however many are open; it is built
    again when the configuration changes, or when someone closed it. Do not close it: it lives
    as long as the kernel. :class:`~loopml.errors.Unauthorized` when no platform is configured,
    :class:`~loopml.errors.InvalidInput` for a broken client.json (as ``Client()``).
    """
    global _shared
    try:
        config = read_client_config()
    except ValueError:
        config = None
    if config is None:
        return Client()  # raises the error that says how to configure one
    key = (config.url, config.token)
    with _shared_lock:
        # Client has no public "closed"; its httpx client says whether someone closed it.
        if _shared is None or _shared[0] != key or _shared[1].closed:
            _shared = (key, Client(config.url, config.token))
        return _shared[1]


def default_project(client: Client) -> str:
    """``$LOOPML_PROJECT`` if set, else the caller's only project (one request).

    :class:`~loopml.errors.InvalidInput` naming the choices when the caller has several
    projects, or saying so when it has none (the CLI's rule, :func:`loopml.cli.common.default_project`).
    """
    return cli_common.default_project(client, how="pass project=...")


def mlflow_ui_url(client: Client) -> str | None:
    """The MLflow UI's base URL as the platform reports it (``GET /status``), or ``None`` when it
    is not an http(s) address or the platform does not say.

    Asked once per client (``/status`` checks Ray and MLflow, up to seconds), the answer —
    or its absence after an error — kept for the client's lifetime. Call it off the main
    thread: the panels do, from the poller.
    """
    with _mlflow_lock:
        if client in _mlflow_urls:
            return _mlflow_urls[client]
    try:
        uri = (client.status().get("mlflow") or {}).get("uri")
    except LoopMLError as exc:
        log.debug("no MLflow URL from %r: %s", client, exc.message)
        uri = None
    url = uri.rstrip("/") if isinstance(uri, str) and uri.startswith(("http://", "https://")) else None
    with _mlflow_lock:
        _mlflow_urls[client] = url
    return url
