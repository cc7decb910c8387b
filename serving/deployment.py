"""The Ray Serve deployment behind every endpoint: one application per endpoint.

A replica loads one registered model version (``user_config``); changing the version
goes through :meth:`ModelEndpoint.reconfigure` inside the live replica, so a rollout
swaps the model without restarting anything. Each request is authenticated (bearer key,
compared by hash, unless the endpoint is public), parsed and validated by
:mod:`loopml.serving.protocols` before the model sees it, and answered with the version
that served it and a request id in the headers. Every refusal is a JSON 4xx.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import shutil
import tempfile
import uuid
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from loopml.serving.errors import RequestError
from loopml.serving.protocols import parse_invocation, parse_v2_infer
from loopml.serving.responses import dumps_json, format_invocation_response, format_v2_response, v2_metadata

log = logging.getLogger(__name__)

VERSION_HEADER = "x-loopml-model-version"
REQUEST_ID_HEADER = "x-request-id"
JSON = "application/json"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _json_error(status: int, message: str, reason: str, headers: dict[str, str]) -> Response:
    return Response(dumps_json({"message": message, "reason": reason}), status_code=status, media_type=JSON,
                    headers=headers)


@serve.deployment(name="model", ray_actor_options={"num_cpus": 0.25}, max_ongoing_requests=16,
                  health_check_period_s=5, graceful_shutdown_timeout_s=5)
class ModelEndpoint:
    """Serves one model version on ``/<project>/<endpoint>`` in both protocols."""

    def __init__(self) -> None:
        self.model = None
        self.config: dict[str, Any] = {}
        self.signature = None
        self._model_dir: str | None = None

    def reconfigure(self, config: dict[str, Any]) -> None:
        """Load ``config["model_uri"]`` (a ``models:/<name>/<version>`` URI) and start serving it.

        ``config`` also holds ``tracking_uri``, ``endpoint``, ``prefix``, ``version``,
        ``key_hash`` (``None`` when public) and ``max_bytes``. The old model keeps serving
        until the new one is loaded.
        """
        import mlflow

        mlflow.set_tracking_uri(config["tracking_uri"])
        mlflow.set_registry_uri(config["tracking_uri"])
        folder = tempfile.mkdtemp(prefix="loopml-model-")
        model = mlflow.pyfunc.load_model(config["model_uri"], dst_path=folder)
        old_dir = self._model_dir
        self.model, self.signature, self.config, self._model_dir = model, model.metadata.signature, config, folder
        if old_dir:
            shutil.rmtree(old_dir, ignore_errors=True)
        log.info("serving %s", config["model_uri"])

    def _headers(self, request: Request) -> dict[str, str]:
        given = request.headers.get(REQUEST_ID_HEADER, "")
        return {VERSION_HEADER: str(self.config.get("version")),
                REQUEST_ID_HEADER: given if _REQUEST_ID.match(given) else uuid.uuid4().hex}

    def _authorized(self, request: Request) -> bool:
        expected = self.config.get("key_hash")
        if not expected:
            return True
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(key_hash(key.strip()), expected)

    async def __call__(self, request: Request) -> Response:
        headers = self._headers(request)
        path = request.url.path
        prefix = self.config.get("prefix", "")
        route = path[len(prefix):] if path.startswith(prefix) else path
        name = self.config.get("endpoint", "")
        if route in ("/v2/health/live", "/v2/health/ready"):
            return Response(b"{}", media_type=JSON, headers=headers)
        if not self._authorized(request):
            return _json_error(401, "missing or wrong endpoint key: send 'Authorization: Bearer <key>' with the "
                                    "key `loopml deploy` printed", "unauthorized", headers)
        try:
            if route == "/invocations" and request.method == "POST":
                body = await request.body()
                parsed = parse_invocation(body, request.headers.get("content-type"), self.signature,
                                          max_bytes=self.config.get("max_bytes", 10 << 20))
                return Response(format_invocation_response(self._predict(parsed)), media_type=JSON, headers=headers)
            if route == f"/v2/models/{name}/infer" and request.method == "POST":
                body = await request.body()
                parsed = parse_v2_infer(body, request.headers.get("content-type"), self.signature,
                                        max_bytes=self.config.get("max_bytes", 10 << 20))
                answer = format_v2_response(name, str(self.config.get("version")), parsed.request_id,
                                            self._predict(parsed))
                return Response(answer, media_type=JSON, headers=headers)
            if route in (f"/v2/models/{name}", f"/v2/models/{name}/versions/{self.config.get('version')}") \
                    and request.method == "GET":
                return Response(dumps_json(v2_metadata(name, str(self.config.get("version")), self.signature)),
                                media_type=JSON, headers=headers)
        except RequestError as exc:
            return _json_error(exc.details.get("status", 400), exc.message, exc.reason, headers)
        except _ModelRefused as exc:
            return _json_error(422, str(exc), "model_refused", headers)
        except Exception:
            log.exception("model %s failed on request %s", self.config.get("model_uri"), headers[REQUEST_ID_HEADER])
            return _json_error(500, f"the model failed on this request (request id {headers[REQUEST_ID_HEADER]})",
                               "model_error", headers)
        return _json_error(404, f"no route {request.method} {route}: use POST /invocations, POST "
                                f"/v2/models/{name}/infer or GET /v2/models/{name}", "not_found", headers)

    def _predict(self, parsed):
        from mlflow.exceptions import MlflowException

        try:
            return self.model.predict(parsed.to_frame(), params=parsed.params or None)
        except MlflowException as exc:  # schema enforcement: the request, not the model, is wrong
            raise _ModelRefused(f"the model refused the input: {exc.message.splitlines()[0][:300]}") from None

    def __del__(self) -> None:
        if self._model_dir and os.path.isdir(self._model_dir):
            shutil.rmtree(self._model_dir, ignore_errors=True)


class _ModelRefused(Exception):
    pass
