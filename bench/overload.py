"""Benchmark: one endpoint driven at 3x its capacity, beside the same endpoint unloaded.

Starts a platform of its own (``loopml up --no-hub`` in a temp dir), registers and deploys the
wine model exactly as ``bench/serving.py`` does, then, in one run and one client (a lean asyncio HTTP/1.1
async, one-row ``/invocations`` requests):

1. unloaded: ``--requests`` sequential requests on one keep-alive connection: p50, p99;
2. capacity: a closed loop of ``max_ongoing_requests + max_queued_requests`` connections for
   ``--capacity-seconds``: answers/s; then one of as many as the endpoint admits at once
   (``serve_max_inflight``): busy, not overloaded, so any refusal there is counted as a fault;
3. overload: an open loop at ``--factor`` (3) times that rate for ``--seconds``: each request
   is sent on schedule whatever the answers do, on a connection of its own when the
   keep-alive ones are busy. Admitted requests (200): p50, p99; refused ones (503/429):
   their share, p50, p99, and whether each carried ``Retry-After``; anything else counts as
   an error, no answer within ``--timeout`` as hung.

Target: admitted p99 under overload <= 2x the unloaded p99. The client shares the machine
with the platform, so the run also prints how far behind schedule the client sent requests
and its CPU per request: a client that cannot keep up measures itself.

The load functions (:func:`closed_loop`, :func:`open_loop`) import nothing from the
platform, so ``tests/reliability/test_overload.py`` drives its endpoint with them too.

Usage: ``python bench/overload.py [--requests 300] [--seconds 8] [--factor 3] [--keep]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np

RESULTS = Path(__file__).parent / "results" / "overload.md"
TARGET_RATIO = 2.0
REFUSED = (429, 503)


@dataclass
class Answer:
    """One request of a load run. ``status`` 0: no answer within the client's deadline, or a
    transport error (``error`` names it)."""

    request_id: str
    status: int
    latency_s: float
    late_s: float = 0.0  # how far behind its schedule the request was sent (open loop)
    retry_after: str | None = None
    content_type: str = ""
    body: bytes = b""
    error: str = ""


class _Connections:
    """A lean HTTP/1.1 client for load: keep-alive connections to one ``url``, requests written
    as prepared bytes and answers parsed by hand. httpx spends ~5-7 ms of CPU per request,
    which on a 2-core machine made the client, not the endpoint, the bottleneck."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port or 80
        lines = [f"POST {parts.path or '/'} HTTP/1.1", f"Host: {parts.netloc}", "Content-Type: application/json",
                 *(f"{k}: {v}" for k, v in headers.items())]
        self.head = "\r\n".join(lines).encode()
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.opened: list[asyncio.StreamWriter] = []

    async def post(self, body: bytes, request_id: str) -> tuple[int, dict[str, str], bytes]:
        """(status, lower-cased headers, body) of one POST; raises OSError or IncompleteReadError."""
        if self.idle:
            reader, writer = self.idle.pop()
        else:
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.opened.append(writer)
        writer.write(self.head + f"\r\nx-request-id: {request_id}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        headers = {}
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            content = await reader.readexactly(int(headers["content-length"]))
        else:  # chunked
            content = b""
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                content += (await reader.readexactly(size + 2))[:-2]
            await reader.readuntil(b"\r\n")
        if headers.get("connection", "").lower() == "close":
            writer.close()
        else:
            self.idle.append((reader, writer))
        return status, headers, content

    def close(self) -> None:
        for writer in self.opened:
            writer.close()


async def _send(http: _Connections, body: bytes, request_id: str, timeout: float, late_s: float = 0.0) -> Answer:
    began = time.perf_counter()
    try:
        status, headers, content = await asyncio.wait_for(http.post(body, request_id), timeout)
    except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError, ValueError) as exc:
        return Answer(request_id, 0, time.perf_counter() - began, late_s, error=type(exc).__name__)
    return Answer(request_id, status, time.perf_counter() - began, late_s, headers.get("retry-after"),
                  headers.get("content-type", ""), content)


@contextlib.contextmanager
def no_gc_pauses():
    """The client's garbage collector off while it sends: with tens of thousands of answers
    and tasks alive, one full collection stalled the client ~200 ms (every request it had in
    flight then looked that much slower, and it fell that far behind its schedule)."""
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


