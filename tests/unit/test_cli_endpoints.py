"""``loopml deploy`` / ``loopml endpoints …`` and the Client's endpoint methods against an in-process fake REST API."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from loopml import client as client_module
from loopml.cli import main
from loopml.client import Client
from loopml.errors import InvalidInput, NotFound

pytestmark = pytest.mark.usefixtures("no_ambient_config")
NOW = "2025-01-01T10:00:00Z"
KEY = "k3y-abcdefghijklmnopqrstuvwx"


def endpoint_json(name: str = "iris-api", version: int = 2, alias: str | None = "champion", public: bool = False,
                  history: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "project": "demo", "name": name, "model": "demo.iris", "version": version, "alias": alias,
        "url": f"http://127.0.0.1:8000/demo/{name}", "canary_version": None, "canary_percent": None,
        "public": public, "replicas": 1, "autoscale": None, "resources": {"custom": {}}, "on_violation": "pass",
        "capture_probabilities": True, "status": "RUNNING",
        "created_at": NOW, "updated_at": NOW,
        "history": history if history is not None else [
            {"at": NOW, "user": "alice", "action": f"create with demo.iris/{version}", "version": version,
             "kind": "stable"}],
    }


@dataclass
class FakeServing:
    """The endpoint routes over one project ``demo``: a key only when an endpoint is created and not public."""

    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = f"{request.method} {request.url.path.removeprefix('/api/v1')}"
        if route == "GET /projects":
            return httpx.Response(200, json=[{"name": "demo", "members": [], "max_concurrent_jobs": None,
                                              "created_at": NOW}])
        if route == "GET /projects/demo/endpoints":
            return httpx.Response(200, json=list(self.endpoints.values()))
        if route == "POST /projects/demo/endpoints":
            body = json.loads(request.content)
            created = body["name"] not in self.endpoints
            version = int(body["model"].partition("/")[2] or 2)
            alias = None if "/" in body["model"] else (body["model"].partition("@")[2] or "champion")
            self.endpoints[body["name"]] = endpoint_json(body["name"], version, alias, body["public"])
            key = KEY if created and not body["public"] else None
            return httpx.Response(201, json={"endpoint": self.endpoints[body["name"]], "key": key})
        match = re.fullmatch(r"(GET|DELETE|PATCH) /projects/demo/endpoints/([^/]+)", route)
        if not match or match[2] not in self.endpoints:
            return httpx.Response(404, json={"message": f"endpoint demo/{match[2] if match else '?'} does not exist",
                                             "reason": "not_found"})
        if match[1] == "DELETE":
            del self.endpoints[match[2]]
            return httpx.Response(204)
        if match[1] == "PATCH":
            body = json.loads(request.content)
            endpoint = self.endpoints[match[2]]
            if "autoscale" in body:
                endpoint.update(replicas=body["autoscale"]["min"], autoscale=body["autoscale"])
            if "replicas" in body:
                endpoint.update(replicas=body["replicas"], autoscale=None)
            return httpx.Response(200, json={"endpoint": endpoint, "key": "n3w" if body.get("rotate_key") else None})
        return httpx.Response(200, json=self.endpoints[match[2]])

    @property
    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.raw_path.decode()}" for r in self.requests]


@pytest.fixture
def serving() -> FakeServing:
    return FakeServing()


@pytest.fixture
def client(serving) -> Client:
    return Client("http://fake", "tok", transport=httpx.MockTransport(serving))


# -- CLI ------------------------------------------------------------------------------------


def test_deploy_prints_url_routes_version_and_the_key_once(run, serving):
    result = run("deploy", "iris@champion", "--endpoint", "iris-api")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert re.search(r"^url: +http://127\.0\.0\.1:8000/demo/iris-api$", out, re.M)
    assert "POST http://127.0.0.1:8000/demo/iris-api/invocations" in out
    assert "POST http://127.0.0.1:8000/demo/iris-api/v2/models/iris-api/infer" in out
    assert re.search(r"^version: +demo\.iris v2 \(champion\)$", out, re.M)
    assert re.search(rf"^key: {KEY}$", out, re.M)
    assert "shown only once" in out
    assert f'curl -H "Authorization: Bearer {KEY}"' in out and "/demo/iris-api/invocations" in out
    assert serving.paths[-1] == "POST /api/v1/projects/demo/endpoints"
    assert json.loads(serving.requests[-1].content) == {"name": "iris-api", "model": "iris@champion",
                                                        "public": False}

    again = run("deploy", "iris/1", "--endpoint", "iris-api", "-P", "demo")
    assert again.exit_code == 0, again.output
    assert re.search(r"^version: +demo\.iris v1$", again.stdout, re.M)
    assert KEY not in again.stdout and "key" not in again.stdout.lower()


def test_deploy_public_shows_no_key_and_sends_the_flags(run, serving):
    result = run("deploy", "iris", "--endpoint", "open", "--public", "--replicas", "3", "-P", "demo")
    assert result.exit_code == 0, result.output
    assert "public (no key)" in result.stdout
    assert "Bearer" not in result.stdout and "shown only once" not in result.stdout
    assert json.loads(serving.requests[-1].content) == {"name": "open", "model": "iris", "public": True,
                                                        "replicas": 3}


def test_deploy_autoscale_sends_the_bounds(run, serving):
    result = run("deploy", "iris", "--endpoint", "auto", "--autoscale", "1:4", "-P", "demo")
    assert result.exit_code == 0, result.output
    assert json.loads(serving.requests[-1].content) == {"name": "auto", "model": "iris", "public": False,
                                                        "autoscale": {"min": 1, "max": 4}}


@pytest.mark.parametrize("args, says", [
    (("--autoscale", "4:1"), "autoscale max (1) is below min (4)"),
    (("--autoscale", "two"), "invalid autoscale 'two': use MIN:MAX"),
    (("--autoscale", "1:99"), "autoscale.max: Input should be less than or equal to 16"),
    (("--autoscale", "1:2", "--replicas", "2"), "give either replicas or autoscale, not both"),
], ids=["reversed", "not-a-range", "too-many", "both"])
def test_deploy_rejects_bad_scaling_before_any_request(run, serving, args, says):
    result = run("deploy", "iris", "--endpoint", "auto", *args, "-P", "demo")
    assert result.exit_code == 1, result.output
    assert says in result.stderr and result.stderr.count("\n") == 1
    assert serving.requests == []


def test_deploy_resources_are_sent_as_custom_ray_resources(run, serving):
    result = run("deploy", "iris", "--endpoint", "pinned", "--resource", "node2=0.1", "--resource", "fast=1",
                 "-P", "demo")
    assert result.exit_code == 0, result.output
    assert json.loads(serving.requests[-1].content) == {"name": "pinned", "model": "iris", "public": False,
                                                        "resources": {"custom": {"node2": 0.1, "fast": 1.0}}}


@pytest.mark.parametrize("resources, says", [
    ({"custom": {"CPU": 1}}, "resources.custom: invalid custom resource name 'CPU'"),
    ({"custom": {"2fast": 1}}, "resources.custom: invalid custom resource name '2fast'"),
    ({"custom": {"node2": 0}}, "resources.custom: custom resource 'node2' must be a positive amount"),
    ({"custom": {"node2": -1}}, "resources.custom: custom resource 'node2' must be a positive amount"),
    ({"custom": {"node2": "lots"}}, "resources.custom.node2: Input should be a valid number"),
    ({"node2": 0.1}, 'resources: unknown field(s) node2: an endpoint replica takes only custom Ray resources, '
                     'given as {"custom": {"NAME": AMOUNT}}'),
    ({"cpus": 1, "custom": {}}, "resources: unknown field(s) cpus"),
], ids=["reserved-name", "name-not-a-letter-first", "zero", "negative", "not-a-number", "not-under-custom",
        "cpus-not-settable"])
def test_deploy_rejects_bad_resources_before_any_request(client, serving, resources, says):
    with pytest.raises(InvalidInput) as refused:
        client.deploy("demo", "iris", "pinned", resources=resources)
    assert str(refused.value).startswith(says) and refused.value.details["field"].startswith("resources")
    assert serving.requests == []


def test_deploy_cli_rejects_a_resource_without_a_number(run, serving):
    result = run("deploy", "iris", "--endpoint", "pinned", "--resource", "node2=lots", "-P", "demo")
    assert result.exit_code == 2 and "amount of 'node2' is not a number: 'lots'" in result.stderr
    assert serving.requests == []


def test_show_lists_the_replicas_resources(run, serving):
    serving.endpoints = {"iris-api": {**endpoint_json(), "resources": {"custom": {"node2": 0.1}}}}
    shown = run("endpoints", "show", "iris-api", "-P", "demo").stdout
    assert re.search(r"^resources: +node2=0\.1$", shown, re.M)


def test_update_changes_scaling_and_shows_a_rotated_key_once(run, serving):
    serving.endpoints = {"iris-api": endpoint_json()}
    scaled = run("endpoints", "update", "iris-api", "--autoscale", "2:5", "-P", "demo")
    assert scaled.exit_code == 0, scaled.output
    assert scaled.stdout == "endpoint iris-api: demo.iris v2 (champion), replicas 2:5 (auto)\n"
    assert serving.paths[-1] == "PATCH /api/v1/projects/demo/endpoints/iris-api"
    assert json.loads(serving.requests[-1].content) == {"autoscale": {"min": 2, "max": 5}}
    shown = run("endpoints", "show", "iris-api", "-P", "demo").stdout
    assert re.search(r"^replicas: +2:5 \(auto\)$", shown, re.M)
    rotated = run("endpoints", "update", "iris-api", "--rotate-key", "-P", "demo")
    assert json.loads(serving.requests[-1].content) == {"rotate_key": True}
    assert re.search(r"^key: n3w$", rotated.stdout, re.M) and "previous key no longer works" in rotated.stdout


def test_update_without_a_change_is_refused_before_any_request(run, serving):
    result = run("endpoints", "update", "iris-api", "-P", "demo")
    assert result.exit_code == 1
    assert "nothing to change" in result.stderr and serving.requests == []


def test_deploy_json_is_the_answer_with_the_key(run):
    data = json.loads(run("deploy", "iris@champion", "--endpoint", "iris-api", "--json").stdout)
    assert data["key"] == KEY and data["endpoint"] == endpoint_json("iris-api")


@pytest.mark.parametrize("args, says", [
    (("deploy", "iris@Champion!", "--endpoint", "iris-api"), "invalid model reference 'iris@Champion!'"),
    (("deploy", "iris", "--endpoint", "Iris API"), "invalid endpoint name 'Iris API'"),
], ids=["bad-reference", "bad-endpoint-name"])
def test_deploy_rejects_bad_input_before_any_request(run, serving, args, says):
    result = run(*args, "-P", "demo")
    assert result.exit_code == 1
    assert says in result.stderr and result.stderr.startswith("error: ") and result.stderr.count("\n") == 1
    assert serving.requests == []


def test_list_is_a_table(run, serving):
    serving.endpoints = {"iris-api": endpoint_json(), "open": endpoint_json("open", 1, None, public=True)}
    result = run("endpoints", "list")
    assert result.exit_code == 0, result.output
    header, iris, open_ = result.stdout.splitlines()
    assert header.split() == ["NAME", "MODEL", "STATUS", "ACCESS", "REPLICAS", "URL"]
    assert iris.split() == ["iris-api", "demo.iris", "v2", "(champion)", "RUNNING", "key", "1",
                            "http://127.0.0.1:8000/demo/iris-api"]
    assert open_.split()[:5] == ["open", "demo.iris", "v1", "RUNNING", "public"]
    assert serving.paths[-1] == "GET /api/v1/projects/demo/endpoints"


def test_list_json(run, serving):
    serving.endpoints = {"iris-api": endpoint_json()}
    assert json.loads(run("endpoints", "list", "-P", "demo", "--json").stdout) == [endpoint_json()]


def test_show_prints_fields_and_history(run, serving):
    serving.endpoints = {"iris-api": endpoint_json(history=[
        {"at": NOW, "user": "alice", "action": "create with demo.iris/1", "version": 1, "kind": "stable"},
        {"at": NOW, "user": "bob", "action": "deploy demo.iris/2", "version": 2, "kind": "stable"},
    ])}
    result = run("endpoints", "show", "iris-api", "-P", "demo")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert re.search(r"^status: +RUNNING$", out, re.M) and re.search(r"^access: +key$", out, re.M)
    assert "POST http://127.0.0.1:8000/demo/iris-api/v2/models/iris-api/infer" in out
    history = out.split("history:\n")[1].splitlines()
    assert [line.split()[2:] for line in history] == [["alice", "create", "with", "demo.iris/1"],
                                                      ["bob", "deploy", "demo.iris/2"]]
    assert json.loads(run("endpoints", "show", "iris-api", "--json").stdout) == serving.endpoints["iris-api"]


def test_delete(run, serving):
    serving.endpoints = {"iris-api": endpoint_json()}
    result = run("endpoints", "delete", "iris-api", "-P", "demo")
    assert result.exit_code == 0, result.output
    assert result.stdout == "deleted endpoint iris-api\n"
    assert serving.paths[-1] == "DELETE /api/v1/projects/demo/endpoints/iris-api" and not serving.endpoints


@pytest.mark.parametrize("args", [
    ("endpoints", "show", "nope"),
    ("endpoints", "delete", "nope"),
], ids=["show", "delete"])
def test_unknown_endpoint_is_one_error_line(run, args):
    result = run(*args, "-P", "demo")
    assert result.exit_code == 1
    assert result.stderr == "error: endpoint demo/nope does not exist\n"
    assert "Traceback" not in result.output


def test_help_lists_deploy_and_endpoints(run):
    out = run("--help").stdout
    assert re.search(r"^  deploy ", out, re.M) and re.search(r"^  endpoints ", out, re.M)


# -- Client ---------------------------------------------------------------------------------


def test_client_methods_parse_the_answers(client, serving):
    deployed = client.deploy("demo", "iris/2", "iris-api", replicas=2)
    assert deployed.key == KEY and deployed.endpoint.version == 2 and deployed.endpoint.alias is None
    assert [e.name for e in client.endpoints("demo")] == ["iris-api"]
    assert client.endpoint("demo", "iris-api").history[0].user == "alice"
    updated = client.update_endpoint("demo", "iris-api", replicas=3)
    assert updated.endpoint.replicas == 3 and updated.endpoint.autoscale is None and updated.key is None
    assert client.delete_endpoint("demo", "iris-api") is None
    with pytest.raises(NotFound):
        client.endpoint("demo", "iris-api")


def test_only_deploy_waits_longer(monkeypatch):
    timeouts: dict[str, float] = {}

    def answer(request: httpx.Request) -> httpx.Response:
        timeouts[request.method] = request.extensions["timeout"]["read"]
        if request.method == "POST":
            return httpx.Response(201, json={"endpoint": endpoint_json(), "key": None})
        return httpx.Response(200, json=[])

    with Client("http://fake", "tok", transport=httpx.MockTransport(answer)) as client:
        client.deploy("demo", "iris", "iris-api")
        client.endpoints("demo")
    assert timeouts == {"POST": client_module.DEPLOY_TIMEOUT_S, "GET": 30}


def test_client_checks_the_endpoint_name_before_any_request(client, serving):
    with pytest.raises(InvalidInput, match="invalid endpoint name"):
        client.endpoint("demo", "../x")
    assert serving.requests == []


def test_deploy_canary_and_promote_rollback_commands():
    with_canary = {**endpoint_json(), "canary_version": 3, "canary_percent": 20.0}
    transport_calls = []

    def promote_answer(request: httpx.Request) -> httpx.Response:
        transport_calls.append(f"{request.method} {request.url.path}")
        return httpx.Response(200, json={**endpoint_json(version=3), "alias": None})

    client = Client("http://fake", "tok", transport=httpx.MockTransport(promote_answer))
    promoted = CliRunner().invoke(main, ["endpoints", "promote", "iris-api", "-P", "demo"], obj=client)
    assert promoted.exit_code == 0 and "now serves demo.iris v3" in promoted.stdout
    rolled = CliRunner().invoke(main, ["endpoints", "rollback", "iris-api", "-P", "demo"], obj=client)
    assert rolled.exit_code == 0
    assert transport_calls == ["POST /api/v1/projects/demo/endpoints/iris-api/promote",
                               "POST /api/v1/projects/demo/endpoints/iris-api/rollback"]
    from loopml.cli.endpoints import version_text
    from loopml.serving.models import Endpoint

    assert version_text(Endpoint(**with_canary)).endswith("+ canary v3 at 20%")
    bad = CliRunner().invoke(main, ["deploy", "iris/3", "--endpoint", "iris-api", "--canary", "150", "-P", "demo"],
                             obj=client)
    assert bad.exit_code == 2
