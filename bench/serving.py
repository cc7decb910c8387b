"""Benchmark: a loopml endpoint vs. ``mlflow models serve``, MLServer and a bare uvicorn app.

Starts a platform of its own (``loopml up --no-hub`` in a temp dir), registers one
scikit-learn model (StandardScaler + LogisticRegression on the wine data, 13 features) with
``loopml.log_model``, deploys it, and serves the SAME registered version, one-row requests,
from five targets that all run before any measurement and are measured one at a time:

- ``loopml /invocations``: the endpoint, MLflow scoring protocol (``dataframe_split``);
- ``loopml v2 infer``: the same endpoint, Open Inference Protocol v2 (FP64 tensor [1, 13]);
- ``mlflow models serve``: ``-m models:/<project>.wine/1 --env-manager local``, ``dataframe_split``;
- ``MLServer``: its scikit-learn runtime, as shipped (default settings), v2 infer; it runs from
  a virtualenv of its own, ``bench/.venvs/mlserver`` (created on the first run, then reused),
  with the platform's scikit-learn version, on the model dumped with joblib;
- ``limit``: uvicorn + a tiny Starlette app that parses ``{"data": [[...]]}`` and calls
  ``model.predict`` on the same joblib file (one worker, no access log);
- ``loopml sandboxed ...``: the same model logged with ``serialization_format="pickle"`` (a
  format that can run code) on an endpoint of its own, so the replica calls it in the
  sandboxed model host (:mod:`loopml.serving.model_host`), both protocols: what the sandbox
  costs per request, next to the in-process rows.

Before timing, every target must answer the local model's predictions for a few rows.
Each target then gets ``--warmup`` requests, ``--requests`` timed ones on one keep-alive
connection (p50, p99, rps@1), and ``--seconds`` of load from 8 threads with one keep-alive
``http.client`` connection each (rps@8). Every answer must be 200; others count as errors.
The load generator shares the 2 cores with the servers, so it is kept cheap: ``http.client``
costs 3-4x less client CPU per request than ``httpx`` (the table shows its cost per request).

Then both loopml protocols are measured with the endpoint's class-probability capture off
(``capture_probabilities = false``, rows ``..., probabilities off``) and on again (``...,
probabilities on``), in turn for each round, and the same with every check of the version's
data contract off (``feature.check=off`` overrides) and on: each pair side by side, so that the
box's drift over the run hits both sides of the ratio. Last, the platform service alone is restarted with
``capture_sample = 0`` (the same replicas behind the same HAProxy, reconfigured) and both
loopml protocols are measured again (rows ``..., capture off``).

Targets, for each loopml protocol: p50 <= 1.0x MLServer and <= 1.5x the limit;
rps@8 >= 1.0x MLServer and >= 2x ``mlflow models serve``, with 0 errors; rps@8 with capture on
>= 0.9x capture off; rps@8 with probabilities captured >= 0.95x not captured, and with the
contract checked >= 0.95x unchecked. The sandboxed rows report their cost
over the in-process ones (ms per request added to p50, ratio of rps@8).
Prints the table and the ratios, writes ``bench/results/serving.md``.

Usage: ``python bench/serving.py [--requests 500] [--warmup 50] [--seconds 10] [--rounds 1] [--keep]
[--only-loopml]``; on a busy machine ``--rounds 3`` measures every target in turn three times and
reports medians; ``--only-loopml`` measures the four loopml rows alone (no peers: quick, and no
MLServer virtualenv to build).
"""

from __future__ import annotations

import argparse
import dataclasses
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil
from _platform import VENV_BIN, platform_env, platform_pids, state_records, stop_platform  # bench/ is on sys.path

from loopml.launcher import free_port_block

BENCH = Path(__file__).parent
RESULTS = BENCH / "results" / "serving.md"
MLSERVER_VENV = BENCH / ".venvs" / "mlserver"
PROJECT, MODEL, ENDPOINT = "bench", "wine", "wine"
# the same model saved with pickle: a format that can run code, served through the sandboxed model host
PICKLED_MODEL, SANDBOXED_ENDPOINT = "wine-pickle", "wine-sandboxed"
CHECK_ROWS = (0, 70, 150)  # one row of each wine class
TIMED_ROW = 0
CONNECTIONS = 8