async def closed_loop(url: str, headers: dict[str, str], body: bytes, *, connections: int, seconds: float = 0,
                      requests: int = 0, tag: str = "closed", timeout: float = 15) -> tuple[list[Answer], float]:
    """``connections`` keep-alive connections, each sending its next request when the last one is
    answered, for ``seconds`` (or ``requests`` in all); returns (answers, wall seconds)."""
    answers: list[Answer] = []
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    async def worker() -> None:
        http = _Connections(url, headers)  # one connection per worker
        try:
            while True:
                number = next(counter)
                if (requests and number >= requests) or (not requests and time.perf_counter() >= deadline):
                    return
                answers.append(await _send(http, body, f"{tag}-{number}", timeout))
        finally:
            http.close()

    with no_gc_pauses():
        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return answers, time.perf_counter() - began


async def open_loop(url: str, headers: dict[str, str], body: bytes, *, rate: float, seconds: float,
                    tag: str = "open", timeout: float = 15) -> list[Answer]:
    """Send ``rate`` requests a second for ``seconds`` on a fixed schedule, never waiting for an
    answer before the next send (a new connection when every open one is busy); returns every
    request's answer (in send order)."""
    count = int(rate * seconds)
    http = _Connections(url, headers)
    try:
        with no_gc_pauses():
            began = time.perf_counter()
            tasks = []
            for number in range(count):
                due = began + number / rate
                pause = due - time.perf_counter()
                if pause > 0:
                    await asyncio.sleep(pause)
                late = max(0.0, time.perf_counter() - due)
                tasks.append(asyncio.create_task(_send(http, body, f"{tag}-{number}", timeout, late)))
            return list(await asyncio.gather(*tasks))
    finally:
        http.close()


def ms(latencies: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(latencies) * 1000, q)) if latencies else float("nan")


@dataclass
class Figures:
    unloaded_p50: float
    unloaded_p99: float
    capacity_rps: float
    rate: float
    sent: int
    admitted: int
    refused: int
    refused_without_retry_after: int
    errors: int
    hung: int
    admitted_p50: float
    admitted_p99: float
    refused_p50: float
    refused_p99: float
    late_p99_ms: float
    client_cpu_us: float
    refusal: str
    closed_non200: dict[int, int]  # closed loops at capacity: connections -> answers other than 200

    @property
    def ratio(self) -> float:
        return self.admitted_p99 / self.unloaded_p99


async def measure(url: str, headers: dict[str, str], body: bytes, bound: int, inflight: int,
                  args: argparse.Namespace) -> Figures:
    await closed_loop(url, headers, body, connections=1, requests=args.warmup, tag="warmup")
    unloaded, _ = await closed_loop(url, headers, body, connections=1, requests=args.requests, tag="unloaded")
    served, wall = await closed_loop(url, headers, body, connections=bound, seconds=args.capacity_seconds,
                                     tag="capacity")
    capacity = sum(a.status == 200 for a in served) / wall
    closed_non200 = {bound: sum(a.status != 200 for a in served)}
    # as many callers as the endpoint admits at once: busy, not overloaded (no refusal expected)
    full, _ = await closed_loop(url, headers, body, connections=inflight, seconds=args.capacity_seconds,
                                tag="inflight")
    closed_non200[inflight] = sum(a.status != 200 for a in full)
    rate = args.factor * capacity
    print(f"unloaded p50 {ms([a.latency_s for a in unloaded], 50):.1f} ms, capacity {capacity:.0f}/s "
          f"({bound} connections); overload at {rate:.0f}/s for {args.seconds:g} s")
    await asyncio.sleep(1)  # let the capacity run's last answers drain
    cpu = time.process_time()
    answers = await open_loop(url, headers, body, rate=rate, seconds=args.seconds, tag="overload",
                              timeout=args.timeout)
    cpu = time.process_time() - cpu
    admitted = [a for a in answers if a.status == 200]
    refused = [a for a in answers if a.status in REFUSED]
    sample = refused[0] if refused else None
    refusal = ("none" if sample is None else
               f"{sample.status}, Retry-After: {sample.retry_after}, Content-Type: {sample.content_type}, "
               f"body {sample.body[:200]!r}")
    return Figures(
        ms([a.latency_s for a in unloaded], 50), ms([a.latency_s for a in unloaded], 99), capacity, rate,
        len(answers), len(admitted), len(refused), sum(a.retry_after is None for a in refused),
        sum(a.status not in (0, 200, *REFUSED) for a in answers), sum(a.status == 0 for a in answers),
        ms([a.latency_s for a in admitted], 50), ms([a.latency_s for a in admitted], 99),
        ms([a.latency_s for a in refused], 50), ms([a.latency_s for a in refused], 99),
        ms([a.late_s for a in answers], 99), cpu / max(len(answers), 1) * 1e6, refusal, closed_non200)


