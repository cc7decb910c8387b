"""Issue 14, Show 1 from a workspace: a kernel of alice's ``demo`` workspace (hub mode) runs
the attacks of :mod:`tests.security.attacks` against project ``fraud`` (member bob: a
finished job with its run and registered model, served with captured requests, and a
job still running). Every row must be blocked, fraud's state unchanged, and the
workspace's own work (log a model of demo, write and read its project files) must work.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from loopml.executor.models import JobStatus
from loopml.serving.service import app_name
from tests.integration.notebooks import SLOW, TRAIN_AND_LOG
from tests.security import attacks
from tests.security.victim import (
    artifact_path,
    b_state,
    diff,
    mlflow,
    model_files,
    platform_secrets,
    table,
    verdict,
    wait_captures,
    wait_status,
)

A, B, B_MODEL, B_ENDPOINT = "demo", "fraud", "iris", "ws-ep"
WORKSPACE_LEGIT = ["legit_log_model", "legit_own_data"]
SPAWN_S, RUN_S = 120, 240


@pytest.fixture(scope="module")
def fraud(hub):
    """Project fraud as bob leaves it: trained, deployed, scored, one job running."""
    bob = hub.client(hub.api_token("bob"))
    done = bob.wait(B, bob.submit(B, TRAIN_AND_LOG, parameters={"model_name": B_MODEL}).id, timeout=180)
    assert done.status == JobStatus.SUCCEEDED, bob.logs(B, done.id)
    deployed = bob.deploy(B, f"{B_MODEL}@champion", B_ENDPOINT)
    rows = {"dataframe_split": {"columns": ["sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                                            "petal width (cm)"], "data": [[5.1, 3.5, 1.4, 0.2]]}}
    for i in range(2):
        headers = {"Authorization": f"Bearer {deployed.key}", "x-request-id": f"ws-{i}-{uuid.uuid4().hex[:6]}"}
        answer = httpx.post(deployed.endpoint.url + "/invocations", json=rows, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
    wait_captures(hub, B, 2)
    running = bob.submit(B, SLOW, parameters={"seconds": 900.0}, resources={"cpus": 0.25})
    assert wait_status(bob, B, running.id, {"RUNNING"}).status == JobStatus.RUNNING
    run = mlflow(hub, "/api/2.0/mlflow/runs/get", run_id=done.mlflow_run_id).json()["run"]
    source, model_root = model_files(hub, f"{B}.{B_MODEL}", 1)
    b = {"project": B, "done": done.id, "running": running.id, "run_id": done.mlflow_run_id,
         "run_root": artifact_path(run["info"]["artifact_uri"]),
         "model_root": model_root, "model_source": source,
         "bob": bob}
    yield b
    bob.cancel(B, running.id)


def _context(hub, b: dict, tokens: list[str]) -> dict:
    state, home = hub.state(), hub.home
    secrets = platform_secrets(home, hub.admin_token, {t: "hub token of a user" for t in tokens})
    return {
        "home": str(home), "gcs": state["urls"]["ray_address"], "dashboard": state["urls"]["ray"],
        "mlflow": state["urls"]["mlflow"], "api": hub.platform_url.rstrip("/") + "/api/v1",
        "b_project": B, "b_jobs": {"done": b["done"], "running": b["running"]}, "b_run_id": b["run_id"],
        "b_artifact": f"{b['run_root']}/notebook/output.ipynb", "b_model_artifact": f"{b['model_root']}/MLmodel",
        "b_model": f"{B}.{B_MODEL}", "b_model_source": b["model_source"],
        "b_model_id": b["model_source"].removeprefix("models:/"), "b_endpoint": B_ENDPOINT,
        "b_app": app_name(B, B_ENDPOINT), "b_route": f"/{B}/{B_ENDPOINT}",
        "secret_hashes": {hashlib.sha256(s.encode()).hexdigest(): label for s, label in secrets.items()},
    }


def _workspace_kernel(hub, token: str) -> tuple[str, str]:
    """Start alice's demo workspace and a kernel in it: ``(server URL, kernel id)``."""
    api, headers = f"{hub.hub_url}/hub/api/users/alice", {"Authorization": f"token {token}"}
    started = httpx.post(f"{api}/servers/{A}", headers=headers, timeout=60)
    assert started.status_code in (201, 202, 400), started.text  # 400: already running
    deadline = time.monotonic() + SPAWN_S
    while time.monotonic() < deadline:
        server = httpx.get(api, headers=headers, timeout=30).json().get("servers", {}).get(A, {})
        if server.get("ready"):
            break
        time.sleep(1)
    else:
        pytest.fail(f"alice's {A} workspace did not start within {SPAWN_S}s")
    url = f"{hub.hub_url}/user/alice/{A}"
    kernel = httpx.post(f"{url}/api/kernels", headers=headers, json={"name": "python3"}, timeout=60)
    assert kernel.status_code == 201, kernel.text
    return url, kernel.json()["id"]