LIMIT_APP = '''\
"""The limit: parse the JSON body to numpy, call predict, answer JSON. Nothing else."""
import json
import warnings

import joblib
import numpy as np
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

warnings.filterwarnings("ignore")  # "X does not have valid feature names": numpy input on purpose
model = joblib.load("model.joblib")


async def predict(request):
    rows = np.asarray(json.loads(await request.body())["data"], dtype=np.float64)
    return Response(json.dumps({"predictions": model.predict(rows).tolist()}), media_type="application/json")


async def ping(request):
    return Response(b"{}", media_type="application/json")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/ping", ping)])
'''


# -- processes -----------------------------------------------------------------------------


@dataclass
class Server:
    """A server process this bench started, with its log file."""

    name: str
    proc: subprocess.Popen
    log: Path

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def start_server(name: str, argv: list[str], env: dict[str, str], cwd: Path, logs: Path) -> Server:
    """Start ``argv`` in its own session, stdout and stderr to ``logs/<name>.log``."""
    log = logs / f"{name.replace(' ', '-')}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    return Server(name, proc, log)


def stop_server(server: Server, timeout: float = 15) -> None:
    """SIGTERM the server and every process under it (by PID), SIGKILL what is left after ``timeout``."""
    try:
        procs = [psutil.Process(server.proc.pid)]
        procs += procs[0].children(recursive=True)
    except psutil.NoSuchProcess:
        procs = []
    for proc in procs:
        try:
            proc.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    for proc in alive:
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    server.proc.wait(5)


