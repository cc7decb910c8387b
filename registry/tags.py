"""The names loopml writes into MLflow: tags of runs, model versions, registered models and
experiments, and the aliases it gives versions.

One vocabulary for the whole platform: the notebook SDK writes the version tags
(:mod:`loopml.registry.sdk`), the platform's job tracking the run tags
(:mod:`loopml.registry.tracking`), and :class:`~loopml.registry.service.RegistryService`
reads them back for the other slices. A value here is also what versions logged before
carry, so values are only ever added, never renamed.
"""

from __future__ import annotations

# Lineage, on every model version loopml.log_model registers (JOB_ID, PROJECT and NOTEBOOK tag the job's run too).
JOB_ID = "loopml.job_id"
USER = "loopml.user"
NOTEBOOK = "loopml.notebook"
PARAMETERS = "loopml.parameters"  # JSON of the job's parameters
NOTEBOOK_SHA256 = "loopml.notebook_sha256"
PROJECT = "loopml.project"  # also on the project's experiment and its registered models
RUN_ID = "loopml.run_id"

# What serving and monitoring need of a model version beyond MLflow's own fields.
FLAVOR = "loopml.flavor"  # "sklearn" or "pyfunc"
REFERENCE = "loopml.reference"  # runs:/<run>/<path> of the drift reference sample (parquet)
ESTIMATOR = "loopml.estimator"  # runs:/<run>/<path> of the performance estimator (JSON, loopml.monitor.estimate)
CONTRACT = "loopml.contract"  # runs:/<run>/<path> of the data contract (JSON, loopml.registry.contract)
SKOPS_TRUSTED_TYPES = "loopml.skops_trusted_types"  # comma-separated, as the author logged them

# A job's MLflow run: how it came to be, how it ended, and which versions it registered.
TRIGGER = "loopml.trigger"
PARENT_JOB_ID = "loopml.parent_job_id"
ATTEMPTS = "loopml.attempts"
REGISTERED_PREFIX = "loopml.registered."  # + "<model>.<version>", valued with the registered name

# A pipeline run's MLflow run (the parent of its steps' job runs), and each step's job run.
PIPELINE = "loopml.pipeline"  # the pipeline's name
PIPELINE_RUN_ID = "loopml.pipeline_run_id"
PIPELINE_SOURCE = "loopml.pipeline_source"  # the pipeline file's name
PIPELINE_STEP = "loopml.pipeline_step"


def registered_tag(model: str, version: int | str) -> str:
    """The run tag saying that the run registered ``version`` of ``model`` (its short name)."""
    return f"{REGISTERED_PREFIX}{model}.{version}"


# A registered model's alias moves: a JSON list of {alias, version, previous, user, at}.
ALIAS_HISTORY = "loopml.alias_history"

# The aliases of the loop: a model's first version becomes champion, later ones challenger.
CHAMPION = "champion"
CHALLENGER = "challenger"
