"""The admission gate in Serve's proxy, driven as a plain ASGI app (no Serve)."""

from __future__ import annotations

import asyncio
import json

import pytest

from loopml.serving.admission import Admission, AdmissionGate, _admission, endpoint_key, middlewares, published_limits
from loopml.serving.keys import KEY_MESSAGE, key_hash
from loopml.serving.service import admission_limit


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


def scope(path: str, authorization: bytes | None = None) -> dict:
    headers = [] if authorization is None else [(b"authorization", authorization)]
    return {"type": "http", "path": path, "method": "POST", "headers": headers}


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
    assert middlewares()[0].kwargs == {"limit": 3, "limits": published_limits}
    with pytest.raises(ValueError, match="at least 1"):
        AdmissionGate(answering(200, b""), limit=0)


async def hold(gate: AdmissionGate, path: str, count: int) -> list[asyncio.Task]:
    tasks = [asyncio.create_task(gate(scope(path), receive, Recorder())) for _ in range(count)]
    await asyncio.sleep(0)
    return tasks


def test_an_endpoint_gets_the_limit_the_platform_published_and_others_the_default():
    calls = []

    def source() -> dict[str, Admission]:
        calls.append(1)
        return {"/p/big": Admission(3)}

    async def scenario():
        release = asyncio.Event()
        gate = AdmissionGate(answering(200, b"{}", release=release), limit=1, limits=source, refresh_s=60)
        first = Recorder()
        release.set()
        await gate(scope("/p/small/x"), receive, first)  # reads the limits, in a thread
        for _ in range(100):
            if gate.limits:
                break
            await asyncio.sleep(0.01)
        release.clear()
        held = await hold(gate, "/p/big/x", 3) + await hold(gate, "/p/small/x", 1)
        big, small = Recorder(), Recorder()
        await gate(scope("/p/big/x"), receive, big)
        await gate(scope("/p/small/x"), receive, small)
        release.set()
        await asyncio.gather(*held)
        return first, big, small

    first, big, small = run(scenario())
    assert first.status == 200 and calls == [1]  # read once within refresh_s
    assert big.status == 503 and "/p/big is at its limit of 3" in json.loads(big.body)["message"]
    assert small.status == 503 and "/p/small is at its limit of 1" in json.loads(small.body)["message"]


def test_limits_that_cannot_be_read_leave_the_last_ones_in_force(caplog):
    calls = []

    def source() -> dict[str, Admission]:
        calls.append(1)
        if len(calls) > 1:
            raise ConnectionError("the GCS did not answer")
        return {"/p/ep": Admission(5)}

    async def scenario():
        gate = AdmissionGate(answering(200, b"{}"), limit=1, limits=source, refresh_s=0)
        for _ in range(2):
            await gate(scope("/p/ep/x"), receive, Recorder())
            await asyncio.sleep(0.05)
        return gate

    assert run(scenario()).limits == {"/p/ep": Admission(5)} and len(calls) == 2
    assert "admission limits not refreshed: the GCS did not answer" in caplog.text


@pytest.mark.parametrize(("replicas", "limit"), [(1, 8), (2, 12), (4, 20)])
def test_each_replica_past_the_first_adds_what_a_replica_holds(replicas, limit):
    assert admission_limit(8, replicas) == limit


KEY = "the-endpoint-key"


def keyed_gate(app, table: dict[str, Admission], *, limit: int = 1, refresh_s: float = 60, recheck_s: float = 0.0):
    """A gate that has read ``table`` (a dict the test may change: the platform publishing)."""
    reads = []

    def source() -> dict[str, Admission]:
        reads.append(dict(table))
        return dict(table)

    gate = AdmissionGate(app, limit=limit, limits=source, refresh_s=refresh_s, recheck_s=recheck_s)
    return gate, reads


async def first_read(gate: AdmissionGate) -> None:
    gate._refresh()
    for _ in range(200):
        if gate.limits:
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the gate never read its table")


@pytest.mark.parametrize("authorization", [None, b"Bearer wrong", b"Basic " + KEY.encode(), b"Bearer \xe9",
                                           b"Bearer \xc3\xa9", b""],
                         ids=["none", "wrong", "not-bearer", "latin-1", "utf-8", "empty"])