def wait_ready(server: Server, port: int, path: str, timeout: float = 180) -> None:
    """Poll ``GET http://127.0.0.1:<port><path>`` until it answers 200; fail with the log's tail."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise SystemExit(f"{server.name} exited with {server.proc.returncode}:\n{server.tail()}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                conn.close()
                return
            conn.close()
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{server.name} was not ready within {timeout:.0f} s:\n{server.tail()}")


# -- platform, model, endpoint ----------------------------------------------------------


def start_platform(home: Path) -> tuple[dict[str, Any], str]:
    """``loopml up --no-hub`` in ``home`` with ports of its own; returns (client.json, MLflow URL)."""
    base = free_port_block(12)
    home.mkdir(parents=True)
    (home / "config.toml").write_text(
        f"port = {base}\nmlflow_port = {base + 1}\nray_dashboard_port = {base + 2}\nray_port = {base + 3}\n"
        f"serve_port = {base + 11}\n")
    started = subprocess.run([str(VENV_BIN / "loopml"), "up", "--no-hub", "--data-dir", str(home)],
                             env=platform_env(home), capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        raise SystemExit(f"loopml up failed:\n{started.stdout}\n{started.stderr}")
    return json.loads((home / "client.json").read_text()), f"http://127.0.0.1:{base + 1}"


def register_model(mlflow_url: str, home: Path):
    """Train the wine model and register it with ``loopml.log_model`` as the project's MLflow
    user (as a workspace would); returns (X, model, model URI)."""
    import mlflow
    from sklearn.datasets import load_wine
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import loopml
    from loopml.registry.mlflow_auth import project_env

    os.environ.update({**project_env(home, mlflow_url, PROJECT), "LOOPML_PROJECT": PROJECT,
                       "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"})
    X, y = load_wine(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    version = loopml.log_model(model, MODEL, X, y, metrics={"accuracy": model.score(X, y)})
    mlflow.end_run()
    return X, model, version.model_uri


def create_project(client_config: dict[str, Any]) -> None:
    from loopml.client import Client

    with Client(client_config["url"], client_config["token"]) as client:
        client.create_project(PROJECT)


def deploy(client_config: dict[str, Any]):
    """Deploy ``wine@champion`` to endpoint ``wine`` (admins may use every project); returns ``Deployed``."""
    from loopml.client import Client

    with Client(client_config["url"], client_config["token"]) as client:
        return client.deploy(PROJECT, f"{MODEL}@champion", ENDPOINT, replicas=1)


def serve_sandboxed(home: Path, X, model):
    """The same model logged with pickle (after :func:`register_model`) and deployed at
    ``wine-sandboxed``: its replica calls it in the sandboxed model host. Returns ``Deployed``."""
    import mlflow

    import loopml
    from loopml.client import Client

    loopml.log_model(model, PICKLED_MODEL, X, serialization_format="pickle")
    mlflow.end_run()
    client_config = json.loads((home / "client.json").read_text())
    with Client(client_config["url"], client_config["token"]) as client:
        return client.deploy(PROJECT, f"{PICKLED_MODEL}@champion", SANDBOXED_ENDPOINT, replicas=1)


# -- the other servers -----------------------------------------------------------------


def start_mlflow_serve(model_uri: str, mlflow_url: str, port: int, work: Path, logs: Path) -> Server:
    env = {**platform_env(work), "MLFLOW_TRACKING_URI": mlflow_url,
           **{k: v for k, v in os.environ.items() if k.startswith("MLFLOW_TRACKING_")}}
    argv = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
            "-h", "127.0.0.1", "-p", str(port)]
    return start_server("mlflow models serve", argv, env, work, logs)


def dump_model(model_uri: str, folder: Path) -> Path:
    """The registered version, loaded with ``mlflow.sklearn``, dumped to ``folder/model.joblib``."""
    import joblib
    import mlflow.sklearn

    folder.mkdir(parents=True)
    target = folder / "model.joblib"
    joblib.dump(mlflow.sklearn.load_model(model_uri), target)
    return target


def sklearn_version() -> str:
    import sklearn

    return sklearn.__version__


def mlserver_venv() -> Path:
    """``bench/.venvs/mlserver`` with mlserver, mlserver-sklearn, this scikit-learn and uvloop < 0.22.

    Created on the first run, reused while it has what it needs. uvloop 0.22 breaks MLServer
    1.7.1's parallel inference workers (SeldonIO/MLServer#2286), so it is held back.
    """
    python = MLSERVER_VENV / "bin" / "python"
    wanted = sklearn_version()
    if (MLSERVER_VENV / "bin" / "mlserver").exists():
        probe = "import sklearn, uvloop; print(sklearn.__version__, uvloop.__version__)"
        found = subprocess.run([str(python), "-c", probe], capture_output=True, text=True).stdout.split()
        if found and found[0] == wanted and tuple(int(n) for n in found[1].split(".")[:2]) < (0, 22):
            return MLSERVER_VENV
        print(f"MLServer's venv has scikit-learn, uvloop = {found or '?'}, wanted {wanted}, < 0.22: reinstalling them")
    else:
        print(f"creating {MLSERVER_VENV} (mlserver, mlserver-sklearn, scikit-learn=={wanted}), once")
        MLSERVER_VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(MLSERVER_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "-q", "mlserver", "mlserver-sklearn", "uvloop<0.22"]
    pinned = subprocess.run([*pip, f"scikit-learn=={wanted}"], capture_output=True, text=True)
    if pinned.returncode != 0:
        print(f"!!! MLServer does not install with scikit-learn=={wanted}; trying its own pick "
              f"(the joblib file may not load):\n{pinned.stderr[-2000:]}")
        subprocess.run(pip, check=True)
    return MLSERVER_VENV


def start_mlserver(model_file: Path, http_port: int, logs: Path) -> Server:
    """MLServer with default settings, bound to 127.0.0.1: HTTP on ``http_port``, gRPC and metrics on the next two."""
    venv = mlserver_venv()
    folder = model_file.parent
    grpc_port, metrics_port = http_port + 1, http_port + 2
    (folder / "settings.json").write_text(json.dumps({
        "host": "127.0.0.1", "http_port": http_port, "grpc_port": grpc_port, "metrics_port": metrics_port}))
    (folder / "model-settings.json").write_text(json.dumps({
        "name": ENDPOINT, "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": f"./{model_file.name}"}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSERVER", "LOOPML_", "MLFLOW_"))}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    argv = [str(venv / "bin" / "mlserver"), "start", str(folder)]
    return start_server("MLServer", argv, env, folder, logs)


def start_limit(model_file: Path, port: int, logs: Path) -> Server:
    """The bare uvicorn + Starlette app next to ``model_file``, one worker, no access log."""
    folder = model_file.parent
    (folder / "app.py").write_text(LIMIT_APP)
    argv = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1", "--port", str(port),
            "--workers", "1", "--no-access-log", "--log-level", "warning"]
    return start_server("limit", argv, platform_env(folder), folder, logs)


# -- targets and load ------------------------------------------------------------------


@dataclass
class Target:
    """One way to ask for a prediction: where, what body for a row, how to read the answer."""

    name: str
    port: int
    path: str
    body: Callable[[list[float]], bytes]
    predictions: Callable[[dict], list]
    headers: dict[str, str] = field(default_factory=dict)

    def post(self, conn: http.client.HTTPConnection, body: bytes) -> tuple[int, bytes]:
        conn.request("POST", self.path, body, {"Content-Type": "application/json", **self.headers})
        answer = conn.getresponse()
        return answer.status, answer.read()

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def send(self, conn: http.client.HTTPConnection, body: bytes) -> tuple[http.client.HTTPConnection, bool]:
        """POST ``body``; (the connection to use next, whether the answer was a 200). A failed
        connection counts as an error and is replaced."""
        try:
            return conn, self.post(conn, body)[0] == 200
        except (OSError, http.client.HTTPException):
            conn.close()
            return self.connect(), False


def dataframe_split(columns: list[str]) -> Callable[[list[float]], bytes]:
    return lambda row: json.dumps({"dataframe_split": {"columns": columns, "data": [row]}}).encode()


def v2_infer(row: list[float]) -> bytes:
    return json.dumps({"inputs": [{"name": "input", "shape": [1, len(row)], "datatype": "FP64",
                                   "data": [row]}]}).encode()


def limit_body(row: list[float]) -> bytes:
    return json.dumps({"data": [row]}).encode()


def mlflow_predictions(answer: dict) -> list:
    return answer["predictions"]


def v2_predictions(answer: dict) -> list:
    return answer["outputs"][0]["data"]


def check_predictions(targets: list[Target], X, model) -> bool:
    """Ask every target for ``CHECK_ROWS`` one at a time; True when all answer the local model's predictions."""
    expected = [int(p) for p in model.predict(X.iloc[list(CHECK_ROWS)])]
    same = True
    for target in targets:
        conn = target.connect()
        got = []
        for index in CHECK_ROWS:
            status, body = target.post(conn, target.body(X.iloc[index].tolist()))
            if status != 200:
                raise SystemExit(f"{target.name} answered {status}: {body[:500]!r}")
            got.append(target.predictions(json.loads(body))[0])
        conn.close()
        if got != expected:
            same = False
            print(f"!!! MISMATCH: {target.name} predicts {got} for rows {list(CHECK_ROWS)}, the model {expected}")
    if same:
        print(f"all targets predict {expected} for rows {list(CHECK_ROWS)}")
    return same


