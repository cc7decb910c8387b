"""One MLflow run per job, in the project's experiment.

The platform service alone talks to the tracking server here: it opens the run when a
job is accepted (so a job that MLflow cannot record is refused up front, with nothing
half-created), and closes it with the executed notebook as an artifact. A job's files travel
as artifacts of its run too: its input files under ``inputs/``, its output files under
``outputs/`` (:meth:`JobTracking.log_files`, :meth:`JobTracking.download_files`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from loopml.errors import NotFound, Unavailable
from loopml.registry import tags as tag

log = logging.getLogger(__name__)

MAX_PARAM_CHARS = 6000
RUN_STATUS = {"SUCCEEDED": "FINISHED", "FAILED": "FAILED", "CANCELLED": "KILLED"}
INPUTS, OUTPUTS = "inputs", "outputs"  # where a job's files lie in its run
PIPELINE_FILES = "pipeline"  # where a pipeline run's files (the pipeline file and what came with it) lie in its run

# Fail in seconds, not minutes, when the tracking server is down (MLflow retries 7x by default).
for _name, _value in (("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2"), ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1"),
                      ("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")):
    os.environ.setdefault(_name, _value)


def registered_versions(run_tags: dict[str, str]) -> list[dict[str, Any]]:
    """The versions ``loopml.log_model`` registered in a run, from its ``loopml.registered.<model>.<version>``
    tags (:func:`loopml.registry.tags.registered_tag`)."""
    refs = []
    for name, full_name in run_tags.items():
        _, _, version = name.rpartition(".")
        if name.startswith(tag.REGISTERED_PREFIX) and version.isdigit():
            refs.append({"name": full_name, "version": int(version)})
    return sorted(refs, key=lambda ref: (ref["name"], ref["version"]))


def experiment_name(project: str) -> str:
    """The MLflow experiment that holds a project's runs."""
    return project


