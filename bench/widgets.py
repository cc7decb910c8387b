"""Benchmark: does a notebook with a hundred live JobPanels run its cells any slower?

Starts a fake platform (a threaded ``http.server`` in a subprocess, answering the two routes a
JobPanel polls — the job, RUNNING and advancing a cell every 2 s, and its growing log — after
``--delay-ms`` of simulated work) and a real IPython kernel (``jupyter_client``), so widget
updates travel as comm messages as they do in JupyterLab. In that kernel, each round measures:

- ``0 panels``: the cell workload (``--calls`` × a small pure-Python computation) alone;
- ``100 JobPanels``: the same with ``--panels`` JobPanels polling every second (one shared
  client), after ``--warm`` seconds of polling;
- ``100 JobPanels, no duty cap``: the same with the poller's in-cell CPU cap lifted
  (duty 100% instead of ``poller.DUTY``), to show what the cap buys;

plus, from outside the kernel, the round trip of an empty cell (``execute_request`` → idle),
what a user feels when running any cell. After each configuration the panels are closed and
the kernel must have no poller thread left. Each round runs the three configurations back to
back (rotating which goes first), so a ratio compares runs seconds apart under the same load —
this bench runs on a shared 2-core machine; the table gives the median and range of the
per-round ratios. Target: 100 panels slow the workload by less than the noise (< 5%).
Prints the table and writes ``bench/results/widgets.md``.

Usage: ``python bench/widgets.py [--rounds 9] [--panels 100] [--calls 200] [--repeat 7] [--delay-ms 2]``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.manager import start_new_kernel

from loopml.jupyter_ext.poller import DUTY, IDLE_DUTY

RESULTS = Path(__file__).parent / "results" / "widgets.md"
PROJECT = "bench"

FAKE_PLATFORM = r'''
import json, socket, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DELAY = float(sys.argv[1]) / 1000
START = time.monotonic()
COUNTS = {"job": 0, "logs": 0}
LOCK = threading.Lock()


def job(job_id):
    done = min(int((time.monotonic() - START) / 2), 99)
    return {"id": job_id, "project": "bench", "user": "bench", "name": f"train-{job_id}.ipynb",
            "status": "RUNNING", "message": f"cell {done + 1} running", "attempt": 1,
            "progress": {"cells_done": done, "cells_total": 100}, "error": None, "node": "n1",
            "parameters": {"alpha": 0.5}, "resources": {"cpus": 1, "gpus": 0, "memory_mb": None, "custom": {}},
            "timeout_s": None, "max_retries": 0, "mlflow_run_id": None, "models": [], "trigger": "user",
            "parent_id": None, "schedule_id": None, "created_at": "2025-01-01T10:00:00Z",
            "started_at": "2025-01-01T10:00:01Z", "finished_at": None}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the platform's uvicorn

    def setup(self):
        super().setup()
        # headers and body go out in two writes: without this, Nagle + delayed ACK add ~40 ms
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, *args):
        pass

    def do_GET(self):
        time.sleep(DELAY)
        parts = self.path.split("?")[0].strip("/").split("/")
        if parts[-1] == "counts":
            self.answer(200, json.dumps(COUNTS))
        elif len(parts) == 6 and parts[4] == "jobs":  # api/v1/projects/<p>/jobs/<id>
            with LOCK:
                COUNTS["job"] += 1
            self.answer(200, json.dumps(job(parts[5])))
        elif len(parts) == 7 and parts[-1] == "logs":
            with LOCK:
                COUNTS["logs"] += 1
            lines = int((time.monotonic() - START) * 5)
            self.answer(200, "".join(f"[{i:06d}] epoch {i} loss {1 / (i + 1):.5f}\n"
                                     for i in range(max(0, lines - 200), lines)), "text/plain")
        else:
            self.answer(404, json.dumps({"message": f"no route {self.path}", "reason": "not_found"}))

    def answer(self, status, body, kind="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
'''

SETUP = """
import json, statistics, threading, time
from loopml.client import Client
from loopml.jupyter_ext import poller
from loopml.jupyter_ext.panels import JobPanel

CLIENT = Client({url!r}, "bench-token")
OPEN = []


def workload(calls={calls}):
    \"\"\"What a cell computes: {calls} x a small pure-Python computation (~1 ms each).\"\"\"
    total = 0
    for _ in range(calls):
        total += sum(i * i for i in range(25000))
    return total


def timed(repeat={repeat}):
    \"\"\"Median workload seconds, and the CPU the kernel's other threads (poller, IOPub…) used
    meanwhile, as a share of one core: process CPU time minus this (main) thread's.\"\"\"
    times = []
    wall, process, main = time.perf_counter(), time.process_time(), time.thread_time()
    for _ in range(repeat):
        start = time.perf_counter()
        workload()
        times.append(time.perf_counter() - start)
    background = (time.process_time() - process) - (time.thread_time() - main)
    print(json.dumps({{"seconds": statistics.median(times), "background_cpu": background / (time.perf_counter() - wall)}}))


