"""EndpointService: deploys registered model versions as Ray Serve applications.

One Serve application per endpoint, routed at ``/<project>/<endpoint>`` on the Serve HTTP
port (127.0.0.1). Deploying another version to an existing endpoint only changes the
application's ``user_config``, which Serve hands to the live replicas' ``reconfigure``:
no replica restarts. Endpoints are rows in the platform DB; on start the service
re-deploys any endpoint Serve no longer runs (a restarted cluster).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from loopml import sandbox
from loopml.capture_wire import CAPTURE_PATH
from loopml.db import Database, utcnow
from loopml.errors import Conflict, InvalidInput, NotFound, Unavailable
from loopml.registry import mlflow_auth
from loopml.registry.names import registered_name, short_name
from loopml.serving.admission import Admission, publish_limits
from loopml.serving.capture import publish_sink
from loopml.serving.deployment import MAX_ONGOING_REQUESTS, ModelEndpoint
from loopml.serving.ingress import public_base_url
from loopml.serving.keys import key_hash
from loopml.serving.models import (
    Autoscale,
    Deployed,
    Endpoint,
    EndpointCreate,
    EndpointPatch,
    EndpointResources,
    HistoryEntry,
)
from loopml.serving.orm import EndpointRow
from loopml.serving.replica_config import CanaryConfig, CaptureConfig, ReplicaConfig, SandboxConfig
from loopml.settings import Settings

if TYPE_CHECKING:
    from loopml.capture_wire import CaptureTokens
    from loopml.registry.contract_service import ContractService
    from loopml.registry.service import RegistryService

log = logging.getLogger(__name__)


# Autoscaling adds a replica when each one has this many requests in flight on average:
# half of what a replica holds (deployment.MAX_ONGOING_REQUESTS), so it scales before refusing.
TARGET_ONGOING_REQUESTS = 2


APP_SEPARATOR = "."  # project and endpoint names never hold it (names.check_name), so no two collide


def app_name(project: str, name: str) -> str:
    return f"{project}{APP_SEPARATOR}{name}"


def admission_limit(max_inflight: int, replicas: int) -> int:
    """Requests in flight the proxy's gate admits to an endpoint of ``replicas`` (its most,
    when autoscaling): ``max_inflight`` (the ``serve_max_inflight`` setting) is sized for one
    replica, which holds :data:`MAX_ONGOING_REQUESTS`; each further replica holds as many more."""
    return max_inflight + MAX_ONGOING_REQUESTS * (replicas - 1)


def code_version() -> str:
    """The replicas' code version: a hash of the serving package's source.

    ``serve.run`` gives every call a random code version, which makes Serve restart all
    replicas on any change. A version that changes only with the code makes a new model
    version, scaling or key a lightweight update: ``reconfigure`` or scaling inside the live
    application.
    """
    digest = hashlib.sha256()
    for source in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(source.read_bytes())
    return "loopml-" + digest.hexdigest()[:16]


def _scaling(row: EndpointRow) -> dict:
    """Serve options for the row's replicas: a fixed count, or autoscaling bounds."""
    if row.max_replicas is None:
        return {"num_replicas": row.replicas}
    return {"autoscaling_config": {"min_replicas": row.replicas, "max_replicas": row.max_replicas,
                                   "initial_replicas": row.replicas,
                                   "target_ongoing_requests": TARGET_ONGOING_REQUESTS}}


def _placement(row: EndpointRow) -> dict:
    """Serve options for the row's custom resources: the deployment's own actor options (its
    CPU share) plus ``resources``; none when the row has none, so the options stay the
    decorator's."""
    custom = (row.resources or {}).get("custom")
    if not custom:
        return {}
    return {"ray_actor_options": {**ModelEndpoint.ray_actor_options, "resources": dict(custom)}}


def _check_offered(custom: dict[str, float]) -> None:
    """:class:`InvalidInput` unless some live node of the Ray cluster offers every resource of
    ``custom`` in that amount: Serve would otherwise wait for such a node without end.
    (A cluster whose autoscaler could add that node has to run one first.)"""
    import ray

    nodes = [node["Resources"] for node in ray.nodes() if node.get("Alive")]
    if any(all(offered.get(name, 0) >= amount for name, amount in custom.items()) for offered in nodes):
        return
    known = sorted({name for offered in nodes for name in offered
                    if name not in ("CPU", "GPU", "memory", "object_store_memory")
                    and not name.startswith(("node:", "accelerator_type:"))})
    wanted = ", ".join(f"{name}={amount:g}" for name, amount in custom.items())
    raise InvalidInput(f"resources: no node of the Ray cluster offers {wanted} to one replica (custom resources "
                       f"of its nodes: {', '.join(known) or 'none'}); use a resource a node offers, in an amount "
                       "it has, or start a node that offers it", field="resources")


