"""The replica's capture buffer: batches, bounded memory, a down sink, nothing lost on close."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from loopml.serving.capture import CaptureBuffer


class Sink:
    """A fake platform capture route: ``up`` decides whether it accepts (202) or is down."""

    def __init__(self) -> None:
        self.up = True
        self.batches: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if not self.up:
            raise httpx.ConnectError("down", request=request)
        assert request.headers["authorization"] == "Bearer tok"
        self.batches.append(json.loads(request.content))
        return httpx.Response(202, json={"stored": len(self.batches[-1]["records"])})

    @property
    def ids(self) -> list[int]:
        return [r["i"] for b in self.batches for r in b["records"]]


def buffer(sink: Sink, **options) -> CaptureBuffer:
    return CaptureBuffer("http://platform/capture", "tok", transport=httpx.MockTransport(sink), **options)


def test_records_arrive_in_batches_in_order():
    async def scenario(sink):
        capture = buffer(sink, batch=10, interval_s=0.05)
        for i in range(25):
            capture.add({"i": i})
        await asyncio.sleep(0.3)
        await capture.close()
        return capture

    sink = Sink()
    capture = asyncio.run(scenario(sink))
    assert sink.ids == list(range(25)) and max(len(b["records"]) for b in sink.batches) == 10
    assert capture.sent_total == 25 and capture.dropped_total == 0


def test_a_down_sink_keeps_records_bounded_and_reports_the_dropped_count():
    async def scenario(sink):
        capture = buffer(sink, batch=5, interval_s=0.02, max_records=8)
        sink.up = False
        for i in range(20):
            capture.add({"i": i})
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.1)
        assert len(capture.queue) <= 8
        sink.up = True
        await asyncio.sleep(0.2)
        await capture.close()
        return capture

    sink = Sink()
    capture = asyncio.run(scenario(sink))
    assert sink.ids == list(range(12, 20))  # the newest 8 survive, in order
    assert capture.dropped_total == 12 and sink.batches[0]["dropped"] == 12
    assert sum(b["dropped"] for b in sink.batches) == 12  # reported once


class TokenSink(Sink):
    """A platform that takes only ``token`` (401 for any other) and refuses ``refused`` ids (403)."""

    def __init__(self, token: str, refused: frozenset[int] = frozenset()) -> None:
        super().__init__()
        self.token, self.refused = token, refused

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] != f"Bearer {self.token}":
            return httpx.Response(401, json={"message": "capture needs an endpoint's capture token"})
        records = json.loads(request.content)["records"]
        if any(r["i"] in self.refused for r in records):
            return httpx.Response(403, json={"message": "another endpoint's records"})
        self.batches.append(json.loads(request.content))
        return httpx.Response(202, json={"stored": len(records)})


def test_records_refused_for_a_stale_token_wait_for_the_new_one_and_other_refusals_are_dropped():
    """A platform restarted with per-endpoint tokens answers the old token 401: the records
    wait until reconfigure brings the new token (nothing lost); a 403 is final."""
    async def scenario(sink):
        capture = buffer(sink, batch=5, interval_s=0.02)
        for i in range(12):
            capture.add({"i": i})
        await asyncio.sleep(0.15)
        waiting = len(capture.queue)
        capture.configure("http://platform/capture", "new-token", 1.0)
        await asyncio.sleep(0.15)
        capture.add({"i": 99})
        await asyncio.sleep(0.15)
        await capture.close()
        return capture, waiting

    sink = TokenSink("new-token", refused=frozenset({99}))
    capture, waiting = asyncio.run(scenario(sink))
    assert waiting == 12 and sink.ids == list(range(12))
    assert capture.sent_total == 12 and capture.dropped_total == 1 and not capture.queue


def test_close_sends_what_is_queued():
    async def scenario(sink):
        capture = buffer(sink, batch=100, interval_s=60)
        for i in range(7):
            capture.add({"i": i})
        await capture.close()

    sink = Sink()
    asyncio.run(scenario(sink))
    assert sink.ids == list(range(7))


@pytest.mark.parametrize("sample, low, high", [(0.0, 0, 0), (0.5, 350, 650), (1.0, 1000, 1000)])
def test_sampling_keeps_its_share(sample, low, high):
    async def scenario(sink):
        capture = buffer(sink, sample=sample, batch=2000, interval_s=60, max_records=5000)
        for i in range(1000):
            capture.add({"i": i})
        kept = len(capture.queue)
        await capture.close()
        return kept

    assert low <= asyncio.run(scenario(Sink())) <= high


def test_adding_is_cheap(capsys):
    async def scenario(sink):
        import time

        capture = buffer(sink, interval_s=60, max_records=200_000)
        began = time.perf_counter()
        for i in range(100_000):
            capture.add({"i": i})
        took = (time.perf_counter() - began) / 100_000 * 1e6
        capture._task.cancel()
        return took

    with capsys.disabled():
        print(f"\n  capture add: {asyncio.run(scenario(Sink())):.2f} us per record")


def test_when_the_platform_moves_the_buffer_finds_its_published_address_and_loses_nothing():
    """The old address refuses connections; the published one (Ray's KV store in a replica) takes
    every record, in order, without a reconfigure."""
    moved, asked = Sink(), []

    def platform(request: httpx.Request) -> httpx.Response:
        if request.url.host == "platform":  # where the replica was deployed from: gone
            raise httpx.ConnectError("refused", request=request)
        return moved(request)

    def resolve() -> str:
        asked.append(1)
        return "http://platform-2:9000/capture"

    async def scenario():
        capture = CaptureBuffer("http://platform/capture", "tok", transport=httpx.MockTransport(platform),
                                batch=5, interval_s=0.02, resolve=resolve, resolve_s=0.05)
        for i in range(12):
            capture.add({"i": i})
        await asyncio.sleep(0.4)
        await capture.close()
        return capture

    capture = asyncio.run(scenario())
    assert capture.url == "http://platform-2:9000/capture"
    assert moved.ids == list(range(12)) and capture.dropped_total == 0
    assert len(asked) == 1  # asked once, on the first failure: no KV read while sends succeed
