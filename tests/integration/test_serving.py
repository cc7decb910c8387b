"""Model endpoints on Ray Serve: deploy from an alias, both protocols, validation, keys."""

from __future__ import annotations

import json
import stat
import threading
import time
from pathlib import Path

import httpx
import pytest

from loopml.executor.models import JobStatus
from loopml.serving.service import app_name
from tests.integration.endpoints import COLUMNS, X, replica_pids, train_and_deploy
from tests.integration.notebooks import TRAIN_AND_LOG
from tests.integration.processes import wait_for


@pytest.fixture(scope="module")
def endpoint(platform, admin):
    """A project with a trained iris model deployed from @champion to endpoint 'iris-ep'."""
    return train_and_deploy(platform, admin, "serving-demo", "iris-ep")


def post(endpoint, route: str, body, *, key: str | None = "use", content_type="application/json"):
    headers = {"content-type": content_type}
    if key is not None:
        headers["Authorization"] = f"Bearer {endpoint['key'] if key == 'use' else key}"
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(endpoint["url"] + route, content=content, headers=headers, timeout=30)


PAYLOADS = {
    "dataframe_split": {"dataframe_split": {"columns": COLUMNS, "data": X.values.tolist()}},
    "dataframe_records": {"dataframe_records": X.to_dict(orient="records")},
    "instances": {"instances": X.to_dict(orient="records")},
    "inputs": {"inputs": {c: X[c].tolist() for c in COLUMNS}},
}


@pytest.mark.parametrize("fmt", list(PAYLOADS), ids=list(PAYLOADS))
def test_mlflow_scoring_formats_return_the_models_own_predictions(endpoint, fmt):
    answer = post(endpoint, "/invocations", PAYLOADS[fmt])
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"predictions": endpoint["predictions"]}
    assert answer.headers["x-loopml-model-version"] == "1" and answer.headers["x-request-id"]