def _set_scaling(row: EndpointRow, replicas: int | None, autoscale: Autoscale | None) -> str:
    """Apply a replica count or autoscale bounds to ``row``; returns the history text."""
    if autoscale is not None:
        row.replicas, row.max_replicas = autoscale.min, autoscale.max
        return f"autoscale {autoscale.min}:{autoscale.max}"
    row.replicas, row.max_replicas = replicas, None
    return f"replicas {replicas}"


class EndpointService:
    def __init__(self, settings: Settings, db: Database, registry: RegistryService, *,
                 capture_tokens: CaptureTokens | None = None, contracts: ContractService | None = None) -> None:
        """``registry`` says which version a deploy's alias names (the replicas then load it from
        ``registry.tracking_uri`` themselves); ``capture_tokens`` give each endpoint's replicas the
        token that posts their own captured requests to the platform; ``None`` turns capture off.
        ``contracts`` give the replicas the served version's data contract; ``None``: none."""
        self.settings = settings
        self.db = db
        self.registry = registry
        self.tracking_uri = registry.tracking_uri
        self._lock = threading.Lock()
        self._code_version = code_version()
        self._capture_tokens = capture_tokens
        self.contracts = contracts

    def start(self) -> None:
        """Start Serve's HTTP proxy on loopback and reconcile Serve with the endpoint table:
        endpoints Serve lost are deployed again, running ones get their current config (a
        no-op for Serve when it is unchanged), endpoint applications with no row (deleted
        while the platform was away) are removed."""
        from ray import serve

        serve.start(http_options={"host": self.settings.serve_host, "port": self.settings.serve_port,
                                  "request_timeout_s": self.settings.serve_request_timeout_s})
        running = set(serve.status().applications)
        with self.db.session() as session:
            rows = session.scalars(select(EndpointRow)).all()
        live = [row for row in rows if app_name(row.project, row.name) in running]
        # A running endpoint gets its config again too: Serve ignores an unchanged one and hands
        # a changed one (say, the capture token of an older platform) to the live replicas'
        # reconfigure. All in one call that does not wait: they answer all along, and each
        # serve.run waits ~1 s, so a platform with many endpoints took that long to take its
        # replicas' captures again after a restart.
        try:
            self._run_all(live, wait=False)
        except Exception:
            log.exception("could not reconfigure the running endpoints at once; one by one")
            for row in live:
                self._run_or_log(row, "reconfigure")
        for row in rows:
            if row not in live:
                log.info("re-deploying endpoint %s/%s v%s", row.project, row.name, row.version)
                self._run_or_log(row, "re-deploy")
        for orphan in running - {app_name(r.project, r.name) for r in rows}:
            if APP_SEPARATOR in orphan:
                log.info("removing Serve application %s: its endpoint was deleted", orphan)
                with self._lock:
                    serve.delete(orphan, _blocking=False)
        self._publish_limits()
        if self._capture_tokens is not None:
            try:
                publish_sink(self._sink())  # replicas deployed by an earlier platform find this one
            except Exception as exc:  # noqa: BLE001 - they keep sending to the address they have
                log.warning("could not publish the capture address: %s", exc)

    def _sink(self) -> str:
        """The platform's capture route, as replicas reach it."""
        return f"http://{self.settings.host}:{self.settings.port}{self.settings.api_prefix}{CAPTURE_PATH}"

    def _publish_limits(self) -> None:
        """Give the admission gates of Serve's proxies every endpoint's limit (:func:`admission_limit`)
        and key hash (``None``: public), so that they refuse a request without the key uncounted."""
        with self.db.session() as session:
            limits = {f"/{row.project}/{row.name}": Admission(
                admission_limit(self.settings.serve_max_inflight, row.max_replicas or row.replicas),
                None if row.public else row.key_hash) for row in session.scalars(select(EndpointRow))}
        try:
            publish_limits(limits)
        except Exception as exc:  # noqa: BLE001 - the gates keep the limits they have
            log.warning("could not publish the endpoints' admission limits: %s", exc)

    def url(self, project: str, name: str) -> str:
        """The URL callers use: ``serve_public_url`` (or the serve host and port) + ``/<project>/<name>``."""
        return f"{public_base_url(self.settings)}/{project}/{name}"

    def _resolve(self, project: str, spec: EndpointCreate) -> tuple[str, int, str | None]:
        model, alias, version = spec.reference()
        full = registered_name(project, short_name(project, model))
        return full, self.registry.resolve(full, alias=alias, version=version), alias

    def _config(self, row: EndpointRow) -> dict[str, Any]:
        """The endpoint's :class:`ReplicaConfig`, as the JSON Serve carries in ``user_config``."""
        capture = None
        if self._capture_tokens is not None and self.settings.capture_sample > 0:
            capture = CaptureConfig(url=self._sink(), token=self._capture_tokens.token(row.project, row.name),
                                    sample=self.settings.capture_sample)
        canary = None if row.canary_version is None else CanaryConfig(
            model_uri=f"models:/{row.model}/{row.canary_version}", version=row.canary_version,
            percent=row.canary_percent)
        config = ReplicaConfig(
            model_uri=f"models:/{row.model}/{row.version}", tracking_uri=self.tracking_uri,
            project=row.project, endpoint=row.name, prefix=f"/{row.project}/{row.name}",
            version=row.version, capture=capture,
            # the replicas download the model as its project's MLflow user, never the platform's
            mlflow_auth=_project_credentials(self.settings, row.project),
            key_hash=None if row.public else row.key_hash,
            max_bytes=int(self.settings.max_request_mb * 2**20),
            # a model that can run code is loaded in a sandbox that never sees the data dir
            sandbox=SandboxConfig(isolation=self.settings.job_isolation,
                                  hide=sandbox.hidden_paths(self.settings.home)),
            canary=canary, contract=self._contract(row), on_violation=row.on_violation or "pass",
            capture_probabilities=True if row.capture_probabilities is None else row.capture_probabilities)
        return config.model_dump(mode="json")

    def _contract(self, row: EndpointRow) -> dict[str, Any] | None:
        """The stable version's effective data contract (logged, then the users' overrides), as JSON.

        A version whose contract cannot be trusted or read (a tag naming no artifact of its own
        run, a file that is no contract) is served without one, with a warning; an MLflow that
        cannot be reached raises :class:`Unavailable`, so running replicas keep the contract they have."""
        if self.contracts is None:
            return None
        try:
            contract = self.contracts.effective(row.model, row.version)
        except (InvalidInput, NotFound) as exc:
            log.warning("endpoint %s/%s serves %s/%s without a data contract: %s", row.project, row.name,
                        row.model, row.version, exc.message)
            return None
        return None if contract is None else contract.model_dump(mode="json")

    def contract_changed(self, model: str, version: int) -> list[str]:
        """Give the endpoints serving ``version`` of ``model`` its new contract, in their live
        replicas (a reconfigure: no restart), waiting until Serve has handed it over. Returns their
        names; :class:`Unavailable` when Serve refuses (the overrides stay saved, and the next
        deploy or platform start hands them over)."""
        with self.db.session() as session:
            rows = session.scalars(select(EndpointRow).where(EndpointRow.model == model,
                                                             EndpointRow.version == version)).all()
            for row in rows:
                session.expunge(row)
        try:
            self._run_all(list(rows), wait=True)
        except Exception as exc:
            raise Unavailable(f"the contract is saved, but Ray Serve could not reconfigure "
                              f"{', '.join(r.name for r in rows)}: {exc}"[:500], component="serve") from None
        return [row.name for row in rows]

    def _run(self, row: EndpointRow) -> None:
        self._run_all([row], wait=True)

    def _run_or_log(self, row: EndpointRow, what: str) -> None:
        try:
            self._run(row)
        except Exception:
            log.exception("could not %s %s/%s", what, row.project, row.name)

    def _run_all(self, rows: list[EndpointRow], *, wait: bool) -> None:
        """Deploy (or apply the current config of) endpoints ``rows`` in one Serve call; with
        ``wait``, return once they run (what ``serve.run`` does for one)."""
        from ray import serve

        if not rows:
            return
        targets = []
        for row in rows:
            deployment = ModelEndpoint.options(**_scaling(row), **_placement(row), user_config=self._config(row))
            deployment._version = self._code_version  # Serve's only hook for a stable code version
            targets.append(serve.RunTarget(deployment.bind(), name=app_name(row.project, row.name),
                                           route_prefix=f"/{row.project}/{row.name}"))
        with self._lock:
            serve.run_many(targets, wait_for_ingress_deployment_creation=wait, wait_for_applications_running=wait)

    def deploy(self, user: str, project: str, spec: EndpointCreate) -> Deployed:
        """Create the endpoint, or move an existing one to the requested version (no restart).

        With ``spec.canary`` the version answers that share of requests beside the live one
        until :meth:`promote` (or :meth:`rollback` drops it). ``spec.resources`` (left out: an
        existing endpoint keeps its own) become each replica's custom Ray resources; a change
        restarts the replicas where they fit. :class:`InvalidInput` when no node offers them.
        """
        full, version, alias = self._resolve(project, spec)
        if spec.resources is not None and spec.resources.custom:
            _check_offered(spec.resources.custom)
        key = None
        with self.db.session() as session:
            row = session.scalar(select(EndpointRow).where(EndpointRow.project == project,
                                                           EndpointRow.name == spec.name))
            if row is None:
                if spec.canary is not None:
                    raise InvalidInput(f"endpoint {spec.name!r} does not exist yet: deploy it without --canary "
                                       "first, then add the canary", field="canary")
                key = None if spec.public else secrets.token_urlsafe(24)
                row = EndpointRow(project=project, name=spec.name, model=full, version=version, alias=alias,
                                  public=spec.public, key_hash=key_hash(key) if key else None,
                                  status="DEPLOYING", history=[], created_at=utcnow())
                session.add(row)
                action = f"create with {full}/{version}"
            elif spec.canary is not None:
                if full != row.model:
                    raise InvalidInput(f"a canary must be a version of {row.model}, the model the endpoint serves",
                                       field="model")
                row.canary_version, row.canary_percent = version, spec.canary
                action = f"canary {full}/{version} at {spec.canary:g}%"
            else:
                action = f"deploy {full}/{version}"
            if spec.canary is None:
                row.model, row.version, row.alias = full, version, alias
                row.canary_version = row.canary_percent = None
            if spec.autoscale is not None or "replicas" in spec.model_fields_set or row.replicas is None:
                _set_scaling(row, spec.replicas, spec.autoscale)
            for option in ("on_violation", "capture_probabilities"):
                value = getattr(spec, option)
                if value is not None and value != getattr(row, option):
                    setattr(row, option, value)
                    action += f", {option} {value}"
            if spec.resources is not None and spec.resources.model_dump() != (row.resources or {"custom": {}}):
                row.resources = spec.resources.model_dump() if spec.resources.custom else None
                action += f", resources {spec.resources.text() or 'none'}"
            self._history(row, user, action, version, "canary" if spec.canary is not None else "stable")
            session.flush()
            session.expunge(row)
        self._apply(row, f"{full}/{version}")
        return Deployed(endpoint=self.get(project, spec.name), key=key)

    def update(self, user: str, project: str, name: str, patch: EndpointPatch) -> Deployed:
        """Change scaling, the canary's share or the key of a running endpoint, in place.

        The answer carries the new key when ``patch.rotate_key``; :class:`Conflict` for a
        canary share without a canary or a key for a public endpoint.
        """
        key = None
        with self.db.session() as session:
            row = self._row(session, project, name)
            changes = []
            if patch.replicas is not None or patch.autoscale is not None:
                changes.append(_set_scaling(row, patch.replicas, patch.autoscale))
            if patch.canary_percent is not None:
                if row.canary_version is None:
                    raise Conflict(f"endpoint {name!r} has no canary: deploy one with --canary PCT first",
                                   endpoint=name)
                row.canary_percent = patch.canary_percent
                changes.append(f"canary {row.model}/{row.canary_version} at {patch.canary_percent:g}%")
            for option in ("on_violation", "capture_probabilities"):
                value = getattr(patch, option)
                if value is not None:
                    setattr(row, option, value)
                    changes.append(f"{option} {value}")
            if patch.rotate_key:
                if row.public:
                    raise Conflict(f"endpoint {name!r} is public: it has no key to rotate", endpoint=name)
                key = secrets.token_urlsafe(24)
                row.key_hash = key_hash(key)
                changes.append("new key")
            self._history(row, user, "update: " + ", ".join(changes), row.version, "config")
            session.flush()
            session.expunge(row)
        self._apply(row, f"{row.model}/{row.version}")
        return Deployed(endpoint=self.get(project, name), key=key)

    def serving(self, model: str) -> dict[int, list[str]]:
        """Which endpoints serve each version of registered ``model``: ``{version: ["name", …]}``;
        a canary's version lists ``"name (canary)"``."""
        found: dict[int, list[str]] = {}
        with self.db.session() as session:
            for row in session.scalars(select(EndpointRow).where(EndpointRow.model == model)
                                       .order_by(EndpointRow.name)):
                found.setdefault(row.version, []).append(row.name)
                if row.canary_version is not None:
                    found.setdefault(row.canary_version, []).append(f"{row.name} (canary)")
        return found

    def promote(self, user: str, project: str, name: str) -> Endpoint:
        """End the canary: its version takes all traffic."""
        with self.db.session() as session:
            row = self._row(session, project, name)
            if row.canary_version is None:
                raise Conflict(f"endpoint {name!r} has no canary to promote", endpoint=name)
            row.version, row.alias = row.canary_version, None
            row.canary_version = row.canary_percent = None
            self._history(row, user, f"promote canary {row.model}/{row.version}", row.version, "stable")
            session.flush()
            session.expunge(row)
        self._apply(row, f"{row.model}/{row.version}")
        return self.get(project, name)

    def rollback(self, user: str, project: str, name: str) -> Endpoint:
        """Drop a running canary; without one, go back to the previous live version."""
        with self.db.session() as session:
            row = self._row(session, project, name)
            if row.canary_version is not None:
                dropped = row.canary_version
                row.canary_version = row.canary_percent = None
                self._history(row, user, f"roll back: drop canary {row.model}/{dropped}", row.version, "stable")
            else:
                earlier = [h["version"] for h in row.history if h.get("kind", "stable") == "stable"]
                previous = next((v for v in reversed(earlier) if v != row.version), None)
                if previous is None:
                    raise Conflict(f"endpoint {name!r} has served only version {row.version}: nothing to roll "
                                   "back to", endpoint=name)
                row.version, row.alias = previous, None
                self._history(row, user, f"roll back to {row.model}/{previous}", previous, "stable")
            session.flush()
            session.expunge(row)
        self._apply(row, f"{row.model}/{row.version}")
        return self.get(project, name)

    @staticmethod
    def _history(row: EndpointRow, user: str, action: str, version: int, kind: str) -> None:
        row.history = [*row.history, {"at": utcnow().isoformat(), "user": user, "action": action,
                                      "version": version, "kind": kind}]
        row.updated_at = utcnow()

    def _apply(self, row: EndpointRow, what: str) -> None:
        try:
            self._run(row)
        except Exception as exc:
            self._set_status(row.project, row.name, "FAILED")
            raise Unavailable(f"Ray Serve could not deploy {what}: {exc}"[:500], component="serve") from None
        self._set_status(row.project, row.name, "RUNNING")
        self._publish_limits()

    def _set_status(self, project: str, name: str, status: str) -> None:
        with self.db.session() as session:
            row = self._row(session, project, name)
            row.status = status

    def list(self, project: str) -> list[Endpoint]:
        with self.db.session() as session:
            rows = session.scalars(select(EndpointRow).where(EndpointRow.project == project)
                                   .order_by(EndpointRow.name)).all()
            return [self._out(r) for r in rows]

    def get(self, project: str, name: str) -> Endpoint:
        with self.db.session() as session:
            return self._out(self._row(session, project, name))

    def delete(self, project: str, name: str) -> None:
        from ray import serve

        with self.db.session() as session:
            row = self._row(session, project, name)
            with self._lock:
                serve.delete(app_name(project, name))
            session.delete(row)
        self._publish_limits()

    @staticmethod
    def _row(session, project: str, name: str) -> EndpointRow:
        row = session.scalar(select(EndpointRow).where(EndpointRow.project == project, EndpointRow.name == name))
        if row is None:
            raise NotFound(f"endpoint {name!r} does not exist in project {project!r}: `loopml endpoints list` "
                           "shows them", endpoint=name)
        return row

    def _out(self, row: EndpointRow) -> Endpoint:
        return Endpoint(project=row.project, name=row.name, model=row.model, version=row.version, alias=row.alias,
                        url=self.url(row.project, row.name), canary_version=row.canary_version,
                        canary_percent=row.canary_percent, public=row.public, replicas=row.replicas,
                        autoscale=None if row.max_replicas is None else Autoscale(min=row.replicas,
                                                                                  max=row.max_replicas),
                        resources=EndpointResources(**(row.resources or {})),
                        on_violation=row.on_violation or "pass",
                        capture_probabilities=True if row.capture_probabilities is None else row.capture_probabilities,
                        status=row.status,
                        created_at=row.created_at, updated_at=row.updated_at,
                        history=[HistoryEntry(**h) for h in row.history])


def _project_credentials(settings: Settings, project: str) -> dict[str, str] | None:
    """``MLFLOW_TRACKING_USERNAME``/``_PASSWORD`` of ``project``; None without MLflow auth."""
    if not mlflow_auth.in_use(settings):
        return None
    env = mlflow_auth.project_env(settings.home, settings.tracking_uri, project)
    return {name: env[name] for name in (mlflow_auth.USERNAME_VAR, mlflow_auth.PASSWORD_VAR)}