def report(f: Figures, args: argparse.Namespace, limits: str, took: float) -> str:
    met = f.ratio <= TARGET_RATIO
    lines = [
        "# Overload benchmark",
        "",
        f"`python bench/overload.py --requests {args.requests} --seconds {args.seconds:g} --factor {args.factor:g}`; "
        f"wine model, one-row `/invocations`, one replica; {limits}.",
        "",
        "| phase | requests | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
        f"| unloaded, 1 connection | {args.requests} | {f.unloaded_p50:.1f} | {f.unloaded_p99:.1f} |",
        f"| overload {f.rate:.0f}/s ({args.factor:g}x {f.capacity_rps:.0f}/s): admitted | {f.admitted} | "
        f"{f.admitted_p50:.1f} | {f.admitted_p99:.1f} |",
        f"| overload: refused | {f.refused} ({f.refused / max(f.sent, 1):.0%}) | {f.refused_p50:.1f} | "
        f"{f.refused_p99:.1f} |",
        "",
        f"admitted p99 / unloaded p99 = **{f.ratio:.2f}x** (target <= {TARGET_RATIO:g}x: {'met' if met else 'NOT MET'})",
        "",
        f"sent {f.sent}; refused without Retry-After {f.refused_without_retry_after}; other errors {f.errors}; "
        f"no answer within {args.timeout:g} s {f.hung}; client sent p99 {f.late_p99_ms:.1f} ms behind schedule, "
        f"{f.client_cpu_us:.0f} µs client CPU per request.",
        "",
        f"a refusal: {f.refusal}",
        "",
        "closed loops at capacity, answers other than 200: "
        + ", ".join(f"{n} connections {count}" for n, count in f.closed_non200.items()) + " (target: 0)",
        "",
        f"The whole run took {took:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    from _platform import stop_platform  # bench/ is on sys.path

    from loopml.serving.deployment import ModelEndpoint
    from loopml.serving.limits import MAX_ONGOING_REQUESTS, OVERLOAD_HOLD_S, OVERLOAD_INFLIGHT
    from loopml.settings import Settings
    from serving import dataframe_split, serve_wine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300, help="timed unloaded requests")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up requests")
    parser.add_argument("--capacity-seconds", type=float, default=4, help="length of the closed-loop capacity run")
    parser.add_argument("--seconds", type=float, default=8, help="length of the open-loop overload")
    parser.add_argument("--factor", type=float, default=3, help="overload rate as a multiple of the capacity")
    parser.add_argument("--timeout", type=float, default=15, help="client deadline per request, seconds")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (platform home and logs)")
    args = parser.parse_args()

    bound = ModelEndpoint.max_ongoing_requests + ModelEndpoint.max_queued_requests
    inflight = Settings.model_fields["serve_max_inflight"].default
    limits = (f"HAProxy ingress: maxconn {MAX_ONGOING_REQUESTS} and maxqueue {inflight - MAX_ONGOING_REQUESTS} per "
              f"replica (serve_max_inflight {inflight}), {OVERLOAD_INFLIGHT} in flight per replica for {OVERLOAD_HOLD_S} s "
              f"after the queue overflowed; the replica's max_ongoing_requests {ModelEndpoint.max_ongoing_requests}")
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="loopml-bench-overload-"))
    home = work / "home"
    try:
        deployed, X, model, _, _ = serve_wine(home)
        url = deployed.endpoint.url + "/invocations"
        body = dataframe_split(list(X.columns))(X.iloc[0].tolist())
        check = httpx.post(url, content=body, headers={"Authorization": f"Bearer {deployed.key}",
                                                       "content-type": "application/json"}, timeout=30)
        expected = model.predict(X.iloc[:1]).tolist()
        if check.status_code != 200 or json.loads(check.content)["predictions"] != expected:
            raise SystemExit(f"the endpoint answered {check.status_code} {check.text[:300]}, expected {expected}")
        figures = asyncio.run(measure(url, {"Authorization": f"Bearer {deployed.key}"}, body, bound, inflight, args))
    finally:
        if home.exists():
            stop_platform(home)
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    text = report(figures, args, limits, time.monotonic() - began)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