def test_a_keyed_endpoint_without_its_key_is_refused_401_and_never_counted(authorization):
    """Requests without the key never hold a slot: with the one slot held by a keyed caller,
    keyless ones get the replica's own 401 answer, not 503, and the keyed caller's next
    request still gets in once the slot is free."""
    async def scenario():
        release = asyncio.Event()
        gate, _ = keyed_gate(answering(200, b"{}", release=release), {"/p/ep": Admission(1, key_hash(KEY))})
        await first_read(gate)
        holder = asyncio.create_task(gate(scope("/p/ep/invocations", b"Bearer " + KEY.encode()), receive, Recorder()))
        await asyncio.sleep(0)
        refused = [Recorder() for _ in range(5)]
        for recorder in refused:
            await gate(scope("/p/ep/invocations", authorization), receive, recorder)
        counted = dict(gate.inflight)
        release.set()
        await holder
        after = Recorder()
        await gate(scope("/p/ep/invocations", b"bearer  " + KEY.encode() + b" "), receive, after)
        return refused, counted, after, gate

    refused, counted, after, gate = run(scenario())
    for recorder in refused:
        assert recorder.status == 401 and b"retry-after" not in recorder.headers
        assert len(recorder.headers[b"x-request-id"]) == 32  # Serve's proxy adds it to forwarded answers only
        assert json.loads(recorder.body) == {"message": KEY_MESSAGE, "reason": "unauthorized"}
    assert counted == {"/p/ep": 1} and after.status == 200 and gate.inflight == {}


def test_public_endpoints_unknown_endpoints_and_health_routes_need_no_key_at_the_gate():
    async def scenario():
        gate, _ = keyed_gate(answering(200, b"{}"), {"/p/public": Admission(4), "/p/ep": Admission(4, key_hash(KEY))},
                             limit=4)
        await first_read(gate)
        answers = {}
        for path in ("/p/public/invocations", "/p/new/invocations", "/p/ep/v2/health/ready", "/p/ep/v2/health/live"):
            answers[path] = Recorder()
            await gate(scope(path), receive, answers[path])
        return answers

    assert {path: r.status for path, r in run(scenario()).items()} == dict.fromkeys(
        ["/p/public/invocations", "/p/new/invocations", "/p/ep/v2/health/ready", "/p/ep/v2/health/live"], 200)


def test_a_key_rotated_since_the_last_read_is_admitted_at_once_and_the_old_one_refused():
    """The platform publishes the new key's hash after the replicas have it; the gate's table
    is older than the request with the new key, so the gate reads it again before refusing."""
    async def scenario():
        table = {"/p/ep": Admission(4, key_hash("old-key"))}
        gate, reads = keyed_gate(answering(200, b"{}"), table, limit=4, recheck_s=0.05)
        await first_read(gate)
        table["/p/ep"] = Admission(4, key_hash(KEY))  # rotated
        new, old = Recorder(), Recorder()
        await gate(scope("/p/ep/x", b"Bearer " + KEY.encode()), receive, new)
        await gate(scope("/p/ep/x", b"Bearer old-key"), receive, old)
        return new, old, reads

    new, old, reads = run(scenario())
    assert new.status == 200 and old.status == 401 and len(reads) == 3  # first read, one per request refused at first


def test_many_keyless_requests_share_the_table_reads_they_wait_for():
    async def scenario():
        gate, reads = keyed_gate(answering(200, b"{}"), {"/p/ep": Admission(4, key_hash(KEY))}, recheck_s=0.2)
        await first_read(gate)
        refused = [Recorder() for _ in range(50)]
        await asyncio.gather(*(gate(scope("/p/ep/x"), receive, r) for r in refused))
        return refused, reads, gate

    refused, reads, gate = run(scenario())
    # the first read, then one for all 50 (and one more for those that arrived after it began)
    assert {r.status for r in refused} == {401} and 2 <= len(reads) <= 3 and gate.inflight == {}


def test_the_published_table_carries_limits_and_key_hashes_and_reads_an_older_one():
    assert _admission({"limit": 3, "key_hash": "ab"}) == Admission(3, "ab")
    assert _admission({"limit": 3, "key_hash": None}) == Admission(3, None)
    assert _admission(5) == Admission(5, None)  # a platform before key hashes published limits only


def test_the_gates_401_carries_the_callers_request_id():
    async def scenario():
        gate, _ = keyed_gate(answering(200, b"{}"), {"/p/ep": Admission(4, key_hash(KEY))})
        await first_read(gate)
        mine, odd = Recorder(), Recorder()
        await gate({**scope("/p/ep/x"), "headers": [(b"x-request-id", b"my-id.1")]}, receive, mine)
        await gate({**scope("/p/ep/x"), "headers": [(b"x-request-id", b"no spaces")]}, receive, odd)
        return mine, odd

    mine, odd = run(scenario())
    assert mine.status == 401 and mine.headers[b"x-request-id"] == b"my-id.1"
    assert odd.status == 401 and len(odd.headers[b"x-request-id"]) == 32
