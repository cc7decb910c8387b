"""loopml: a self-service ML platform that lives inside Jupyter.

The public surface of the top-level package. Keep it light: ``import loopml`` runs in every
CLI call and every job, so nothing here may import ray, mlflow, papermill, pandas, fastapi
or sqlalchemy.
"""

from loopml.client import Client
from loopml.sdk import current_job, log_model, outputs, set_output

__all__ = ["Client", "current_job", "dashboard", "load_ipython_extension", "log_model", "outputs", "set_output"]


def dashboard(project: str | None = None, client: Client | None = None):
    """Every panel of a project in tabs (jobs, models, endpoints, monitoring); see
    :func:`loopml.jupyter_ext.dashboard`."""
    from loopml.jupyter_ext import dashboard as _dashboard

    return _dashboard(project=project, client=client)


def load_ipython_extension(ipython) -> None:
    """``%load_ext loopml``: the ``%loopml`` and ``%%loopml`` magics (see :mod:`loopml.jupyter_ext`)."""
    from loopml.jupyter_ext import load_ipython_extension as _load

    _load(ipython)


def _jupyter_server_extension_points():
    """The jupyter-server extension of this package (see :mod:`loopml.jupyter_ext`)."""
    from loopml.jupyter_ext import _jupyter_server_extension_points as _points

    return _points()