def test_v2_infer_returns_the_same_predictions(endpoint):
    body = {"id": "req-1", "inputs": [{"name": "input", "shape": [10, 4], "datatype": "FP64",
                                       "data": X.values.tolist()}]}
    answer = post(endpoint, "/v2/models/iris-ep/infer", body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"] == "req-1" and answer.json()["outputs"][0]["data"] == endpoint["predictions"]


def test_v2_metadata_and_health(endpoint):
    meta = httpx.get(endpoint["url"] + "/v2/models/iris-ep", headers={"Authorization": f"Bearer {endpoint['key']}"})
    assert [i["name"] for i in meta.json()["inputs"]] == COLUMNS
    for route in ("/v2/health/live", "/v2/health/ready"):
        assert httpx.get(endpoint["url"] + route).status_code == 200


ROW = X.iloc[0].to_dict()
INVOKE, INFER = "/invocations", "/v2/models/iris-ep/infer"
JSON_TYPE = "application/json"


def tensor(shape, data, datatype="FP64", name="input"):
    return {"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}]}


# id, route, body, key ("use" = the endpoint's), content type, status, phrase of the message
BAD = [
    ("no-key", INVOKE, {"dataframe_records": [ROW]}, None, JSON_TYPE, 401, "endpoint key"),
    ("wrong-key", INVOKE, {"dataframe_records": [ROW]}, "nope", JSON_TYPE, 401, "endpoint key"),
    ("v2-no-key", INFER, tensor([1, 4], [list(ROW.values())]), None, JSON_TYPE, 401, "endpoint key"),
    ("empty-body", INVOKE, b"", "use", JSON_TYPE, 400, "empty"),
    ("not-json", INVOKE, b"{nope", "use", JSON_TYPE, 400, "JSON"),
    ("json-array", INVOKE, b"[1, 2]", "use", JSON_TYPE, 400, "object"),
    ("csv", INVOKE, b"a,b", "use", "text/csv", 415, ""),
    ("no-format-key", INVOKE, {"rows": [ROW]}, "use", JSON_TYPE, 400, ""),
    ("two-format-keys", INVOKE, {"instances": [ROW], "inputs": [ROW]}, "use", JSON_TYPE, 400, ""),
    ("missing-column", INVOKE, {"dataframe_records": [{k: v for k, v in ROW.items() if k != COLUMNS[0]}]}, "use",
     JSON_TYPE, 422, COLUMNS[0]),
    ("extra-column", INVOKE, {"dataframe_records": [{**ROW, "bogus": 1.0}]}, "use", JSON_TYPE, 422, "bogus"),
    ("wrong-type", INVOKE, {"dataframe_records": [{**ROW, COLUMNS[1]: "tall"}]}, "use", JSON_TYPE, 422,
     COLUMNS[1]),
    ("split-row-width", INVOKE, {"dataframe_split": {"columns": COLUMNS, "data": [[1.0, 2.0, 3.0]]}}, "use",
     JSON_TYPE, 400, ""),
    ("positional-width", INVOKE, {"inputs": [[1.0, 2.0, 3.0]]}, "use", JSON_TYPE, 422, "4 columns"),
    ("oversized", INVOKE, b'{"inputs": [' + b"[1.0, 2.0, 3.0, 4.0], " * 600_000 + b"[1.0, 2.0, 3.0, 4.0]]}",
     "use", JSON_TYPE, 413, "limit"),
    ("v2-shape-mismatch", INFER, tensor([2, 4], [1.0] * 4), "use", JSON_TYPE, 400, "shape"),
    ("v2-unknown-datatype", INFER, tensor([1, 4], [1.0] * 4, "FP16"), "use", JSON_TYPE, 400, "FP16"),
    ("v2-width", INFER, tensor([1, 3], [1.0] * 3), "use", JSON_TYPE, 422, "4 columns"),
    ("v2-no-inputs", INFER, {"id": "x"}, "use", JSON_TYPE, 400, "inputs"),
    ("v2-unknown-model", "/v2/models/other/infer", tensor([1, 4], [1.0] * 4), "use", JSON_TYPE, 404, "no route"),
    ("unknown-route", "/predict", {"inputs": [ROW]}, "use", JSON_TYPE, 404, "/invocations"),
]


@pytest.mark.parametrize("route, body, key, content_type, status, says",
                         [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_requests_get_a_clear_4xx_and_the_endpoint_keeps_answering(endpoint, route, body, key, content_type,
                                                                       status, says):
    answer = post(endpoint, route, body, key=key, content_type=content_type)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == JSON_TYPE and says in answer.json()["message"]
    assert answer.headers["x-request-id"]
    after = post(endpoint, INVOKE, PAYLOADS["dataframe_split"])
    assert after.status_code == 200 and after.json() == {"predictions": endpoint["predictions"]}


def test_the_registry_names_the_endpoint_serving_a_version(platform, endpoint):
    model = httpx.get(f"{platform.url}/api/v1/projects/{endpoint['project']}/models/iris",
                      headers={"Authorization": f"Bearer {platform.alice_token}"}).json()
    serving = {v["version"]: v["lineage"]["endpoints"] for v in model["versions"]}
    assert serving[1] == ["iris-ep"]


def test_scoring_requests_are_captured_with_features_and_predictions(platform, endpoint):
    from sqlalchemy import create_engine, select
    from sqlalchemy.orm import Session

    from loopml.monitor.orm import PredictionRow

    ids = {f"cap-{i}-{time.monotonic_ns()}": body for i, body in enumerate(
        [PAYLOADS["dataframe_split"], PAYLOADS["instances"], {"dataframe_records": [{**ROW, "bogus": 1.0}]}])}
    for request_id, body in ids.items():
        httpx.post(endpoint["url"] + INVOKE, json=body, timeout=30,
                   headers={"Authorization": f"Bearer {endpoint['key']}", "x-request-id": request_id})
    engine = create_engine(f"sqlite:///{platform.home / 'loopml.db'}")
    deadline, rows = time.monotonic() + 15, []
    while len(rows) < 3 and time.monotonic() < deadline:
        time.sleep(0.5)
        with Session(engine) as session:
            rows = session.scalars(select(PredictionRow).where(PredictionRow.request_id.in_(list(ids)))
                                   .order_by(PredictionRow.id)).all()
    engine.dispose()
    assert [(r.endpoint, r.status) for r in rows] == [("iris-ep", 200), ("iris-ep", 200), ("iris-ep", 422)]
    assert rows[0].features["columns"] == COLUMNS and rows[0].features["data"] == X.values.tolist()
    assert rows[0].prediction == endpoint["predictions"] and rows[0].latency_ms > 0
    assert rows[2].prediction is None


def test_non_members_cannot_deploy_or_see_endpoints(platform, endpoint):
    headers = {"Authorization": f"Bearer {platform.bob_token}"}
    base = f"{platform.url}/api/v1/projects/{endpoint['project']}/endpoints"
    assert httpx.get(base, headers=headers).status_code == 403
    assert httpx.post(base, headers=headers, json={"name": "x", "model": "iris"}).status_code == 403


def test_switching_versions_under_traffic_fails_no_request(platform, endpoint):
    """Deploy version 2 to the live endpoint, then roll back to 1, while a client keeps calling."""
    alice = platform.client()
    job = alice.wait(endpoint["project"], alice.submit(endpoint["project"], TRAIN_AND_LOG,
                                                       parameters={"C": 0.05}).id, timeout=180)
    assert job.status == JobStatus.SUCCEEDED
    seen: list[tuple[float, int, str]] = []
    stop = threading.Event()
    replicas = replica_pids(platform, app_name(endpoint["project"], "iris-ep"))

    def traffic() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                answer = http.post(endpoint["url"] + "/invocations", json=PAYLOADS["dataframe_split"],
                                   headers={"Authorization": f"Bearer {endpoint['key']}"})
                seen.append((time.monotonic(), answer.status_code, answer.headers.get("x-loopml-model-version")))

    loop = threading.Thread(target=traffic)
    loop.start()
    try:
        for version in (2, 1):
            time.sleep(1.0)
            answer = httpx.post(f"{platform.url}/api/v1/projects/{endpoint['project']}/endpoints", timeout=180,
                                headers={"Authorization": f"Bearer {platform.alice_token}"},
                                json={"name": "iris-ep", "model": f"iris/{version}"})
            assert answer.status_code == 201 and answer.json()["key"] is None, answer.text
            done = time.monotonic()
            switched = next((t for t, _, v in seen if t >= done and v == str(version)), None)
            deadline = time.monotonic() + 5
            while switched is None and time.monotonic() < deadline:
                time.sleep(0.05)
                switched = next((t for t, _, v in seen if t >= done and v == str(version)), None)
            assert switched is not None and switched - done <= 2.0
    finally:
        stop.set()
        loop.join(30)
    assert len(seen) > 20 and [s for s in seen if s[1] != 200] == []
    assert replica_pids(platform, app_name(endpoint["project"], "iris-ep")) == replicas  # swapped inside, no restart
    history = httpx.get(f"{platform.url}/api/v1/projects/{endpoint['project']}/endpoints/iris-ep",
                        headers={"Authorization": f"Bearer {platform.alice_token}"}).json()["history"]
    assert [h["version"] for h in history] == [1, 2, 1]


def test_canary_takes_its_share_until_promoted_and_rollback_returns(platform, endpoint):
    api = f"{platform.url}/api/v1/projects/{endpoint['project']}/endpoints"
    auth = {"Authorization": f"Bearer {platform.alice_token}"}

    def versions(count: int) -> list[str]:
        """The version answering each of ``count`` calls, one at a time. Like any client of the
        platform it calls a refused request (503, overloaded) again after its Retry-After: a lone
        client on a busy 2-core CI machine was refused once in 1000 calls."""
        answers, refusals = [], []
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {endpoint['key']}"}) as http:
            while len(answers) < count:
                answer = http.post(endpoint["url"] + "/invocations", json=PAYLOADS["dataframe_split"])
                if answer.status_code == 503 and len(refusals) < count // 100:
                    assert answer.json()["reason"] == "overloaded", answer.text
                    refusals.append(answer.text)
                    time.sleep(int(answer.headers["retry-after"]))
                    continue
                assert answer.status_code == 200, (answer.status_code, answer.text, refusals)
                answers.append(answer.headers["x-loopml-model-version"])
        return answers

    canary = httpx.post(api, headers=auth, timeout=180, json={"name": "iris-ep", "model": "iris/2", "canary": 20})
    assert canary.status_code == 201, canary.text
    assert (canary.json()["endpoint"]["version"], canary.json()["endpoint"]["canary_version"]) == (1, 2)
    share = versions(1000).count("2") / 1000
    assert 0.15 <= share <= 0.25, share

    promoted = httpx.post(f"{api}/iris-ep/promote", headers=auth, timeout=180).json()
    assert (promoted["version"], promoted["canary_version"]) == (2, None)
    assert set(versions(20)) == {"2"}
    rolled = httpx.post(f"{api}/iris-ep/rollback", headers=auth, timeout=180).json()
    assert rolled["version"] == 1 and set(versions(20)) == {"1"}
    assert [h["action"].split()[0] for h in rolled["history"][-3:]] == ["canary", "promote", "roll"]
    no_canary = httpx.post(f"{api}/iris-ep/promote", headers=auth, timeout=60)
    assert no_canary.status_code == 409 and "no canary" in no_canary.json()["message"]


def test_update_scales_in_place_and_rotates_the_key(platform, endpoint):
    project, app = endpoint["project"], app_name(endpoint["project"], "iris-ep")
    before = replica_pids(platform, app)
    scaled = platform.cli("endpoints", "update", "iris-ep", "--replicas", "2", "-P", project, "--json")
    assert scaled.returncode == 0, scaled.stderr
    assert json.loads(scaled.stdout)["endpoint"]["replicas"] == 2
    deadline = time.monotonic() + 60
    while len(replica_pids(platform, app)) < 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert len(replica_pids(platform, app)) == 2 and set(before) <= set(replica_pids(platform, app))  # no restart

    def ingress_admits_two_replicas() -> bool:  # HAProxy bounds each replica it routes to
        return len(bounded_servers(platform.home, app)) == 2
    wait_for(ingress_admits_two_replicas, timeout=30, every=1)

    auto = platform.cli("endpoints", "update", "iris-ep", "--autoscale", "1:2", "-P", project)
    assert auto.returncode == 0 and "replicas 1:2 (auto)" in auto.stdout, auto.stderr
    shown = json.loads(platform.cli("endpoints", "show", "iris-ep", "-P", project, "--json").stdout)
    assert shown["autoscale"] == {"min": 1, "max": 2} and shown["history"][-1]["kind"] == "config"

    rotated = platform.client().update_endpoint(project, "iris-ep", rotate_key=True)
    assert rotated.key and rotated.key != endpoint["key"]
    assert post(endpoint, INVOKE, PAYLOADS["dataframe_split"]).status_code == 401
    assert post(endpoint, INVOKE, PAYLOADS["dataframe_split"], key=rotated.key).status_code == 200
    endpoint["key"] = rotated.key

    deployed = platform.cli("deploy", "iris/1", "--endpoint", "ops-ep", "--public", "-P", project)
    assert deployed.returncode == 0, deployed.stderr
    public = platform.cli("endpoints", "update", "ops-ep", "--rotate-key", "-P", project)
    assert public.returncode == 1 and "is public: it has no key to rotate" in public.stderr


def test_endpoint_is_listed_and_deleted(platform, endpoint):
    headers = {"Authorization": f"Bearer {platform.alice_token}"}
    base = f"{platform.url}/api/v1/projects/{endpoint['project']}/endpoints"
    assert [e["name"] for e in httpx.get(base, headers=headers).json()] == ["iris-ep", "ops-ep"]
    shown = httpx.get(f"{base}/iris-ep", headers=headers).json()
    assert shown["history"][0]["action"].startswith("create with") and shown["history"][0]["user"] == "alice"
    assert httpx.delete(f"{base}/iris-ep", headers=headers, timeout=60).status_code == 204
    assert httpx.get(f"{base}/iris-ep", headers=headers).status_code == 404


LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def bounded_servers(home: Path, app: str) -> list[str]:
    """The replica server lines of ``app``'s backend in the head's HAProxy config that carry
    the per-replica bounds (``maxconn``/``maxqueue``)."""
    lines, inside = [], False
    for config in (home / "serve-ingress").glob("*/haproxy.cfg"):
        for line in config.read_text().splitlines():
            if line and not line[0].isspace():
                inside = line.strip() == f"backend http-{app}"
            elif inside and line.strip().startswith("server SERVE_REPLICA") and " maxconn 4 maxqueue " in line:
                lines.append(line.strip())
    return lines


def test_every_listening_socket_is_on_loopback_and_no_socket_or_file_is_world_writable(platform, endpoint):
    """With an endpoint deployed: every TCP listener of every process of the instance (Ray, its
    workers and replicas, HAProxy, MLflow, the platform) is on loopback (the serve host), HAProxy
    is the one on the serve port, and no Unix socket, file or directory of the instance is
    writable by other users (data dir, Ray temp dir)."""
    import psutil

    from loopml.launcher.run_state import node_temp_dir
    from tests.integration.platform_fixtures import _descendants

    state = platform.state()
    pids = _descendants([record["pid"] for record in state["processes"]])
    listeners, unix_paths = [], set()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            name = proc.name()
            listeners += [(name, c.laddr.ip, c.laddr.port) for c in proc.net_connections(kind="inet")
                          if c.status == psutil.CONN_LISTEN]
            unix_paths |= {c.laddr for c in proc.net_connections(kind="unix") if c.laddr}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    assert listeners
    assert [entry for entry in listeners if entry[1] not in LOOPBACK] == []
    serve_port = int(endpoint["url"].split(":")[2].split("/")[0])
    assert {name for name, _, port in listeners if port == serve_port} == {"haproxy"}
    temp_dir = next(node_temp_dir(record["cmdline"]) for record in state["processes"] if record["name"] == "ray")
    assert stat.S_IMODE(temp_dir.parent.stat().st_mode) == 0o700  # Ray makes its temp dir 0777

    def others_may_write(path: Path) -> bool:  # writable by others, through dirs they may enter
        try:
            return bool(path.stat().st_mode & 0o002) and all(parent.stat().st_mode & 0o001 for parent in path.parents)
        except FileNotFoundError:  # gone meanwhile (a log rotated, a worker's file)
            return False

    writable = [str(path) for root in (platform.home, temp_dir) for path in [root, *root.rglob("*")]
                if not path.is_symlink() and others_may_write(path)]
    writable += [path for path in unix_paths if not path.startswith("@") and others_may_write(Path(path))]
    assert writable == []