class JobTracking:
    """Opens and closes the MLflow run of each job."""

    def __init__(self, tracking_uri: str) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self._experiments: dict[str, str] = {}

    def _unavailable(self, exc: Exception) -> Unavailable:
        log.warning("MLflow call failed: %s", exc)
        return Unavailable(
            f"the MLflow tracking server at {self.tracking_uri} did not answer ({type(exc).__name__}); "
            "nothing was created: retry when it is back (`loopml status`)",
            component="mlflow",
        )

    def experiment_id(self, project: str) -> str:
        """The id of the project's experiment, created on first use (idempotent)."""
        if project in self._experiments:
            return self._experiments[project]
        try:
            found = self.client.get_experiment_by_name(experiment_name(project))
            experiment_id = found.experiment_id if found else self.client.create_experiment(
                experiment_name(project), tags={tag.PROJECT: project}
            )
        except Exception as exc:
            raise self._unavailable(exc) from None
        self._experiments[project] = experiment_id
        return experiment_id

    def start_run(self, *, project: str, job_id: str, name: str, user: str, trigger: str,
                  parameters: dict[str, Any], notebook: str, parent_id: str | None,
                  parent_run_id: str | None = None, tags: Mapping[str, str] | None = None) -> str:
        """Create the job's run with its parameters, tags and input notebook; returns the run id.

        ``parent_run_id`` makes it a child run of that run (MLflow's ``mlflow.parentRunId``: a
        pipeline run's steps); ``tags`` are set on it too."""
        from mlflow.entities import Param, RunTag

        experiment_id = self.experiment_id(project)
        tags = {**(tags or {}), tag.JOB_ID: job_id, tag.PROJECT: project, tag.TRIGGER: trigger, tag.NOTEBOOK: name,
                "mlflow.user": user, "mlflow.source.name": name,
                "mlflow.runName": f"{name} ({job_id})"}
        if parent_id:
            tags[tag.PARENT_JOB_ID] = parent_id
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        try:
            run = self.client.create_run(experiment_id, run_name=tags["mlflow.runName"])
        except Exception as exc:
            raise self._unavailable(exc) from None
        run_id = run.info.run_id
        try:
            self.client.log_batch(
                run_id,
                params=[Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in parameters.items()],
                tags=[RunTag(k, v) for k, v in tags.items()],
            )
            self.client.log_text(run_id, notebook, "notebook/input.ipynb")
        except Exception as exc:
            self.delete_run(run_id)  # no half-created run: the job is refused whole
            raise self._unavailable(exc) from None
        return run_id

    def start_pipeline_run(self, *, project: str, pipeline_run_id: str, name: str, source: str, user: str,
                           parameters: Mapping[str, Any]) -> str:
        """Create the MLflow run of a pipeline run (its steps' job runs become its children);
        returns its id. :class:`Unavailable` when MLflow does not answer, with nothing created."""
        from mlflow.entities import Param, RunTag

        experiment_id = self.experiment_id(project)
        run_name = f"{name} (pipeline {pipeline_run_id})"
        tags = {tag.PIPELINE_RUN_ID: pipeline_run_id, tag.PIPELINE: name, tag.PIPELINE_SOURCE: source,
                tag.PROJECT: project, "mlflow.user": user, "mlflow.source.name": source, "mlflow.runName": run_name}
        try:
            run = self.client.create_run(experiment_id, run_name=run_name)
        except Exception as exc:
            raise self._unavailable(exc) from None
        try:
            self.client.log_batch(run.info.run_id, params=[Param(k, str(v)[:MAX_PARAM_CHARS])
                                                           for k, v in parameters.items()],
                                  tags=[RunTag(k, v) for k, v in tags.items()])
        except Exception as exc:
            self.delete_run(run.info.run_id)
            raise self._unavailable(exc) from None
        return run.info.run_id

    def end_pipeline_run(self, run_id: str, status: str) -> None:
        """Close a pipeline run's MLflow run with the run's final status (SUCCEEDED, FAILED, CANCELLED)."""
        self.client.set_terminated(run_id, RUN_STATUS.get(status, "FAILED"))

    def reopen_pipeline_run(self, run_id: str) -> None:
        """Mark a pipeline run's MLflow run running again (a retry)."""
        self.client.update_run(run_id, status="RUNNING")

    def finish_run(self, run_id: str, status: str, *, output: str | None, log_text: str,
                   attempt: int) -> list[dict[str, Any]]:
        """Store the executed notebook and log, close the run with the job's final status, and
        return the model versions the job registered (``[{name, version}]``)."""
        if output:
            self.client.log_text(run_id, output, "notebook/output.ipynb")
        if log_text:
            self.client.log_text(run_id, log_text, "notebook/log.txt")
        self.client.set_tag(run_id, tag.ATTEMPTS, str(attempt))
        self.client.set_terminated(run_id, RUN_STATUS.get(status, "FAILED"))
        return registered_versions(self.client.get_run(run_id).data.tags)

    def log_files(self, run_id: str, files: Mapping[str, bytes], *, prefix: str = OUTPUTS) -> None:
        """Store ``files`` (relative path → content; paths already checked, see
        :func:`loopml.executor.workdir.check_path`) as artifacts ``<prefix>/<path>`` of the run,
        in one upload. MLflow's errors pass through."""
        if not files:
            return
        with tempfile.TemporaryDirectory(prefix="loopml-files-") as folder:
            for path, content in files.items():
                target = Path(folder, path)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            self.client.log_artifacts(run_id, folder, artifact_path=prefix)

    def download_files(self, run_id: str, paths: Iterable[str], *, prefix: str = OUTPUTS) -> dict[str, bytes]:
        """The artifacts ``<prefix>/<path>`` of the run, by ``path``.

        Raises :class:`NotFound` naming the first path the run does not have; MLflow's other
        errors pass through.
        """
        from mlflow.exceptions import MlflowException

        found: dict[str, bytes] = {}
        with tempfile.TemporaryDirectory(prefix="loopml-files-") as folder:
            for path in paths:
                try:
                    local = self.client.download_artifacts(run_id, f"{prefix}/{path}", folder)
                except (MlflowException, OSError) as exc:
                    if not self._missing(run_id, prefix, path):
                        raise
                    raise NotFound(f"run {run_id} has no file {path!r} under {prefix}/ (its job did not "
                                   "produce it)", run_id=run_id, path=path) from exc
                if not os.path.isfile(local):
                    raise NotFound(f"{prefix}/{path} of run {run_id} is a folder, not a file",
                                   run_id=run_id, path=path)
                found[path] = Path(local).read_bytes()
        return found

    def _missing(self, run_id: str, prefix: str, path: str) -> bool:
        """Whether the run has no artifact ``<prefix>/<path>`` (rather than MLflow failing to send it)."""
        folder, _, name = f"{prefix}/{path}".rpartition("/")
        try:
            return not any(item.path == f"{folder}/{name}" for item in self.client.list_artifacts(run_id, folder))
        except Exception:
            return False

    def delete_run(self, run_id: str) -> None:
        """Undo :meth:`start_run` when the job could not be stored."""
        try:
            self.client.delete_run(run_id)
        except Exception:
            log.exception("could not delete run %s", run_id)

    def ping(self) -> bool:
        try:
            self.client.search_experiments(max_results=1)
            return True
        except Exception:
            return False