@dataclass
class Result:
    target: str
    p50_ms: float
    p99_ms: float
    rps1: float
    rps8: float
    errors: int
    client_cpu_us: float  # client CPU per request during the 8-connection run


def one_connection(target: Target, body: bytes, warmup: int, requests: int) -> tuple[list[float], float, int]:
    """``warmup`` then ``requests`` sequential requests on one keep-alive connection: (latencies s, wall s, errors)."""
    conn = target.connect()
    errors = 0
    for _ in range(warmup):
        conn, ok = target.send(conn, body)
        errors += not ok
    latencies = []
    start = time.perf_counter()
    for _ in range(requests):
        sent = time.perf_counter()
        conn, ok = target.send(conn, body)
        latencies.append(time.perf_counter() - sent)
        errors += not ok
    wall = time.perf_counter() - start
    conn.close()
    return latencies, wall, errors


def many_connections(target: Target, body: bytes, seconds: float) -> tuple[int, int, float, float]:
    """``CONNECTIONS`` threads, one keep-alive connection each, for ``seconds``: (ok, errors, wall s, client CPU s)."""
    ok, errors = [0] * CONNECTIONS, [0] * CONNECTIONS
    ready = threading.Barrier(CONNECTIONS + 1)
    stop = threading.Event()

    def worker(slot: int) -> None:
        conn = target.connect()
        ready.wait()
        while not stop.is_set():
            conn, answered = target.send(conn, body)
            if answered:
                ok[slot] += 1
            else:
                errors[slot] += 1
        conn.close()

    threads = [threading.Thread(target=worker, args=(slot,)) for slot in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    ready.wait()
    start, cpu = time.perf_counter(), time.process_time()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(ok), sum(errors), time.perf_counter() - start, time.process_time() - cpu


def median_result(rounds: list[Result]) -> Result:
    """One result from several rounds of the same target: medians, and the errors of all rounds."""
    def median(values) -> float:
        return float(np.median(list(values)))

    return Result(rounds[0].target, median(r.p50_ms for r in rounds), median(r.p99_ms for r in rounds),
                  median(r.rps1 for r in rounds), median(r.rps8 for r in rounds), sum(r.errors for r in rounds),
                  median(r.client_cpu_us for r in rounds))


def measure(target: Target, row: list[float], args: argparse.Namespace) -> Result:
    body = target.body(row)
    latencies, wall, errors = one_connection(target, body, args.warmup, args.requests)
    many_connections(target, body, 1.0)  # warms the 8 connections' path; not counted
    ok, errors8, wall8, cpu8 = many_connections(target, body, args.seconds)
    ms = np.asarray(latencies) * 1000
    result = Result(target.name, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), args.requests / wall,
                    ok / wall8, errors + errors8, cpu8 / max(ok + errors8, 1) * 1e6)
    print(f"  {result.target:<22} p50 {result.p50_ms:6.2f} ms  p99 {result.p99_ms:6.2f} ms  "
          f"rps@1 {result.rps1:7.1f}  rps@8 {result.rps8:7.1f}  errors {result.errors}")
    return result


