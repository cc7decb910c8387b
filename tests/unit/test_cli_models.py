"""``loopml models …`` and the Client's model methods against an in-process fake REST API."""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from loopml.cli.util import job_models_text
from loopml.client import Client
from loopml.errors import Forbidden, InvalidInput, NotFound
from loopml.executor.models import Job
from tests.unit.payloads import job_json
from tests.unit.test_cli import HEAVY

pytestmark = pytest.mark.usefixtures("no_ambient_config")
NOW = "2025-01-01T10:00:00Z"


def version_json(version: int, metrics: dict[str, float] | None = None, params: dict[str, str] | None = None,
                 aliases: list[str] | None = None, job_id: str | None = None) -> dict[str, Any]:
    run_id = f"{version:0>4}abcdef0123456789"
    return {
        "version": version, "aliases": aliases or [], "created_at": NOW, "status": "READY",
        "source": f"runs:/{run_id}/model", "metrics": metrics or {}, "params": params or {}, "flavor": "sklearn",
        "reference": None,
        "lineage": {"job_id": job_id or f"j{version}", "run_id": run_id, "user": "alice", "notebook": "train.ipynb",
                    "notebook_sha256": None, "parameters": {}, "pipeline_run_id": None,
                    "pipeline_step": None, "endpoints": []},
    }


def model_json(*versions: dict[str, Any], name: str = "iris") -> dict[str, Any]:
    aliases = {alias: v["version"] for v in versions for alias in v["aliases"]}
    return {"name": name, "registered_name": f"demo.{name}", "latest_version": versions[0]["version"] if versions else None,
            "aliases": aliases, "updated_at": NOW, "versions": list(versions), "alias_history": []}


@dataclass
class FakeRegistry:
    """The model routes over one project ``demo``, moving aliases and recording history like the server."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    fail: tuple[int, dict[str, Any]] | None = None
    requests: list[httpx.Request] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.fail:
            return httpx.Response(self.fail[0], json=self.fail[1])
        route = f"{request.method} {request.url.path.removeprefix('/api/v1')}"
        if route == "GET /projects":
            return httpx.Response(200, json=[{"name": "demo", "members": [], "max_concurrent_jobs": None,
                                              "created_at": NOW}])
        if route == "GET /projects/demo/models":
            summaries = [{k: m[k] for k in ("name", "registered_name", "latest_version", "aliases", "updated_at")}
                         for m in self.models.values()]
            return httpx.Response(200, json=summaries)
        match = re.fullmatch(r"(GET|POST|DELETE) /projects/demo/models/([^/]+)(/aliases)?(?:/([^/]+))?", route)
        if not match or match[2] not in self.models:
            return httpx.Response(404, json={"message": f"no route {route}", "reason": "not_found"})
        model = self.models[match[2]]
        if match[1] == "POST":
            body = json.loads(request.content)
            self._move(model, body["alias"], body["version"])
        elif match[1] == "DELETE":
            self._move(model, match[4], None)
        return httpx.Response(200, json=model)

    @staticmethod
    def _move(model: dict[str, Any], alias: str, version: int | None) -> None:
        previous = model["aliases"].pop(alias, None)
        if version is not None:
            model["aliases"][alias] = version
            if alias == "champion" and model["aliases"].get("challenger") == version:
                del model["aliases"]["challenger"]
        for v in model["versions"]:
            v["aliases"] = sorted(a for a, n in model["aliases"].items() if n == v["version"])
        model["alias_history"].append({"alias": alias, "version": version, "previous": previous, "user": "alice",
                                       "at": NOW})

    @property
    def paths(self) -> list[str]:
        return [f"{r.method} {r.url.raw_path.decode()}" for r in self.requests]


@pytest.fixture
def registry() -> FakeRegistry:
    return FakeRegistry(models={"iris": model_json(
        version_json(2, {"accuracy": 0.95, "f1": 0.9}, {"C": "0.05"}, aliases=["challenger"]),
        version_json(1, {"accuracy": 0.9, "loss": 0.3}, {"C": "1.0", "penalty": "l2"}, aliases=["champion"]),
    )})


@pytest.fixture
def client(registry) -> Client:
    return Client("http://fake", "tok", transport=httpx.MockTransport(registry))


def cells(table: str, label: str) -> list[str]:
    """The cells of the row starting with ``label`` in an ``echo_table`` table, cut at the header's columns."""
    lines = table.splitlines()
    header = next(line for line in lines if line.startswith("VERSION"))
    starts = [m.start() for m in re.finditer(r"(?<=  )\S", header)]
    row = next(line for line in lines if line.startswith(label + " ")).ljust(len(header) + 40)
    return [row[a:b].strip() for a, b in zip(starts, starts[1:] + [len(row)], strict=True)]


# -- CLI ------------------------------------------------------------------------------------


