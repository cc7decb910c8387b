"""loopml: a self-service ML platform that lives inside Jupyter.

The public surface of the top-level package. Keep it light: ``import loopml`` runs in every
CLI call and every job, so nothing here may import ray, mlflow, papermill, pandas, fastapi
or sqlalchemy.
"""

from loopml.client import Client
from loopml.sdk import current_job, log_model

__all__ = ["Client", "current_job", "log_model"]
