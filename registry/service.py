"""RegistryService: a project's registered models, versions, aliases and lineage.

Reads and changes the MLflow model registry for the platform's REST routes, and answers
what the serving and monitor slices need of a version (which version an alias names, its
training job, its reference sample, where its files are): inside the platform it is the
only code that talks to MLflow's registry. It never loads a model (no untrusted pickles in
the platform process), only metadata. Every name goes through :mod:`loopml.registry.names`,
so a project only ever sees ``<project>.*``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from loopml.errors import InvalidInput, LoopMLError, NotFound, Unavailable
from loopml.registry import tags as tag
from loopml.registry.models import AliasChange, Lineage, Model, ModelSummary, ModelVersion, RegisteredVersion
from loopml.registry.names import SEPARATOR, check_alias, registered_name, short_name
from loopml.registry.tags import CHALLENGER, CHAMPION

log = logging.getLogger(__name__)

NOT_FOUND = "RESOURCE_DOES_NOT_EXIST"
NO_ALIAS = "INVALID_PARAMETER_VALUE"  # MLflow's answer for an alias a model does not have
MAX_HISTORY = 100
MAX_VERSIONS = 100
NEWEST_OF = 50  # versions asked for to find a project's newest (LIKE may match others' too)


def _time(ms: int | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc) if ms else None


class RegistryService:
    """Reads and aliases a project's models in MLflow's registry.

    ``endpoints_of(registered_name)`` answers ``{version: [endpoint, …]}`` (the serving slice's
    :meth:`~loopml.serving.service.EndpointService.serving`) to fill ``lineage.endpoints``;
    without it that list stays empty.
    """

    def __init__(self, tracking_uri: str,
                 endpoints_of: Callable[[str], dict[int, list[str]]] | None = None) -> None:
        from mlflow.tracking import MlflowClient

        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        self.endpoints_of = endpoints_of or (lambda name: {})

    def _call(self, what: str, fn, *args, missing: tuple[str, ...] = (NOT_FOUND,), **kwargs):
        """Run an MLflow call; an error code of ``missing`` (its 'not found') becomes NotFound, a
        dead server Unavailable."""
        from mlflow.exceptions import MlflowException, RestException

        try:
            return fn(*args, **kwargs)
        except RestException as exc:
            if exc.error_code in missing:
                raise NotFound(f"{what} does not exist") from None
            raise
        except MlflowException as exc:
            if any(code in str(exc.error_code) for code in missing):
                raise NotFound(f"{what} does not exist") from None
            raise Unavailable(f"the MLflow server at {self.tracking_uri} failed: {exc.message[:300]}",
                              component="mlflow") from None
        except OSError as exc:
            raise Unavailable(f"the MLflow server at {self.tracking_uri} did not answer ({type(exc).__name__})",
                              component="mlflow") from None

    def _read(self, what: str, fn, *args):
        """:meth:`_call` for the other slices' reads: any other refusal of MLflow's is :class:`Unavailable`
        too, which a monitor report or a requeue turns into a note or a 503, never a traceback."""
        from mlflow.exceptions import RestException

        try:
            return self._call(what, fn, *args)
        except RestException as exc:
            raise Unavailable(f"the MLflow server at {self.tracking_uri} refused to read {what}: {exc.message[:300]}",
                              component="mlflow") from None

    def list(self, project: str) -> list[ModelSummary]:
        """The project's registered models, by name."""
        found = self._call(f"models of {project!r}", self.client.search_registered_models,
                           filter_string=f"name LIKE '{project}{SEPARATOR}%'", max_results=1000)
        return sorted((self._summary(project, m) for m in found if m.name.startswith(project + SEPARATOR)),
                      key=lambda s: s.name)

    def newest_version(self, project: str) -> RegisteredVersion | None:
        """The project's most recently registered model version; ``None`` before the first.
        :class:`Unavailable` when MLflow is away."""
        found = self._read(f"model versions of {project!r}", lambda: self.client.search_model_versions(
            filter_string=f"name LIKE '{project}{SEPARATOR}%'", order_by=["creation_timestamp DESC"],
            max_results=NEWEST_OF))
        # LIKE reads a '_' of the project's name as any character: keep the project's own
        newest = next((v for v in found if v.name.startswith(project + SEPARATOR)), None)
        if newest is None:
            return None
        return RegisteredVersion(name=newest.name[len(project) + 1:], version=int(newest.version),
                                 created_at=_time(newest.creation_timestamp),
                                 job_id=(newest.tags or {}).get(tag.JOB_ID) or None)

    def _summary(self, project: str, model) -> ModelSummary:
        latest = max((int(v.version) for v in (model.latest_versions or [])), default=None)
        return ModelSummary(name=model.name[len(project) + 1:], registered_name=model.name, latest_version=latest,
                            aliases={a: int(v) for a, v in (model.aliases or {}).items()},
                            updated_at=_time(model.last_updated_timestamp))

    def get(self, project: str, name: str) -> Model:
        """The model with its versions (newest first), metrics, params, aliases and lineage."""
        full = registered_name(project, name)
        model = self._call(f"model {full!r}", self.client.get_registered_model, full)
        versions = self._call(f"versions of {full!r}", self.client.search_model_versions,
                              filter_string=f"name = '{full}'", max_results=MAX_VERSIONS)
        aliases_of: dict[int, list[str]] = {}
        for alias, version in (model.aliases or {}).items():
            aliases_of.setdefault(int(version), []).append(alias)
        summary = self._summary(project, model)
        summary.latest_version = max((int(v.version) for v in versions), default=None)
        serving = self.endpoints_of(full)
        return Model(**summary.model_dump(),
                     versions=[self._version(v, sorted(aliases_of.get(int(v.version), [])),
                                             serving.get(int(v.version), []))
                               for v in sorted(versions, key=lambda v: -int(v.version))],
                     alias_history=[AliasChange(**h) for h in json.loads((model.tags or {}).get(tag.ALIAS_HISTORY, "[]"))])

    def _version(self, version, aliases: list[str], endpoints: list[str]) -> ModelVersion:
        tags = version.tags or {}
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        run_tags: dict[str, str] = {}
        if version.run_id:
            try:
                run = self.client.get_run(version.run_id)
                metrics, params, run_tags = dict(run.data.metrics), dict(run.data.params), dict(run.data.tags)
            except Exception:  # a deleted run leaves the version readable
                log.info("run %s of %s v%s is gone", version.run_id, version.name, version.version)
        return ModelVersion(
            version=int(version.version), aliases=aliases, created_at=_time(version.creation_timestamp),
            status=version.status, source=version.source, metrics=metrics, params=params,
            flavor=tags.get(tag.FLAVOR), reference=tags.get(tag.REFERENCE),
            lineage=Lineage(job_id=tags.get(tag.JOB_ID) or None, run_id=version.run_id,
                            user=tags.get(tag.USER) or None, notebook=tags.get(tag.NOTEBOOK) or None,
                            notebook_sha256=tags.get(tag.NOTEBOOK_SHA256) or None,
                            parameters=json.loads(tags.get(tag.PARAMETERS) or "{}"),
                            pipeline_run_id=tags.get(tag.PIPELINE_RUN_ID) or run_tags.get(tag.PIPELINE_RUN_ID) or None,
                            pipeline_step=tags.get(tag.PIPELINE_STEP) or run_tags.get(tag.PIPELINE_STEP) or None,
                            endpoints=endpoints),
        )

    # -- one version, for the serving and monitor slices -------------------------------
    # These take the registered name (``<project>.<model>``) an endpoint holds.

    def resolve(self, model: str, *, alias: str | None = None, version: int | None = None) -> int:
        """The version of registered model ``model`` that ``alias`` names, or ``version`` itself
        once it is known to exist. :class:`NotFound` (naming ``model@alias`` or ``model/version``)
        when there is no such model, alias or version; :class:`Unavailable` when MLflow is away."""
        from mlflow.exceptions import RestException

        what = f"{model}@{alias}" if alias else f"{model}/{version}"
        fetch, key = ((self.client.get_model_version_by_alias, alias) if alias
                      else (self.client.get_model_version, str(version)))
        try:
            found = self._call(f"model version {what}", fetch, model, key, missing=(NOT_FOUND, NO_ALIAS))
        except (NotFound, RestException):
            short = model.partition(SEPARATOR)[2] or model
            raise NotFound(f"model version {what} does not exist: `loopml models show {short}` lists versions "
                           "and aliases", model=what) from None
        return int(found.version)

    def training_job_id(self, model: str, version: int) -> str | None:
        """The id of the loopml job that registered ``version`` of ``model``; ``None`` for a version
        logged outside a job. :class:`NotFound` for an unknown version, :class:`Unavailable`."""
        found = self._read(f"version {version} of {model!r}", self.client.get_model_version, model, str(version))
        return (found.tags or {}).get(tag.JOB_ID) or None

    def training_pipeline_run_id(self, model: str, version: int) -> str | None:
        """The id of the pipeline run whose step registered ``version`` of ``model`` (a register
        step tags the version, a step's job tags its run); ``None`` when no pipeline did.
        :class:`NotFound` for an unknown version, :class:`Unavailable`."""
        found = self._read(f"version {version} of {model!r}", self.client.get_model_version, model, str(version))
        if (found.tags or {}).get(tag.PIPELINE_RUN_ID):
            return found.tags[tag.PIPELINE_RUN_ID]
        if not found.run_id:
            return None
        run = self._read(f"run {found.run_id} of {model!r} v{version}", self.client.get_run, found.run_id)
        return run.data.tags.get(tag.PIPELINE_RUN_ID) or None

    def download_uri(self, model: str, version: int) -> str:
        """Where the files of ``version`` of ``model`` are, as an artifact URI MLflow downloads
        (``mlflow.artifacts.download_artifacts``). :class:`NotFound`, :class:`Unavailable`."""
        return self._read(f"version {version} of {model!r}", self.client.get_model_version_download_uri,
                          model, str(version))

    def reference_uri(self, model: str, version: int) -> str | None:
        """``runs:/<run>/<path>`` of the reference sample of ``version`` of ``model`` (its
        ``loopml.reference`` tag), ``None`` when it has none; see :meth:`tagged_artifact`."""
        return self.tagged_artifact(model, version, tag.REFERENCE)

    def read_tagged(self, model: str, version: int, name: str, read: Callable[[Path], Any], what: str) -> Any:
        """``read(path)`` of the artifact version tag ``name`` names (vouched for by
        :meth:`tagged_artifact`), downloaded into a temp dir; ``None`` without the tag.
        :class:`LoopMLError` s of ``read`` (a file that is not what it should be) pass through;
        anything else is :class:`Unavailable` naming ``what`` and the URI."""
        import mlflow

        uri = self.tagged_artifact(model, version, name)
        if uri is None:
            return None
        with tempfile.TemporaryDirectory(prefix="loopml-artifact-") as folder:
            try:
                path = mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=folder,
                                                           tracking_uri=self.tracking_uri)
                return read(Path(path))
            except LoopMLError:
                raise
            except Exception as exc:  # MLflow and the readers raise many unrelated types for a lost or broken file
                raise Unavailable(f"the {what} {uri} could not be read: {exc}"[:400], component="mlflow") from None

    def tagged_artifact(self, model: str, version: int, name: str) -> str | None:
        """``runs:/<run>/<path>`` of the artifact version tag ``name`` names, ``None`` without the tag.

        The tag is written by whoever may write the model, so it is only trusted as a path: it
        must name an artifact of the version's own run (``runs:/<that run>/<path>`` or a URI under
        that run's artifact root), a run of the model's project's experiment. Anything else
        (``http://``, ``file://``, another run or project, ``..``) is refused (:class:`InvalidInput`).
        :class:`NotFound` for an unknown version, :class:`Unavailable` when MLflow is away.
        """
        # here, not at the top: importing tracking tunes MLflow's HTTP retries in os.environ, and
        # `import loopml` (every kernel, replica and model host) imports this module for check_version
        from loopml.registry.tracking import experiment_name

        found = self._read(f"version {version} of {model!r}", self.client.get_model_version, model, str(version))
        tagged = (found.tags or {}).get(name)
        if not tagged:
            return None
        run_id = found.run_id

        def refuse(why: str) -> InvalidInput:
            return InvalidInput(f"the {name} tag of {model} ({tagged[:200]!r}) {why}: it must name an "
                                f"artifact of the version's own run, runs:/{run_id}/<path> (loopml.log_model writes "
                                "it so)", field=name)

        if not run_id:
            raise refuse("belongs to a version logged without a run")
        run = self._read(f"run {run_id} of {model}/{version}", self.client.get_run, run_id)
        experiment = self._read(f"experiment of run {run_id}", self.client.get_experiment, run.info.experiment_id)
        if experiment.name != experiment_name(model.partition(SEPARATOR)[0]):
            raise refuse("belongs to a version whose run is not of the model's project")
        path = own_artifact_path(tagged, run_id, run.info.artifact_uri)
        if path is None:
            raise refuse("is not an artifact of that run")
        return f"runs:/{run_id}/{path}"

    # -- registering ---------------------------------------------------------------------

    def register_run_model(self, project: str, name: str, run_id: str, artifact_path: str = "model", *,
                           tags: dict[str, str] | None = None) -> int:
        """Register the model that MLflow run ``run_id`` logged at ``artifact_path`` as a new
        version of the project's model ``name`` (created if new), tagged with the run's job and
        ``tags``; returns the version. :class:`NotFound` for an unknown run, :class:`Unavailable`."""
        from mlflow.exceptions import MlflowException

        full = registered_name(project, name)
        run = self._call(f"run {run_id}", self.client.get_run, run_id, missing=(NOT_FOUND, "INVALID_PARAMETER_VALUE"))
        version_tags = {**(tags or {}), tag.PROJECT: project, tag.RUN_ID: run_id}
        if run.data.tags.get(tag.JOB_ID):
            version_tags[tag.JOB_ID] = run.data.tags[tag.JOB_ID]
        try:
            self.client.create_registered_model(full, tags={tag.PROJECT: project})
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise Unavailable(f"the MLflow server at {self.tracking_uri} failed: {exc.message[:300]}",
                                  component="mlflow") from None
        version = self._call(f"model {full!r}", self.client.create_model_version, full,
                             source=f"runs:/{run_id}/{artifact_path}", run_id=run_id, tags=version_tags,
                             await_creation_for=30)
        return int(version.version)

    # -- aliases -------------------------------------------------------------------------

    def set_alias(self, project: str, name: str, alias: str, version: int, *, user: str) -> Model:
        """Point ``alias`` at ``version``; the move is recorded in the model's alias history.

        Promoting a version to ``champion`` also takes ``challenger`` off it.
        """
        full = registered_name(project, name)
        check_alias(alias)
        model = self._call(f"model {full!r}", self.client.get_registered_model, full)
        self._call(f"version {version} of {full!r}", self.client.get_model_version, full, str(version))
        previous = (model.aliases or {}).get(alias)
        self._call("alias", self.client.set_registered_model_alias, full, alias, str(version))
        changes = [(alias, version, previous)]
        if alias == CHAMPION and str((model.aliases or {}).get(CHALLENGER)) == str(version):
            self._call("alias", self.client.delete_registered_model_alias, full, CHALLENGER)
            changes.append((CHALLENGER, None, version))
        self._record(full, model, changes, user)
        return self.get(project, name)

    def delete_alias(self, project: str, name: str, alias: str, *, user: str) -> Model:
        full = registered_name(project, name)
        model = self._call(f"model {full!r}", self.client.get_registered_model, full)
        if alias not in (model.aliases or {}):
            raise NotFound(f"model {full!r} has no alias {alias!r}", alias=alias)
        self._call("alias", self.client.delete_registered_model_alias, full, alias)
        self._record(full, model, [(alias, None, model.aliases.get(alias))], user)
        return self.get(project, name)

    def _record(self, full: str, model, changes: list[tuple[str, int | None, Any]], user: str) -> None:
        """Append ``(alias, version, previous)`` changes to the model's alias history tag.

        Read-modify-write of one tag: two changes at the very same moment may keep only one
        entry (the aliases themselves are always right; MLflow has no atomic append).
        """
        history = json.loads((model.tags or {}).get(tag.ALIAS_HISTORY, "[]"))
        at = dt.datetime.now(dt.timezone.utc).isoformat()
        for alias, version, previous in changes:
            history.append({"alias": alias, "version": version, "previous": int(previous) if previous else None,
                            "user": user, "at": at})
        self._call("tag", self.client.set_registered_model_tag, full, tag.ALIAS_HISTORY, json.dumps(history[-MAX_HISTORY:]))


def own_artifact_path(uri: str, run_id: str, artifact_root: str | None) -> str | None:
    """The artifact path of ``uri`` within run ``run_id`` (``runs:/<run_id>/<path>`` or
    ``<artifact_root>/<path>``), or ``None`` when ``uri`` points anywhere else: another run,
    another scheme or host, a path that climbs out (``..``), is empty or holds odd characters."""
    path = None
    if uri.startswith(f"runs:/{run_id}/"):
        path = uri[len(f"runs:/{run_id}/"):]
    elif artifact_root and uri.startswith(artifact_root.rstrip("/") + "/"):
        path = uri[len(artifact_root.rstrip("/")) + 1:]
    if not path or "\\" in path or "%" in path or "?" in path or "#" in path or not path.isprintable():
        return None
    parts = path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        return None
    return path


def check_version(value: Any) -> int:
    try:
        version = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"invalid version {value!r}: use a version number such as 2", field="version") from None
    if version < 1:
        raise InvalidInput(f"invalid version {value!r}: versions start at 1", field="version")
    return version


__all__ = ["CHALLENGER", "CHAMPION", "RegistryService", "check_version", "own_artifact_path", "short_name"]