def _execute(url: str, kernel: str, token: str, code: str) -> str:
    """Run ``code`` in the kernel over Jupyter's websocket; its stdout (an error's traceback fails)."""
    ws_url = url.replace("http://", "ws://") + f"/api/kernels/{kernel}/channels"
    msg_id, out = uuid.uuid4().hex, []
    request = {"header": {"msg_id": msg_id, "username": "alice", "session": uuid.uuid4().hex,
                          "msg_type": "execute_request", "version": "5.3"},
               "parent_header": {}, "metadata": {}, "channel": "shell",
               "content": {"code": code, "silent": False, "store_history": False, "user_expressions": {},
                           "allow_stdin": False, "stop_on_error": True}}
    deadline = time.monotonic() + RUN_S
    with connect(ws_url, additional_headers={"Authorization": f"token {token}"}, max_size=None) as ws:
        ws.send(json.dumps(request))
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv(timeout=deadline - time.monotonic()))
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                out.append(msg["content"]["text"])
            elif kind == "error":
                pytest.fail(f"the attack cell raised: {msg['content']['ename']}: {msg['content']['evalue']}")
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                return "".join(out)
    pytest.fail(f"the attack cell did not finish within {RUN_S}s")


def test_a_workspace_kernel_of_demo_reaches_nothing_of_fraud(hub, fraud):
    alice_token = hub.api_token("alice")
    before = b_state(hub, fraud["bob"], fraud)
    url, kernel = _workspace_kernel(hub, alice_token)
    # its server told the platform it started (the loopml extension, with the workspace's own token)
    opened = hub.client(alice_token).loop(A).stage("workspace_opened")
    assert opened.reached and opened.object.id == "alice", opened
    ctx = {**_context(hub, fraud, [alice_token]), "legit": True,
           "own_dirs": [str(hub.home / "projects" / "demo")]}
    code = (f"import json\nctx = json.loads({json.dumps(ctx)!r})\n"
            f"attacks = {{'__name__': 'attacks'}}\nexec(compile({Path(attacks.__file__).read_text()!r}, "
            "'attacks.py', 'exec'), attacks)\n"
            "print('RESULTS ' + json.dumps(attacks['run'](ctx)))")
    printed = _execute(url, kernel, alice_token, code)
    lines = [line for line in printed.splitlines() if line.startswith("RESULTS ")]
    assert lines, f"the kernel printed no table: {printed[-2000:]}"
    results = json.loads(lines[-1][len("RESULTS "):])
    results.pop("legit_read_own_run", None)  # a workspace has no run of its own until it logs one
    bad = verdict(results, legit=WORKSPACE_LEGIT)
    bad += diff(before, b_state(hub, fraud["bob"], fraud))
    running = fraud["bob"].job(B, fraud["running"])
    if running.status != JobStatus.RUNNING:
        bad.append(f"fraud's running job {running.id} is now {running.status} ({running.message})")
    assert not bad, "from a workspace kernel of demo:\n" + "\n".join(bad) + "\n\nthe whole table:\n" + table(results)