# -- report ----------------------------------------------------------------------------


def sandbox_costs(results: dict[str, Result]) -> list[tuple[str, float, float, float]]:
    """(protocol, ms added to p50, ms added to p99, rps@8 ratio) of the sandboxed model host over in-process."""
    rows = []
    for protocol in ("/invocations", "v2 infer"):
        inside, hosted = results[f"loopml {protocol}"], results[f"loopml sandboxed {protocol}"]
        rows.append((protocol, hosted.p50_ms - inside.p50_ms, hosted.p99_ms - inside.p99_ms,
                     hosted.rps8 / inside.rps8 if inside.rps8 else float("inf")))
    return rows


def goals(results: dict[str, Result]) -> list[tuple[str, float, str, bool]]:
    """(what, ratio, goal, met) for each loopml protocol: capture's cost always, the peers' ratios
    unless ``--only-loopml``."""
    rows = []
    for name in CAPTURED:
        for suffix, what, goal in ((CAPTURE_OFF, "capture", 0.9), (PROBABILITIES_OFF, "probabilities", 0.95),
                                   (CONTRACT_OFF, "contract", 0.95)):
            off = results.get(name + suffix)
            on = results.get(name + suffix.replace(" off", " on"), results[name])  # measured beside it
            if off is not None and off.rps8:
                ratio = on.rps8 / off.rps8
                rows.append((f"{name}: rps@8 {what} on / off", ratio, f">= {goal}x", ratio >= goal))
    if "MLServer" not in results:
        return rows
    mlserver, mlflow_serve, limit = results["MLServer"], results["mlflow models serve"], results["limit"]
    for name in CAPTURED:
        mine = results[name]
        p50_mlserver = mine.p50_ms / mlserver.p50_ms
        p50_limit = mine.p50_ms / limit.p50_ms
        rps_mlserver = mine.rps8 / mlserver.rps8 if mlserver.rps8 else float("inf")
        rps_mlflow = mine.rps8 / mlflow_serve.rps8 if mlflow_serve.rps8 else float("inf")
        rows += [
            (f"{name}: p50 / MLServer p50", p50_mlserver, "<= 1.0x", p50_mlserver <= 1.0),
            (f"{name}: p50 / limit p50", p50_limit, "<= 1.5x", p50_limit <= 1.5),
            (f"{name}: rps@8 / MLServer rps@8", rps_mlserver, ">= 1.0x", rps_mlserver >= 1.0),
            (f"{name}: rps@8 / mlflow serve rps@8", rps_mlflow, ">= 2.0x", rps_mlflow >= 2.0),
            (f"{name}: errors (non-200 answers)", float(mine.errors), "0", mine.errors == 0),
        ]
    return rows


