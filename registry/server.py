"""The MLflow tracking server that ``loopml up`` starts, in its lean configuration.

MLflow's default server is ~15 processes and ~3.7 GiB of memory (4 uvicorn workers plus a
background-job runner). The platform needs far less, so the server runs with:

- **one worker** (``--workers 1``): one user's or one team's tracking traffic fits easily;
- **job execution off** (``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false``): the platform runs
  its own jobs on Ray and needs no MLflow job runner;
- **proxied artifacts** (``--serve-artifacts`` with ``--artifacts-destination``): clients
  upload and download artifacts through the server's HTTP API instead of writing to the
  store's directory, so a job on any Ray node that reaches the server can log models;
- a SQLite backend store in the data dir, or the ``mlflow_backend_uri`` setting's database
  (PostgreSQL through psycopg 3: ``postgresql+psycopg://``; a bare ``postgresql://`` means
  the same). The store URI travels in the environment (``MLFLOW_BACKEND_STORE_URI``, which
  ``mlflow server`` reads), never in argv: a database URL carries a password, and argv is
  visible to every user in ``ps`` and recorded in the state file.

- **one process**: ``mlflow server`` would keep itself alive next to the uvicorn it
  starts; :mod:`loopml.registry._mlflow_exec` becomes that uvicorn instead.

- **authentication** (``--app-name loopml-auth``, unless ``auth=False``): MLflow's basic-auth
  app with the platform as its admin and a user per project
  (:mod:`loopml.registry.mlflow_auth`, :mod:`loopml.registry.mlflow_app`); its config file
  and secrets travel in the environment, never in argv.

That is 1 process and ~200 MiB PSS, ready in ~5-8 s. MLflow's security middleware (``Host``
and ``Origin`` checks) stays on; the server binds to 127.0.0.1 only.
"""

from __future__ import annotations

import sys
from pathlib import Path

from loopml.db import sqlalchemy_url
from loopml.registry import mlflow_auth

STORE_DIR = "mlflow"


def mlflow_server_command(home: Path, port: int, backend_uri: str | None = None, *,
                          auth: bool = False) -> tuple[list[str], dict[str, str]]:
    """The argv and the extra environment of the MLflow server for data dir ``home``.

    The backend store is ``backend_uri`` (a SQLAlchemy URL; the ``mlflow_backend_uri``
    setting), by default ``<home>/mlflow/mlflow.db``; it is in the returned environment as
    ``MLFLOW_BACKEND_STORE_URI``, never in argv. Artifacts live under
    ``<home>/mlflow/artifacts`` either way. The caller creates ``<home>/mlflow`` and merges
    the returned environment over its own. ``mlflow`` is taken from the running
    interpreter's environment. With ``auth`` the server runs the ``loopml-auth`` app: its
    config file is written (``<home>/mlflow`` must exist) and its variables (the bootstrap
    admin password among them) are in the returned environment. Otherwise nothing is created.
    """
    store = Path(home) / STORE_DIR
    argv = [
        sys.executable, "-m", "loopml.registry._mlflow_exec",  # `mlflow server`, in one process
        "server",
        "--artifacts-destination", str(store / "artifacts"),
        "--serve-artifacts",
        "--host", "127.0.0.1",
        "--port", str(port),
        "--workers", "1",
    ]
    backend = sqlalchemy_url(backend_uri) if backend_uri else f"sqlite:///{store / 'mlflow.db'}"
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_BACKEND_STORE_URI": backend}
    if auth:
        argv += ["--app-name", mlflow_auth.APP_NAME]
        env.update(mlflow_auth.server_env(home, backend if backend_uri else None))
    return argv, env
