"""The admission gate in Serve's proxy, driven as a plain ASGI app (no Serve)."""

from __future__ import annotations

import asyncio
import json

import pytest

from loopml.serving.admission import AdmissionGate, endpoint_key, middlewares


def run(coro):
    return asyncio.run(coro)


class Recorder:
    def __init__(self) -> None:
        self.messages: list[dict] = []

    async def __call__(self, message: dict) -> None:
        self.messages.append(message)

    @property
    def status(self) -> int:
        return self.messages[0]["status"]

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


def scope(path: str) -> dict:
    return {"type": "http", "path": path, "method": "POST", "headers": []}


async def receive() -> dict:
    return {"type": "http.request", "body": b"", "more_body": False}


def answering(status: int, body: bytes, content_type: bytes = b"application/json", release=None):
    async def app(scope, receive, send):
        if release is not None:
            await release.wait()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", content_type)]})
        await send({"type": "http.response.body", "body": body})
    return app


@pytest.mark.parametrize(("path", "key"), [
    ("/p/ep/invocations", "/p/ep"), ("/p/ep/v2/models/ep/infer", "/p/ep"), ("/p/ep", "/p/ep"),
    ("/-/healthz", None), ("/-/routes", None), ("/", None), ("/p", None), ("//ep/x", None),
])
def test_endpoint_key_is_the_project_and_endpoint_prefix(path, key):
    assert endpoint_key(path) == key


def test_requests_over_the_limit_are_refused_at_once_with_json_and_retry_after():
    async def scenario():
        release = asyncio.Event()
        gate = AdmissionGate(answering(200, b'{"predictions": [1]}', release=release), limit=2)
        held = [Recorder(), Recorder()]
        tasks = [asyncio.create_task(gate(scope("/p/ep/invocations"), receive, r)) for r in held]
        await asyncio.sleep(0)
        refused, other = Recorder(), Recorder()
        await gate(scope("/p/ep/invocations"), receive, refused)
        release_other = asyncio.create_task(gate(scope("/p/other/invocations"), receive, other))
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(*tasks, release_other)
        after = Recorder()
        await gate(scope("/p/ep/invocations"), receive, after)
        return gate, held, refused, other, after

    gate, held, refused, other, after = run(scenario())
    assert refused.status == 503 and refused.headers[b"retry-after"] == b"1"
    answer = json.loads(refused.body)
    assert answer["reason"] == "overloaded" and "/p/ep is at its limit of 2" in answer["message"]
    assert [r.status for r in held] == [200, 200] and other.status == 200 and after.status == 200
    assert gate.inflight == {}  # every slot was given back


def test_serves_own_routes_and_non_http_scopes_pass_through():
    gate = AdmissionGate(answering(200, b"ok", b"text/plain"), limit=1)
    gate.inflight["/-/healthz"] = 5
    health = Recorder()
    run(gate(scope("/-/healthz"), receive, health))
    assert health.status == 200 and health.body == b"ok"


def test_serves_plain_text_refusals_become_json_with_retry_after():
    text = b"Request dropped due to backpressure (num_queued_requests=4, max_queued_requests=4)."
    refused = Recorder()
    run(AdmissionGate(answering(503, text, b"text/plain; charset=utf-8"), limit=8)(scope("/p/ep/x"), receive, refused))
    assert refused.status == 503 and refused.headers[b"content-type"] == b"application/json"
    assert refused.headers[b"retry-after"] == b"1"
    assert json.loads(refused.body)["message"] == text.decode()


def test_model_errors_pass_through_unchanged():
    body = b'{"message": "the model failed", "reason": "model_error"}'
    failed = Recorder()
    run(AdmissionGate(answering(500, body), limit=8)(scope("/p/ep/x"), receive, failed))
    assert failed.status == 500 and failed.body == body


def test_the_limit_comes_from_the_environment_and_must_be_positive(monkeypatch):
    monkeypatch.setenv("LOOPML_SERVE_MAX_INFLIGHT", "3")
    assert middlewares()[0].kwargs == {"limit": 3}
    with pytest.raises(ValueError, match="at least 1"):
        AdmissionGate(answering(200, b""), limit=0)