def report(results: dict[str, Result], args: argparse.Namespace, versions: str, same: bool, busy: str,
           took: float) -> str:
    lines = [
        "# Serving benchmark",
        "",
        f"`python bench/serving.py --requests {args.requests} --warmup {args.warmup} --seconds {args.seconds:g} "
        f"--rounds {args.rounds}{' --only-loopml' if args.only_loopml else ''}`; "
        "one registered version (StandardScaler + LogisticRegression, wine data, 13 features), one-row requests, "
        "all servers up, measured one at a time on this machine "
        f"({os.cpu_count()} CPUs shared by servers and load generator). {versions}.",
        "",
        f"p50/p99 and rps@1: {args.requests} sequential requests on one keep-alive connection after "
        f"{args.warmup} warm-up ones; rps@8: {CONNECTIONS} threads with one keep-alive `http.client` "
        f"connection each for {args.seconds:g} s. With several rounds (every target in turn, again and again) "
        f"the numbers are medians over rounds, errors their sum. Errors: answers other than 200. "
        f"{busy} (before measuring).",
        "",
        "| target | p50 ms | p99 ms | rps@1 | rps@8 | errors | client CPU µs/req @8 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results.values():
        lines.append(f"| {r.target} | {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.rps1:.0f} | {r.rps8:.0f} | {r.errors} | "
                     f"{r.client_cpu_us:.0f} |")
    if goals(results):
        lines += ["", "| goal | ratio | target | met |", "|---|---:|---|---|"]
        for what, ratio, goal, met in goals(results):
            shown = f"{ratio:.0f}" if goal == "0" else f"{ratio:.2f}x"
            lines.append(f"| {what} | {shown} | {goal} | {'met' if met else '**not met**'} |")
    lines += ["", "What the sandboxed model host costs (a pickled model, over the same model in-process):", "",
              "| protocol | p50 added, ms | p99 added, ms | rps@8 sandboxed / in-process |", "|---|---:|---:|---:|"]
    for protocol, p50, p99, rps in sandbox_costs(results):
        lines.append(f"| {protocol} | {p50:+.2f} | {p99:+.2f} | {rps:.2f}x |")
    lines += ["", "Same predictions from all targets: " + ("yes" if same else "**NO (see the run's output)**") + ".",
              f"The whole run took {took:.0f} s."]
    return "\n".join(lines) + "\n"


def idle_cpu_use(pids: set[int], seconds: float = 3) -> str:
    """Machine-wide CPU use while every server idles, the share of it that is this bench's own
    servers (``pids`` and their children), and the load average: the noise under the numbers."""
    procs: dict[int, psutil.Process] = {}
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            procs.update({p.pid: p for p in [proc, *proc.children(recursive=True)]})
        except psutil.NoSuchProcess:
            pass
    before = _cpu_seconds(procs)
    machine = psutil.cpu_percent(interval=seconds)
    own = (_cpu_seconds(procs) - before) / seconds / psutil.cpu_count() * 100
    load = ", ".join(f"{n:.1f}" for n in os.getloadavg())
    line = (f"CPU use with all servers idle: {machine:.0f}% of {psutil.cpu_count()} CPUs, "
            f"{own:.0f}% from this bench's servers; load average {load}")
    print(line)
    return line


def _cpu_seconds(procs: dict[int, psutil.Process]) -> float:
    total = 0.0
    for proc in procs.values():
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.NoSuchProcess:
            pass
    return total


def versions_line() -> str:
    import mlflow
    import ray

    python = MLSERVER_VENV / "bin" / "python"
    found = subprocess.run([str(python), "-c", "import importlib.metadata as m; print(m.version('mlserver'))"],
                           capture_output=True, text=True).stdout.strip() if python.exists() else ""
    return (f"scikit-learn {sklearn_version()}, mlflow {mlflow.__version__}, ray {ray.__version__}, "
            f"MLServer {found or '?'}, Python {sys.version.split()[0]}")


# -- main ------------------------------------------------------------------------------


def serve_wine(home: Path):
    """A platform of its own in ``home`` serving the wine model at endpoint ``wine``.
    Returns (Deployed, X, model, model URI, MLflow URL)."""
    print(f"starting the platform in {home}")
    client_config, mlflow_url = start_platform(home)
    create_project(client_config)  # first: it provisions the project's MLflow user that registers
    X, model, model_uri = register_model(mlflow_url, home)
    print(f"registered {model_uri}; deploying it")
    return deploy(client_config), X, model, model_uri, mlflow_url


def loopml_targets(deployed, columns: list[str], sandboxed: str = "") -> list[Target]:
    """The two protocols of endpoint ``deployed``; ``sandboxed`` names a sandboxed endpoint's rows."""
    endpoint = urllib.parse.urlsplit(deployed.endpoint.url)
    key = {"Authorization": f"Bearer {deployed.key}"}
    name = deployed.endpoint.name
    return [Target(f"loopml {sandboxed}/invocations", endpoint.port, endpoint.path + "/invocations",
                   dataframe_split(columns), mlflow_predictions, key),
            Target(f"loopml {sandboxed}v2 infer", endpoint.port, f"{endpoint.path}/v2/models/{name}/infer", v2_infer,
                   v2_predictions, key)]


CAPTURED = ("loopml /invocations", "loopml v2 infer")
CAPTURE_OFF = ", capture off"
PROBABILITIES_OFF, CONTRACT_OFF = ", probabilities off", ", contract off"


def switches(home: Path, columns: list[str]) -> list[tuple[str, Callable[[bool], None]]]:
    """``(row suffix, switch(on))`` for the features measured off then switched back on: the
    endpoint's probability capture, and every check of the served version's data contract."""
    from loopml.client import Client

    client_config = json.loads((home / "client.json").read_text())

    def probabilities(on: bool) -> None:
        with Client(client_config["url"], client_config["token"]) as client:
            client.update_endpoint(PROJECT, ENDPOINT, capture_probabilities=on)
        time.sleep(2)  # the replicas' reconfigure

    def contract(on: bool) -> None:
        with Client(client_config["url"], client_config["token"]) as client:
            client.contract(PROJECT, MODEL, 1, changes=[f"{c}.check={'logged' if on else 'off'}" for c in columns])
        time.sleep(2)

    return [(PROBABILITIES_OFF, probabilities), (CONTRACT_OFF, contract)]


def capture_off(home: Path) -> None:
    """Restart the platform service alone with ``capture_sample = 0``: ``loopml up`` keeps the
    running Ray and MLflow and the new service hands the endpoints' replicas a config with no
    capture (their ``reconfigure``); the same replicas, ports and HAProxy serve on."""
    record = next(r for r in state_records(home) if r["name"] == "platform")
    service = psutil.Process(record["pid"])
    service.terminate()
    service.wait(timeout=60)
    with open(home / "config.toml", "a") as config:
        config.write("capture_sample = 0\n")
    started = subprocess.run([str(VENV_BIN / "loopml"), "up", "--no-hub", "--data-dir", str(home)],
                             env=platform_env(home), capture_output=True, text=True, timeout=300)
    if started.returncode != 0:
        raise SystemExit(f"loopml up (capture off) failed:\n{started.stdout}\n{started.stderr}")
    time.sleep(3)  # the replicas' reconfigure


def start_all(work: Path, servers: list[Server], only_loopml: bool = False):
    """Platform, models and endpoints, then (unless ``only_loopml``) the other three servers
    (appended to ``servers`` as they start, for the caller to stop); waits until all are ready.
    Returns (targets, X, model)."""
    home, logs = work / "home", work / "logs"
    deployed, X, model, model_uri, mlflow_url = serve_wine(home)
    print("deploying the same model saved with pickle (sandboxed model host)")
    sandboxed = serve_sandboxed(home, X, model)
    columns = list(X.columns)
    mine = loopml_targets(deployed, columns) + loopml_targets(sandboxed, columns, "sandboxed ")
    if only_loopml:
        return mine, X, model
    model_file = dump_model(model_uri, work / ENDPOINT)  # MLServer wants the folder named as the model

    mlflow_port = free_port_block(5)
    limit_port, mlserver_port = mlflow_port + 1, mlflow_port + 2  # MLServer takes 3 ports
    mlflow_serve = start_mlflow_serve(model_uri, mlflow_url, mlflow_port, work, logs)
    servers.append(mlflow_serve)
    limit = start_limit(model_file, limit_port, logs)
    servers.append(limit)
    mlserver = start_mlserver(model_file, mlserver_port, logs)
    servers.append(mlserver)
    wait_ready(mlflow_serve, mlflow_port, "/ping")
    wait_ready(limit, limit_port, "/ping")
    wait_ready(mlserver, mlserver_port, f"/v2/models/{ENDPOINT}/ready")

    targets = mine[:2] + [
        Target("mlflow models serve", mlflow_port, "/invocations", dataframe_split(columns), mlflow_predictions),
        Target("MLServer", mlserver_port, f"/v2/models/{ENDPOINT}/infer", v2_infer, v2_predictions),
        Target("limit", limit_port, "/predict", limit_body, mlflow_predictions),
    ] + mine[2:]
    return targets, X, model



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="timed one-connection requests per target")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up requests per target")
    parser.add_argument("--seconds", type=float, default=10, help="length of the 8-connection run per target")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure every target in turn this many times; the table shows medians")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (server logs, platform home)")
    parser.add_argument("--only-loopml", action="store_true",
                        help="measure the loopml endpoints alone (in-process and sandboxed), not the peers")
    args = parser.parse_args()

    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="loopml-bench-serving-"))
    (work / "logs").mkdir()
    servers: list[Server] = []
    try:
        targets, X, model = start_all(work, servers, args.only_loopml)
        same = check_predictions(targets, X, model)
        busy = idle_cpu_use(platform_pids(work / "home") | {server.proc.pid for server in servers})
        print(f"measuring ({args.warmup} warm-up, {args.requests} requests, {CONNECTIONS} connections "
              f"for {args.seconds:g} s each)")
        row = X.iloc[TIMED_ROW].tolist()
        rounds = {target.name: [] for target in targets}
        for number in range(args.rounds):
            if args.rounds > 1:
                print(f"round {number + 1} of {args.rounds}")
            for target in targets:
                rounds[target.name].append(measure(target, row, args))
        for suffix, switch in switches(work / "home", list(X.columns)):
            print(f"measuring with{suffix.replace(',', '')}, then on again, in turn")
            for _ in range(args.rounds):  # off and on side by side, so the box's drift hits both
                for on, name_suffix in ((False, suffix), (True, suffix.replace(" off", " on"))):
                    switch(on)
                    for target in (t for t in targets if t.name in CAPTURED):
                        rounds.setdefault(target.name + name_suffix, []).append(
                            measure(dataclasses.replace(target, name=target.name + name_suffix), row, args))
        print("restarting the platform service with capture off (capture_sample = 0)")
        capture_off(work / "home")
        for _ in range(args.rounds):
            for target in (t for t in targets if t.name in CAPTURED):
                rounds.setdefault(target.name + CAPTURE_OFF, []).append(
                    measure(dataclasses.replace(target, name=target.name + CAPTURE_OFF), row, args))
        results = {name: median_result(found) for name, found in rounds.items()}
        versions = versions_line()
    finally:
        for server in reversed(servers):
            stop_server(server)
        if (work / "home").exists():
            stop_platform(work / "home")
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    text = report(results, args, versions, same, busy, time.monotonic() - began)
    results_file = RESULTS.with_name("serving-loopml.md") if args.only_loopml else RESULTS
    results_file.parent.mkdir(parents=True, exist_ok=True)
    results_file.write_text(text)
    print()
    print(text)


if __name__ == "__main__":
    main()