def test_list_is_a_table_with_aliases_champion_first(run, registry):
    registry.models["wine"] = model_json(version_json(1), name="wine")
    result = run("models", "list")
    assert result.exit_code == 0, result.output
    header, iris, wine = result.stdout.splitlines()
    assert header.split() == ["NAME", "LATEST", "ALIASES", "UPDATED"]
    assert iris.split()[:4] == ["iris", "2", "champion=1", "challenger=2"]
    assert wine.split()[:2] == ["wine", "1"] and "=" not in wine
    assert registry.paths[-1] == "GET /api/v1/projects/demo/models"  # the only project is the default


def test_list_json_is_the_summaries(run):
    data = json.loads(run("models", "list", "-P", "demo", "--json").stdout)
    assert data == [{"name": "iris", "registered_name": "demo.iris", "latest_version": 2,
                     "aliases": {"challenger": 2, "champion": 1}, "updated_at": "2025-01-01T10:00:00Z"}]


def test_show_puts_versions_side_by_side_newest_first_with_the_union_of_metrics_and_params(run):
    result = run("models", "show", "iris", "-P", "demo")
    assert result.exit_code == 0, result.output
    table = result.stdout
    assert re.search(r"^model: +demo\.iris$", table, re.M) and "champion=1 challenger=2" in table
    assert cells(table, "VERSION") == ["2", "1"]
    assert cells(table, "aliases") == ["challenger", "champion"]
    assert cells(table, "job") == ["j2", "j1"] and cells(table, "run") == ["0002abcd", "0001abcd"]
    assert cells(table, "user") == ["alice", "alice"] and cells(table, "status") == ["READY", "READY"]
    assert cells(table, "metric: accuracy") == ["0.95", "0.9"]
    assert cells(table, "metric: f1") == ["0.9", ""]
    assert cells(table, "metric: loss") == ["", "0.3"]
    assert cells(table, "param: C") == ["0.05", "1.0"]
    assert cells(table, "param: penalty") == ["", "l2"]
    labels = [line.split("  ")[0] for line in table.splitlines()]
    assert labels.index("status") < labels.index("metric: accuracy") < labels.index("param: C")


def test_show_has_at_most_six_columns_and_says_how_many_are_hidden(run, registry):
    registry.models["iris"] = model_json(*(version_json(n) for n in range(8, 0, -1)))
    result = run("models", "show", "demo.iris", "-P", "demo")
    assert cells(result.stdout, "VERSION") == ["8", "7", "6", "5", "4", "3"]
    assert "(2 older versions not shown; --json prints all)" in result.stdout


def test_show_json_is_the_whole_model(run, registry):
    data = json.loads(run("models", "show", "iris", "--json").stdout)
    assert data == registry.models["iris"]


def test_promote_says_which_version_it_replaced(run, registry):
    result = run("models", "promote", "iris", "2", "-P", "demo")
    assert result.exit_code == 0, result.output
    assert result.stdout == "version 2 of demo.iris is now champion (was 1)\n"
    assert registry.paths[-1] == "POST /api/v1/projects/demo/models/iris/aliases"
    assert json.loads(registry.requests[-1].content) == {"alias": "champion", "version": 2}
    assert run("models", "promote", "iris", "2").stdout == "version 2 of demo.iris is still champion\n"


def test_promote_json_prints_the_model_after_the_move(run):
    data = json.loads(run("models", "promote", "demo.iris", "2", "--json").stdout)
    assert data["aliases"] == {"champion": 2}
    assert data["alias_history"][-1] | {"at": None} == {"alias": "champion", "version": 2, "previous": 1,
                                                         "user": "alice", "at": None}


def test_alias_and_unalias(run, registry):
    assert run("models", "alias", "iris", "staging", "1").stdout == "version 1 of demo.iris is now staging (was none)\n"
    result = run("models", "unalias", "iris", "staging")
    assert result.stdout == "removed alias staging from demo.iris (was on version 1)\n"
    assert registry.paths[-1] == "DELETE /api/v1/projects/demo/models/iris/aliases/staging"


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["list"], id="list"),
        pytest.param(["show", "iris"], id="show"),
        pytest.param(["promote", "iris", "2"], id="promote"),
        pytest.param(["alias", "iris", "staging", "1"], id="alias"),
        pytest.param(["unalias", "iris", "champion"], id="unalias"),
    ],
)
def test_a_server_refusal_is_one_error_line_and_exit_1(run, registry, args):
    registry.fail = (403, {"message": "user 'bob' is not a member of project 'demo'", "reason": "forbidden"})
    result = run("models", *args, "-P", "demo")
    assert result.exit_code == 1
    assert result.stderr == "error: user 'bob' is not a member of project 'demo'\n"
    assert result.stdout == "" and "Traceback" not in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(["show", "../x"], "invalid model name '../x': it contains a path separator", id="path-separator"),
        pytest.param(["show", ".."], "invalid model name '..': it contains '..'", id="dotdot"),
        pytest.param(["promote", "other.iris", "2"], "model 'other.iris' belongs to project 'other', not 'demo'",
                     id="other-project"),
        pytest.param(["alias", "iris", "latest", "2"], "invalid alias 'latest'", id="reserved-alias"),
        pytest.param(["unalias", "iris", "v2"], "invalid alias 'v2'", id="reserved-alias-unalias"),
    ],
)
def test_bad_names_and_aliases_are_refused_before_any_request(run, registry, args, message):
    result = run("models", *args, "-P", "demo")
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: {message}") and result.stderr.count("\n") == 1
    assert registry.requests == []


