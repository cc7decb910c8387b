"""The Ray Serve deployment behind every endpoint: one application per endpoint.

A replica loads one registered model version (``user_config``); changing the version
goes through :meth:`ModelEndpoint.reconfigure` inside the live replica, so a rollout
swaps the model without restarting anything. Each request is authenticated (bearer key,
compared by hash, unless the endpoint is public), parsed and validated by
:mod:`loopml.serving.protocols` before the model sees it, and answered with the version
that served it and a request id in the headers. Every refusal is a JSON 4xx.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import random
import re
import shutil
import tempfile
import time
import uuid
import warnings
from typing import Any

import numpy as np
import ray
from ray import serve
from ray.serve.config import BackpressureConfig
from starlette.requests import Request
from starlette.responses import Response

from loopml.registry.contract import DataContract
from loopml.serving.capture import CaptureBuffer, published_sink
from loopml.serving.contract import (
    CONTRACT_REASON,
    VIOLATIONS_HEADER,
    Violation,
    check,
    header_value,
    refusal_message,
    schema_violation,
)
from loopml.serving.errors import RequestError
from loopml.serving.keys import HEALTH_ROUTES, KEY_MESSAGE, KEY_REASON, key_matches
from loopml.serving.limits import MAX_ONGOING_REQUESTS, MAX_QUEUED_REQUESTS, RETRY_AFTER_S
from loopml.serving.loading import Loaded, ModelRefused, ModelUnavailable, SandboxOptions, load
from loopml.serving.protocols import parse_invocation, parse_v2_infer
from loopml.serving.replica_config import CaptureConfig, ReplicaConfig
from loopml.serving.responses import dumps_json, format_invocation_response, format_v2_response, v2_metadata

log = logging.getLogger(__name__)

VERSION_HEADER = "x-loopml-model-version"
REQUEST_ID_HEADER = "x-request-id"
JSON = "application/json"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def _json_error(status: int, message: str, reason: str, headers: dict[str, str]) -> Response:
    return Response(dumps_json({"message": message, "reason": reason}), status_code=status, media_type=JSON,
                    headers=headers)


def bind_replica_to_node() -> None:
    """Make this replica's servers listen on the node's address, the one Serve's controller
    hands HAProxy as the replica's target (and nothing else):

    - its inter-deployment gRPC server, which Serve binds to ``[::]:0`` with no setting
      (``ss -ltnp`` showed ``ray::ServeReplica`` on ``*:<port>``);
    - its direct-ingress HTTP server (behind HAProxy), which Serve binds to the one HTTP host
      of every node (``serve_host``): on a worker node with an address of its own, HAProxy
      would find nothing there.

    Serve starts both after the deployment's constructor, which calls this; it looks the two
    helpers up by name at that moment."""
    from ray.serve._private import replica

    if getattr(replica.add_port_to_grpc_server, "loopml_bound", False):
        return
    node = ray.util.get_node_ip_address()
    grpc_server, http_server = replica.add_port_to_grpc_server, replica.start_asgi_http_server

    def grpc_bound(server, address: str):
        host = f"[{node}]" if ":" in node else node
        return grpc_server(server, f"{host}:0" if address == "[::]:0" else address)

    def http_bound(app, http_options, **kwargs):
        return http_server(app, http_options.model_copy(update={"host": node}), **kwargs)

    grpc_bound.loopml_bound = True
    replica.add_port_to_grpc_server, replica.start_asgi_http_server = grpc_bound, http_bound


@serve.deployment(name="model", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=MAX_ONGOING_REQUESTS,
                  max_queued_requests=MAX_QUEUED_REQUESTS,
                  backpressure_config=BackpressureConfig(status_code=503, retry_after_s=RETRY_AFTER_S),
                  health_check_period_s=5, graceful_shutdown_timeout_s=5)
class ModelEndpoint:
    """Serves one model version on ``/<project>/<endpoint>`` in both protocols.

    Overload: the admission gate in Serve's proxy (:mod:`loopml.serving.admission`) lets at
    most ``serve_max_inflight`` requests per endpoint through and refuses the rest at once
    (JSON 503 with ``Retry-After``). Behind it, each replica holds at most
    :data:`MAX_ONGOING_REQUESTS` and Serve keeps at most :data:`MAX_QUEUED_REQUESTS` waiting
    for a replica (per proxy and deployment), refusing beyond with 503 and ``Retry-After``
    (the gate rewrites Serve's plain-text body as JSON). A one-row request costs ~0.35 ms in
    the replica, so 4 + 4 adds a few ms at most; 1 + 1 left the replica idle while the next
    request crossed from the proxy (bench/overload.py: 198 admitted vs 722 with 4 + 4).
    """

    def __init__(self) -> None:
        bind_replica_to_node()
        self.models: dict[str, Loaded] = {}  # model URI -> loaded model
        self.config: ReplicaConfig  # set by reconfigure, which Serve calls before the first request
        self._dirs: dict[str, str] = {}
        self.capture: CaptureBuffer | None = None
        self.contract: DataContract | None = None  # the stable version's, with its overrides
        # The fast path hands scikit-learn a bare array in the signature's column order.
        warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve the :class:`~loopml.serving.replica_config.ReplicaConfig` ``user_config``
        holds: its ``model_uri`` (and its canary's for a share of requests).

        Models already loaded are kept; the old ones keep serving until the new ones are
        loaded, then the switch is one assignment. Loading (a download, seconds) runs in a
        thread: with HAProxy the replica runs its requests on its own event loop
        (``RAY_SERVE_THROUGHPUT_OPTIMIZED``), which must keep answering meanwhile.
        """
        await asyncio.to_thread(self._reconfigure, user_config)

    def _reconfigure(self, user_config: dict[str, Any]) -> None:
        import mlflow

        config = ReplicaConfig.model_validate(user_config)
        mlflow.set_tracking_uri(config.tracking_uri)
        mlflow.set_registry_uri(config.tracking_uri)
        if config.mlflow_auth:  # this replica's project's MLflow user (the model host never gets it)
            os.environ.update(config.mlflow_auth)
        wanted = [config.model_uri] + ([config.canary.model_uri] if config.canary else [])
        models = {uri: self.models[uri] for uri in wanted if uri in self.models}
        for uri in wanted:
            if uri not in models:
                folder = self._dirs.get(uri) or tempfile.mkdtemp(prefix="loopml-model-")
                models[uri] = load(uri, folder, SandboxOptions(config.sandbox.isolation, tuple(config.sandbox.hide)))
                self._dirs[uri] = folder
        dropped = [model for uri, model in self.models.items() if uri not in models]
        self.models, self.config = models, config
        self._configure_capture(config.capture)
        self._configure_contract(config.contract)
        for model in dropped:
            model.close()  # a sandboxed model's process ends
        for uri in [u for u in self._dirs if u not in models]:
            shutil.rmtree(self._dirs.pop(uri), ignore_errors=True)
        log.info("serving %s", ", ".join(wanted))

    def _configure_capture(self, capture: CaptureConfig | None) -> None:
        """``capture`` ``None`` turns capture off (records still queued are sent)."""
        if capture is None:
            if self.capture is not None:
                self.capture.sample = 0.0
        elif self.capture is None:
            self.capture = CaptureBuffer(capture.url, capture.token, sample=capture.sample, resolve=published_sink)
        else:
            self.capture.configure(capture.url, capture.token, capture.sample)

    def _configure_contract(self, contract: dict[str, Any] | None) -> None:
        """A contract equal to the one in force is kept, with the checkers compiled for it."""
        if contract is None:
            self.contract = None
        elif self.contract is None or self.contract.model_dump(mode="json") != contract:
            self.contract = DataContract.model_validate(contract)

    def _check(self, parsed, headers: dict[str, str]) -> list[Violation] | None:
        """The request's value violations; under ``on_violation = header`` also named in the
        ``x-loopml-violations`` header (the caller refuses them under ``refuse``)."""
        violations = check(self.contract, parsed)
        if not violations:
            return None
        if self.config.on_violation == "header":
            headers[VIOLATIONS_HEADER] = header_value(violations)
        return violations

    def _pick(self) -> tuple[Loaded, int]:
        """The model (and version) that answers this request: the canary for its share."""
        canary = self.config.canary
        if canary and random.random() * 100 < canary.percent:
            return self.models[canary.model_uri], canary.version
        return self.models[self.config.model_uri], self.config.version

    @staticmethod
    def _request_id(request: Request) -> str:
        """The request's id: the caller's ``x-request-id`` or the one Serve's ingress generated
        (Serve also puts it on the answer). An id the capture table cannot hold is replaced."""
        given = request.headers.get(REQUEST_ID_HEADER, "")
        return given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex

    def _authorized(self, request: Request) -> bool:
        return key_matches(request.headers.get("authorization", ""), self.config.key_hash)

    async def __call__(self, request: Request) -> Response:
        began = time.perf_counter()
        model, version = self._pick()
        request_id = self._request_id(request)
        headers = {VERSION_HEADER: str(version)}
        path, prefix = request.url.path, self.config.prefix
        route = path[len(prefix):] if path.startswith(prefix) else path
        name = self.config.endpoint
        if route in HEALTH_ROUTES:
            return Response(b"{}", media_type=JSON, headers=headers)
        if not self._authorized(request):
            return _json_error(401, KEY_MESSAGE, KEY_REASON, headers)
        if request.method == "GET" and route in (f"/v2/models/{name}", f"/v2/models/{name}/versions/{version}"):
            return Response(dumps_json(v2_metadata(name, str(version), model.signature)), media_type=JSON,
                            headers=headers)
        if request.method != "POST" or route not in ("/invocations", f"/v2/models/{name}/infer"):
            return _json_error(404, f"no route {request.method} {route}: use POST /invocations, POST "
                                    f"/v2/models/{name}/infer or GET /v2/models/{name}", "not_found", headers)
        parsed = predictions = probabilities = violations = None
        try:
            parsed = await self._parse(request, route, model.signature)
            if self.contract is not None:
                violations = self._check(parsed, headers)
                if violations and self.config.on_violation == "refuse":  # 422 naming each feature and rule
                    raise RequestError(refusal_message(violations), status=422, reason=CONTRACT_REASON)
            if self.capture is not None and self.config.capture_probabilities:
                predictions, probabilities = model.predict_with_probabilities(parsed)
            else:
                predictions = model.predict(parsed)
            if route == "/invocations":
                body = format_invocation_response(predictions)
            else:
                body = format_v2_response(name, str(version), parsed.request_id, predictions)
            response = Response(body, media_type=JSON, headers=headers)
        except RequestError as exc:
            response = _json_error(exc.details.get("status", 400), exc.message, exc.reason, headers)
            if violations is None:  # the parser's refusal: a schema violation, always refused
                found = schema_violation(exc, self.contract)
                violations = [found] if found is not None else None
        except ModelRefused as exc:
            response = _json_error(422, str(exc), "model_refused", headers)
        except ModelUnavailable as exc:
            response = _json_error(503, str(exc), "model_restarting", {**headers, "retry-after": str(RETRY_AFTER_S)})
        except Exception:
            log.exception("model %s failed on request %s", self.config.model_uri, request_id)
            response = _json_error(500, f"the model failed on this request (request id {request_id})",
                                   "model_error", headers)
        if self.capture is not None:
            self.capture.add(capture_record(self.config, request_id, version, response.status_code,
                                            began, parsed, predictions, probabilities=probabilities,
                                            violations=[v.record() for v in violations] if violations else None))
        return response

    async def _parse(self, request: Request, route: str, signature):
        """The request's validated input; :class:`RequestError` for anything wrong with it."""
        max_bytes = self.config.max_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:  # refused before the body is read
            raise RequestError(f"the body has {declared} bytes, over this endpoint's limit of {max_bytes}; "
                               "send fewer rows per request", status=413, reason="too_large")
        parse = parse_invocation if route == "/invocations" else parse_v2_infer
        return parse(await request.body(), request.headers.get("content-type"), signature, max_bytes=max_bytes)

    async def __del__(self) -> None:
        """Graceful shutdown: send the captured records still queued, then drop the model files."""
        if self.capture is not None:
            await self.capture.close()
        for model in self.models.values():
            model.close()
        for folder in self._dirs.values():
            shutil.rmtree(folder, ignore_errors=True)


def capture_record(config: ReplicaConfig, request_id: str, version: int, status: int, began: float,
                   parsed, predictions, *, probabilities: list[list[float]] | None = None,
                   violations: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The capture record of one scoring request, as the JSON of a :class:`~loopml.capture_wire.CaptureRecord`
    (features, predictions and class probabilities as JSON values, data-contract violations as
    ``[{"feature", "kind", "rows"}]``). Built unvalidated, to stay cheap on the request path: the
    platform validates the batch."""
    features = None
    if parsed is not None:
        data = parsed.data
        rows = data.tolist() if isinstance(data, np.ndarray) else data.to_numpy().tolist()
        columns = list(parsed.columns) if parsed.columns else (
            [str(c) for c in data.columns] if hasattr(data, "columns") else None)
        features = {"columns": columns, "data": rows}
    return {"project": config.project, "endpoint": config.endpoint, "request_id": request_id,
            "version": version, "at": dt.datetime.now(dt.timezone.utc).isoformat(), "status": status,
            "latency_ms": round((time.perf_counter() - began) * 1000, 3), "features": features,
            "prediction": predictions if isinstance(predictions, list) else None,
            "probabilities": probabilities, "violations": violations or None}
