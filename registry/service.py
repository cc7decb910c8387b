"""RegistryService: a project's registered models, versions, aliases and lineage.

Reads and changes the MLflow model registry for the platform's REST routes. It never
loads a model (no untrusted pickles in the platform process), only metadata. Every name
goes through :mod:`loopml.registry.names`, so a project only ever sees ``<project>.*``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable
from typing import Any

from loopml.errors import InvalidInput, NotFound, Unavailable
from loopml.registry.models import AliasChange, Lineage, Model, ModelSummary, ModelVersion
from loopml.registry.names import SEPARATOR, check_alias, registered_name, short_name

log = logging.getLogger(__name__)

CHAMPION, CHALLENGER = "champion", "challenger"
HISTORY_TAG = "loopml.alias_history"
MAX_HISTORY = 100
MAX_VERSIONS = 100


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

    def _call(self, what: str, fn, *args, **kwargs):
        """Run an MLflow call; its 'not found' becomes NotFound, a dead server Unavailable."""
        from mlflow.exceptions import MlflowException, RestException

        try:
            return fn(*args, **kwargs)
        except RestException as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                raise NotFound(f"{what} does not exist") from None
            raise
        except MlflowException as exc:
            if "RESOURCE_DOES_NOT_EXIST" in str(exc.error_code):
                raise NotFound(f"{what} does not exist") from None
            raise Unavailable(f"the MLflow server at {self.tracking_uri} failed: {exc.message[:300]}",
                              component="mlflow") from None
        except OSError as exc:
            raise Unavailable(f"the MLflow server at {self.tracking_uri} did not answer ({type(exc).__name__})",
                              component="mlflow") from None

    def list(self, project: str) -> list[ModelSummary]:
        """The project's registered models, by name."""
        found = self._call(f"models of {project!r}", self.client.search_registered_models,
                           filter_string=f"name LIKE '{project}{SEPARATOR}%'", max_results=1000)
        return sorted((self._summary(project, m) for m in found if m.name.startswith(project + SEPARATOR)),
                      key=lambda s: s.name)

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
                     alias_history=[AliasChange(**h) for h in json.loads((model.tags or {}).get(HISTORY_TAG, "[]"))])

    def _version(self, version, aliases: list[str], endpoints: list[str]) -> ModelVersion:
        tags = version.tags or {}
        metrics: dict[str, float] = {}
        params: dict[str, str] = {}
        if version.run_id:
            try:
                run = self.client.get_run(version.run_id)
                metrics, params = dict(run.data.metrics), dict(run.data.params)
            except Exception:  # a deleted run leaves the version readable
                log.info("run %s of %s v%s is gone", version.run_id, version.name, version.version)
        return ModelVersion(
            version=int(version.version), aliases=aliases, created_at=_time(version.creation_timestamp),
            status=version.status, source=version.source, metrics=metrics, params=params,
            flavor=tags.get("loopml.flavor"), reference=tags.get("loopml.reference"),
            lineage=Lineage(job_id=tags.get("loopml.job_id") or None, run_id=version.run_id,
                            user=tags.get("loopml.user") or None, notebook=tags.get("loopml.notebook") or None,
                            notebook_sha256=tags.get("loopml.notebook_sha256") or None,
                            parameters=json.loads(tags.get("loopml.parameters") or "{}"), endpoints=endpoints),
        )

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
        history = json.loads((model.tags or {}).get(HISTORY_TAG, "[]"))
        at = dt.datetime.now(dt.timezone.utc).isoformat()
        for alias, version, previous in changes:
            history.append({"alias": alias, "version": version, "previous": int(previous) if previous else None,
                            "user": user, "at": at})
        self._call("tag", self.client.set_registered_model_tag, full, HISTORY_TAG, json.dumps(history[-MAX_HISTORY:]))


def check_version(value: Any) -> int:
    try:
        version = int(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"invalid version {value!r}: use a version number such as 2", field="version") from None
    if version < 1:
        raise InvalidInput(f"invalid version {value!r}: versions start at 1", field="version")
    return version


__all__ = ["RegistryService", "short_name", "check_version"]