def test_version_must_be_a_positive_number(run, registry):
    result = run("models", "promote", "iris", "0", "-P", "demo")
    assert result.exit_code == 2 and registry.requests == []


def test_job_models_text_lists_the_versions_a_job_registered():
    job = Job.model_validate(job_json(models=[{"name": "demo.iris", "version": 2}, {"name": "demo.wine", "version": 1}]))
    assert job_models_text(job) == "demo.iris v2, demo.wine v1"
    assert job_models_text(Job.model_validate(job_json())) is None


LAZY_CHECK = """
import sys, httpx
from loopml.cli import main
from loopml.client import Client
sys.path.insert(0, %r)
from tests.unit.test_cli_models import FakeRegistry, model_json, version_json
registry = FakeRegistry(models={"iris": model_json(version_json(1, {"a": 1.0}, aliases=["champion"]))})
client = Client("http://fake", "t", transport=httpx.MockTransport(registry))
for args in (["models", "--help"], ["models", "list", "-P", "demo"], ["models", "show", "iris", "-P", "demo"],
             ["models", "promote", "iris", "1", "-P", "demo"]):
    main(args, obj=client, standalone_mode=False)
heavy = sorted(m for m in %r if m in sys.modules)
assert not heavy, heavy
"""


def test_models_commands_do_not_import_heavy_packages(request):
    root = str(request.config.rootpath)
    check = subprocess.run([sys.executable, "-c", LAZY_CHECK % (root, HEAVY)], capture_output=True, text=True,
                           timeout=60, cwd=root)
    assert check.returncode == 0, check.stderr
    assert "champion=1" in check.stdout and "metric: a" in check.stdout


# -- Client ---------------------------------------------------------------------------------


def test_client_returns_models_and_quotes_path_segments(client, registry):
    assert [m.name for m in client.models("demo")] == ["iris"]
    model = client.model("demo", "demo.iris")
    assert [v.version for v in model.versions] == [2, 1] and model.versions[1].params == {"C": "1.0", "penalty": "l2"}
    assert isinstance(model.updated_at, dt.datetime)
    assert client.promote("demo", "iris", 2).aliases == {"champion": 2}
    assert client.set_alias("demo", "iris", "staging", 1).aliases == {"champion": 2, "staging": 1}
    assert client.delete_alias("demo", "iris", "staging").aliases == {"champion": 2}
    assert registry.paths == [
        "GET /api/v1/projects/demo/models",
        "GET /api/v1/projects/demo/models/iris",
        "POST /api/v1/projects/demo/models/iris/aliases",
        "POST /api/v1/projects/demo/models/iris/aliases",
        "DELETE /api/v1/projects/demo/models/iris/aliases/staging",
    ]
    with pytest.raises(NotFound):  # the fake knows only "demo"
        client.models("a b/c")
    assert registry.paths[-1] == "GET /api/v1/projects/a%20b%2Fc/models"


@pytest.mark.parametrize("job_id", [".", ".."])
def test_dot_segments_are_quoted_so_httpx_does_not_resolve_them(client, registry, job_id):
    with pytest.raises(NotFound):  # unquoted, httpx would have asked for /projects/demo(/jobs) instead
        client.job("demo", job_id)
    assert registry.paths == [f"GET /api/v1/projects/demo/jobs/{job_id.replace('.', '%2E')}"]


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda c: c.model("demo", "a/b"), id="model"),
        pytest.param(lambda c: c.promote("demo", "..", 1), id="promote"),
        pytest.param(lambda c: c.set_alias("demo", "iris", "Champion", 1), id="alias"),
        pytest.param(lambda c: c.set_alias("demo", "iris", "staging", 0), id="version"),
        pytest.param(lambda c: c.delete_alias("demo", "iris", "../x"), id="unalias"),
    ],
)
def test_client_refuses_bad_names_aliases_and_versions_before_any_request(client, registry, call):
    with pytest.raises(InvalidInput):
        call(client)
    assert registry.requests == []


def test_client_raises_the_servers_refusal(client, registry):
    registry.fail = (403, {"message": "not a member", "reason": "forbidden"})
    with pytest.raises(Forbidden, match="not a member"):
        client.promote("demo", "iris", 2)


def test_a_version_a_pipeline_made_names_its_run_and_step_after_its_job():
    from loopml.cli.models import version_rows
    from loopml.registry.models import ModelVersion

    made = version_json(2)
    made["lineage"].update(pipeline_run_id="r" * 16, pipeline_step="train")
    rows = version_rows([ModelVersion.model_validate(made), ModelVersion.model_validate(version_json(1))])
    labels = [row[0] for row in rows]
    assert rows[labels.index("pipeline")] == ["pipeline", f"{'r' * 16} (train)", None]
    assert labels.index("job") < labels.index("pipeline")
    assert "pipeline" not in [row[0] for row in version_rows([ModelVersion.model_validate(version_json(1))])]