def open_panels(count, duty, idle_duty):
    poller.POLLER.duty, poller.POLLER.idle_duty = duty, idle_duty
    OPEN.extend(JobPanel(f"j{{i}}", CLIENT, {project!r}, poll_s=1.0) for i in range(count))


def close_panels():
    polling = sum(p.polling for p in OPEN)
    errors = sorted({{p.error.value for p in OPEN if p.error.value}})
    for panel in OPEN:
        panel.close()
    OPEN.clear()
    stopped = poller.wait_stopped(30)
    leftover = [t.name for t in threading.enumerate() if t.name == poller.THREAD_NAME]
    poller.POLLER.duty, poller.POLLER.idle_duty = poller.DUTY, poller.IDLE_DUTY
    print(json.dumps({{"polling": polling, "errors": errors, "stopped": stopped, "leftover": leftover}}))
"""

# (label, panels (None: --panels), poller duty)
CONFIGS = [("0 panels", 0, DUTY), ("{n} JobPanels", None, DUTY), ("{n} JobPanels, no duty cap", None, 1.0)]


class Kernel:
    """A real IPython kernel driven over ZMQ by ``jupyter_client``."""

    def __init__(self) -> None:
        self.km, self.kc = start_new_kernel(kernel_name="python3")

    def run(self, code: str, timeout: float = 300) -> str:
        """Execute ``code``; the last line it printed. Raises with the traceback if the cell failed."""
        out: list[str] = []

        def hook(msg):
            if msg["msg_type"] == "stream":
                out.append(msg["content"]["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(msg["content"]["traceback"]))

        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=hook)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"cell failed:\n{''.join(out)}")
        lines = "".join(out).strip().splitlines()
        return lines[-1] if lines else ""

    def round_trip(self, count: int = 20) -> float:
        """Median seconds from an empty cell's execute_request to the kernel's idle status."""
        times = []
        for _ in range(count):
            start = time.perf_counter()
            msg_id = self.kc.execute("pass", store_history=False)
            while True:
                try:
                    msg = self.kc.get_iopub_msg(timeout=30)
                except queue.Empty:
                    raise RuntimeError("the kernel did not answer an empty cell within 30 s") from None
                if (msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status"
                        and msg["content"]["execution_state"] == "idle"):
                    break
            times.append(time.perf_counter() - start)
            self.kc.get_shell_msg(timeout=30)  # its execute_reply
        return statistics.median(times)

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


@dataclass
class Sample:
    workload_s: float
    round_trip_s: float
    polls_per_s: float
    background_cpu: float  # share of one core the kernel's other threads used while the workload ran
    idle_polls_per_s: float  # between cells


def measure(kernel: Kernel, url: str, panels: int, duty: float, idle_duty: float, warm: float) -> Sample:
    """Open ``panels`` JobPanels (poller duty ``duty``), let them poll ``warm`` s, time the workload
    and an empty cell's round trip, close them: every panel must have polled without error, and
    no poller thread may be left."""
    kernel.run(f"open_panels({panels}, {duty}, {idle_duty})")
    time.sleep(warm / 2 if panels else 0)
    before, started = json.loads(_get(url + "/counts"))["job"], time.monotonic()
    time.sleep(warm / 2 if panels else 0)
    idle_polls_per_s = (json.loads(_get(url + "/counts"))["job"] - before) / (time.monotonic() - started)
    before, started = json.loads(_get(url + "/counts"))["job"], time.monotonic()
    timed = json.loads(kernel.run("timed()"))
    polls_per_s = (json.loads(_get(url + "/counts"))["job"] - before) / (time.monotonic() - started)
    round_trip_s = kernel.round_trip()
    closed = json.loads(kernel.run("close_panels()"))
    if closed["leftover"] or not closed["stopped"]:
        raise SystemExit(f"a poller thread outlived the panels: {closed}")
    if closed["errors"] or closed["polling"] != panels:
        raise SystemExit(f"panels not polling, or in error: {closed}")
    return Sample(timed["seconds"], round_trip_s, polls_per_s, timed["background_cpu"], idle_polls_per_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--panels", type=int, default=100)
    parser.add_argument("--calls", type=int, default=200, help="computations per workload")
    parser.add_argument("--repeat", type=int, default=7, help="workloads timed per measurement (median)")
    parser.add_argument("--warm", type=float, default=2.0, help="seconds of polling before timing")
    parser.add_argument("--delay-ms", type=float, default=2.0, help="simulated platform work per request")
    parser.add_argument("--idle-duty", type=float, default=IDLE_DUTY, help="the poller's CPU cap between cells")
    args = parser.parse_args()

    fake = subprocess.Popen([sys.executable, "-c", FAKE_PLATFORM, str(args.delay_ms)], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    kernel = None
    try:
        url = f"http://127.0.0.1:{int(fake.stdout.readline())}"
        kernel = Kernel()
        kernel.run(SETUP.format(url=url, calls=args.calls, repeat=args.repeat, project=PROJECT))
        kernel.run("workload(); timed(1)")  # warm-up: imports, first allocations
        names = [label.format(n=args.panels) for label, _, _ in CONFIGS]
        samples: dict[str, list[Sample]] = {name: [] for name in names}
        load = [os.getloadavg()[0]]
        for round_no in range(args.rounds):
            order = list(zip(names, CONFIGS, strict=True))
            order = order[round_no % 3:] + order[:round_no % 3]  # rotate: no config always runs first
            for name, (_, panels, duty) in order:
                samples[name].append(measure(kernel, url, args.panels if panels is None else panels, duty,
                                             args.idle_duty, args.warm))
            print(f"round {round_no + 1}/{args.rounds}: " + ", ".join(
                f"{n} {samples[n][-1].workload_s * 1000:.0f} ms" for n in names), flush=True)
        load.append(os.getloadavg()[0])
        text = report(names, samples, load, args)
        print(text)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(text)
        print(f"wrote {RESULTS}")
    finally:
        if kernel is not None:
            kernel.close()
        fake.terminate()
        fake.wait(10)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return answer.read().decode()


def _ratios(samples: list[Sample], base: list[Sample], field: str) -> tuple[float, float, float]:
    """Median, lowest and highest of the per-round ratios to the baseline (rounds are paired:
    both ran within seconds, under the same machine load)."""
    ratios = sorted(getattr(s, field) / getattr(b, field) for s, b in zip(samples, base, strict=True))
    return statistics.median(ratios), ratios[0], ratios[-1]


def report(names: list[str], samples: dict[str, list[Sample]], load: list[float], args) -> str:
    base = samples[names[0]]
    rows = []
    for name in names:
        work, trip = _ratios(samples[name], base, "workload_s"), _ratios(samples[name], base, "round_trip_s")
        rows.append(
            f"| {name} | {statistics.median(s.workload_s for s in samples[name]) * 1000:.0f} | "
            f"{work[0]:.3f}x ({work[1]:.2f}–{work[2]:.2f}) | "
            f"{statistics.median(s.round_trip_s for s in samples[name]) * 1000:.1f} | {trip[0]:.2f}x | "
            f"{statistics.median(s.polls_per_s for s in samples[name]):.1f} | "
            f"{statistics.median(s.idle_polls_per_s for s in samples[name]):.1f} | "
            f"{statistics.median(s.background_cpu for s in samples[name]) * 100:.1f}% |")
    capped = _ratios(samples[names[1]], base, "workload_s")[0]
    return "\n".join([
        "# Widgets benchmark",
        "",
        f"`python bench/widgets.py --rounds {args.rounds} --panels {args.panels} --calls {args.calls} "
        f"--repeat {args.repeat} --delay-ms {args.delay_ms:g} --idle-duty {args.idle_duty:g}` on {os.cpu_count()} cores (load average "
        f"{load[0]:.1f} → {load[1]:.1f}: the machine was shared), in a real IPython kernel (jupyter_client). "
        f"JobPanels poll every 1 s a fake platform in another process (job RUNNING, a cell every 2 s, and its "
        f"growing log; {args.delay_ms:g} ms per request). Workload: {args.calls} × a ~1 ms pure-Python "
        "computation, median of the repeats; ratios: median (range) of the per-round ratios to the "
        "0-panel run of the same round; configurations interleaved.",
        "",
        "| configuration | workload ms | vs 0 panels | empty cell round trip ms | vs 0 panels "
        "| job polls/s in the cell | between cells | kernel background CPU in the cell |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        f"**{args.panels} open JobPanels: cell workload {capped:.3f}x the time with none "
        f"({(capped - 1) * 100:+.1f}%)**; target: not measurable (< 5%). While a cell runs the poller keeps to "
        f"{DUTY:.0%} of one core's CPU time (its duty cap); between cells it refreshes on time. "
        "Every configuration ended with all panels closed and no poller thread left in the kernel.",
        "",
        "Without the cap, the poller refreshes every panel as often as it can (two requests each) and takes "
        "that much more of the GIL from the cell; with it, the panels' refresh interval stretches during the "
        "cell instead "
        f"(job polls/s column: each of the {args.panels} panels refreshes every ~{args.panels}/polls s).",
        "",
        "The empty-cell round trip is what any cell pays: with the panels refreshing on time between cells, "
        "their widget updates (status, progress, log tail: a few comm messages per refresh) share the IOPub "
        "channel with the cell's own messages, which costs milliseconds per cell, not a share of its run time. "
        "A ratio below 1 is noise: the machine is shared, and single rounds vary by tens of percent.",
        "",
        "Kernel background CPU: the CPU time the kernel's threads other than the one running the cell "
        "(the poller, ipykernel's IOPub thread sending the widget updates, the heartbeat) used while the "
        "workload ran, as a share of one core. It is the mechanism behind the ratios, and unlike wall-clock "
        "ratios it barely depends on what else the machine runs.",
        "",
    ])


if __name__ == "__main__":
    main()
