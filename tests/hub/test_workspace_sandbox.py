"""A workspace kernel (local spawner, ``job_isolation = "bwrap"``) reaches only its own project.

bob is a member of both ``demo`` and ``fraud``; from a kernel of his ``demo`` workspace
(started through the Jupyter server's REST and kernel websocket API with bob's own hub
token) the test checks that the data dir's ``secrets.json`` and the ``fraud`` directory are
out of reach, that ``/proc`` shows only the sandbox's few processes, that no variable of the
hub's environment came along, and that the workspace's ``LOOPML_TOKEN`` works in ``demo`` but
can neither list nor submit in ``fraud`` (bob's own token can). Stopping the server kills
what the kernel left running.
"""

from __future__ import annotations

import json
import time
import uuid

import httpx
import psutil
import pytest
import websocket

pytestmark = pytest.mark.integration

PROBE = """
import json, os, subprocess, httpx
data = {data!r}
found = {{}}
for what, path in (("secrets", data + "/secrets.json"), ("other_project", data + "/projects/fraud"),
                   ("hub_state", data + "/hub/jupyterhub.sqlite"), ("run_state", data + "/run/state.json")):
    try:
        found[what] = "read: " + str(os.listdir(path) if os.path.isdir(path) else open(path).read(40))
    except OSError as exc:
        found[what] = type(exc).__name__
found["own_project"] = sorted(os.listdir({project_dir!r}))
found["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
found["env"] = sorted(os.environ)
api = os.environ["LOOPML_URL"] + "/api/v1"
headers = {{"Authorization": "Bearer " + os.environ["LOOPML_TOKEN"]}}
found["projects"] = httpx.get(api + "/projects", headers=headers, timeout=30).json()
found["demo_jobs"] = httpx.get(api + "/projects/demo/jobs", headers=headers, timeout=30).status_code
found["fraud_jobs"] = httpx.get(api + "/projects/fraud/jobs", headers=headers, timeout=30).status_code
found["fraud_submit"] = httpx.post(api + "/projects/fraud/jobs", headers=headers, json={{}}, timeout=30).status_code
subprocess.Popen(["sleep", "{marker}"], start_new_session=True)
print(json.dumps(found))
"""


def wait_for_lab(session: httpx.Client, url: str, timeout_s: float = 90) -> None:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        lab = session.get(f"{url}/lab")
        if lab.status_code == 200 and "JupyterLab" in lab.text:
            return
        time.sleep(0.5)
    raise AssertionError(f"the workspace at {url} did not start in {timeout_s} s: {lab.status_code} {lab.text[:300]}")


def execute(server_url: str, token: str, code: str, timeout_s: float = 60) -> str:
    """Run ``code`` in a new kernel of the Jupyter server at ``server_url``; its stdout (raises
    with the traceback on an error)."""
    headers = {"Authorization": f"token {token}"}
    kernel = httpx.post(f"{server_url}/api/kernels", headers=headers, json={"name": "python3"}, timeout=60)
    assert kernel.status_code == 201, kernel.text
    ws = websocket.create_connection(f"{server_url.replace('http', 'ws', 1)}/api/kernels/{kernel.json()['id']}/channels",
                                     header=[f"Authorization: token {token}"], timeout=timeout_s)
    msg_id = uuid.uuid4().hex
    ws.send(json.dumps({"header": {"msg_id": msg_id, "username": "test", "session": uuid.uuid4().hex,
                                   "msg_type": "execute_request", "version": "5.3"},
                        "parent_header": {}, "metadata": {}, "channel": "shell",
                        "content": {"code": code, "silent": False, "store_history": False,
                                    "user_expressions": {}, "allow_stdin": False}}))
    out, deadline = [], time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                out.append(content["text"])
            elif kind == "error":
                raise AssertionError("the probe failed in the kernel:\n" + "\n".join(content["traceback"]))
            elif kind == "status" and content["execution_state"] == "idle":
                return "".join(out)
    finally:
        ws.close()
    raise AssertionError(f"the probe did not finish in {timeout_s} s; output so far: {''.join(out)!r}")


def processes_with(marker: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if marker in (p.info["cmdline"] or [])]


def test_a_workspace_kernel_reaches_only_its_own_project(hub):
    token = hub.api_token("bob")  # bob's own token: it acts in both of bob's projects
    assert {p.name for p in hub.client(token).projects()} == {"demo", "fraud"}
    bob = hub.login("bob")
    bob.get(f"{hub.hub_url}/hub/spawn/bob/demo")
    server = f"{hub.hub_url}/user/bob/demo"
    wait_for_lab(bob, server)
    marker = str(900000 + uuid.uuid4().int % 99999)
    try:
        output = execute(server, token, PROBE.format(data=str(hub.home), project_dir=str(hub.home / "projects" / "demo"),
                                                     marker=marker))
        found = json.loads(output.strip().splitlines()[-1])

        assert found["secrets"] in ("FileNotFoundError", "PermissionError"), found["secrets"]
        assert found["other_project"] in ("FileNotFoundError", "PermissionError"), found["other_project"]
        assert found["hub_state"] == "FileNotFoundError" and found["run_state"] == "FileNotFoundError"
        assert (hub.home / "secrets.json").exists()  # it is there, the kernel cannot see it
        assert len(found["pids"]) <= 10, found["pids"]  # the sandbox's own: server, kernel, their children
        assert not [k for k in found["env"] if k.startswith("RAY_")], found["env"]
        assert {k for k in found["env"] if k.startswith("LOOPML_")} <= {
            "LOOPML_PROJECT", "LOOPML_URL", "LOOPML_TOKEN", "LOOPML_HUB_INSTANCE",
            "LOOPML_JUPYTER_ROOT"}, found["env"]  # the last one set inside by loopml's server extension
        listed = found["projects"]["items"] if isinstance(found["projects"], dict) else found["projects"]
        assert [p["name"] for p in listed] == ["demo"]
        assert found["demo_jobs"] == 200
        assert found["fraud_jobs"] == 403 and found["fraud_submit"] == 403
        left = processes_with(marker)
        assert left, "the probe's background process is not running on the host"
    finally:
        stopped = httpx.delete(f"{hub.hub_url}/hub/api/users/bob/servers/demo", timeout=60,
                               headers={"Authorization": f"token {token}"})
        assert stopped.status_code in (202, 204), stopped.text
    deadline = time.monotonic() + 30
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not processes_with(marker), "a process the kernel started outlived the stopped workspace"
