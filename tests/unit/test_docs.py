"""The docs as a tested contract: every CLI subcommand, magic, REST route and setting is
documented, and every config in docs/configs loads and is what the docs say it is.

What "documented" means here (the docs are README.md and docs/*.md):

- **CLI**: each command path of ``loopml.cli.main``, groups included and walked recursively
  (``jobs``, ``jobs list``, ``endpoints update``…), appears as the text ``loopml <path>``.
- **Magics**: the magic's grammar is the CLI's click tree. Each command the magic answers
  with a panel (``PANELS`` in jupyter_ext/magics.py) appears in docs/notebook.md as
  ``%loopml <path>``, and every ``%loopml <words>`` written in the docs is a command of the
  CLI (``show|cancel`` are alternatives, ``[word]`` an optional word).
- **REST**: each route of the app's OpenAPI is a table row ``| METHOD | `path` |`` in
  docs/rest-api.md, its path relative to ``/api/v1``; parameter names (``{id}`` for
  ``{job_id}``) and a query string do not matter. Each such row is a route of the app. The
  routes the OpenAPI leaves out (admin panel, browser login, capture) appear in the docs as
  ``METHOD /path``, the path relative to the service's base URL.
- **Settings**: each field ``x`` of ``Settings`` appears as `` `x` ``, each field ``y`` of
  ``OAuthSettings`` as `` `oauth.y` `` (docs/operations.md has the table). Each ``toml`` code
  block in the docs is a valid ``config.toml``, and together they show every field of
  ``TokenUser`` (``[tokens."…"]``) and ``ProjectSeed`` (``[[projects]]``).
- **Configs**: docs/configs/*.yaml load with ``yaml.safe_load`` and *.toml with ``tomllib``;
  each is checked for what it is meant to show (see the tests below), without any network.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import tomllib
import types
from pathlib import Path

import click
import pytest
import yaml
from traitlets.config import Config

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
CONFIGS = DOCS / "configs"
REST_DOC = DOCS / "rest-api.md"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


@functools.cache
def all_docs() -> str:
    return "\n".join(path.read_text() for path in doc_files())


def missing_report(what: str, missing: list[str], where: str) -> str:
    return f"{len(missing)} {what} undocumented: {', '.join(missing)}. Document them in {where}."


# -- CLI --------------------------------------------------------------------------------------



def test_every_cli_subcommand_is_documented():
    from loopml.cli import command_paths

    paths = [path for path, _ in command_paths()]
    assert "jobs list" in paths and "endpoints update" in paths  # the walk reaches nested commands
    text = all_docs()
    missing = [f"`loopml {path}`" for path in paths
               if not re.search(rf"(?<![%\w])loopml {re.escape(path)}(?![\w-])", text)]
    assert not missing, missing_report(
        "CLI command(s)", missing, "docs/user-guide.md (commands users run), docs/admin-guide.md (projects, "
        "policies, alerts) or docs/operations.md (up, down, status), written as `loopml <command>`")


# -- magics -----------------------------------------------------------------------------------


MAGIC_LINE = re.compile(r"%%?loopml((?:[ \t]+[\w\[\]|-]+){1,2})")


def documented_magics(text: str) -> set[str]:
    """``%loopml`` commands written in ``text`` (their first one or two words), with ``[word]``
    and ``a|b`` expanded."""
    found: set[str] = set()
    for match in MAGIC_LINE.finditer(text):
        words = [[w for w in word.strip("[]").split("|") if w] for word in match.group(1).split()]
        for first in words[0]:
            found.add(first)
            for second in words[1] if len(words) > 1 else ():
                found.add(f"{first} {second}")
    return found


def test_every_panel_of_the_magic_is_documented():
    from loopml.jupyter_ext.magics import PANELS

    documented = documented_magics((DOCS / "notebook.md").read_text())
    missing = [f"`%loopml {path}`" for path in PANELS if path not in documented]
    assert not missing, missing_report(
        "magic panel(s)", missing, "the table of docs/notebook.md (which panel each command returns), "
        "written as `%loopml <command>`")


def test_every_magic_in_the_docs_is_a_command_of_the_cli():
    from loopml.cli import command_paths, main

    paths = {path for path, _ in command_paths()}
    stale = []
    for written in sorted(documented_magics(all_docs())):
        first, _, second = written.partition(" ")
        command = main.commands.get(first)
        if first.startswith("-"):
            continue
        if command is None or (isinstance(command, click.Group) and second and not second.startswith("-")
                               and written not in paths):
            stale.append(f"`%loopml {written}`")
    assert not stale, (f"the docs write magics that are no command of the CLI (the magic's only grammar): "
                       f"{', '.join(stale)}; write them as `loopml --help` lists them")


# -- REST -------------------------------------------------------------------------------------


def route_key(method: str, path: str) -> str:
    """``METHOD /path`` with the query string dropped and every ``{parameter}`` as ``{}``."""
    path = re.sub(r"\{[^}]*\}", "{}", path.split("?")[0])
    return f"{method.upper()} {path.rstrip('/') or '/'}"


TABLE_ROW = re.compile(rf"^\|\s*({'|'.join(METHODS)})\s*\|\s*`([^`]+)`", re.M | re.I)
IN_TEXT = re.compile(rf"\b({'|'.join(METHODS)})\s+`?(/[^\s`|),]*)")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    """The platform app with default settings (building it starts no service)."""
    from loopml.server.app import create_app
    from loopml.settings import load_settings

    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("LOOPML_")]:
            patch.delenv(name)
        settings = load_settings(data_dir=tmp_path_factory.mktemp("home"))
        return create_app(settings), settings


def app_routes(app) -> list[tuple[str, str, bool]]:
    """``(method, path, in_openapi)`` of each route the app's routers declare. FastAPI 0.165
    keeps included routers as wrappers that ``iter_route_contexts`` unfolds; older releases
    list the routes themselves."""
    from fastapi import routing

    contexts = routing.iter_route_contexts(app.routes) if hasattr(routing, "iter_route_contexts") else app.routes
    return [(method, context.path, context.include_in_schema)
            for context in contexts if isinstance(getattr(context, "original_route", context), routing.APIRoute)
            for method in context.methods]


def api_routes(app, settings) -> set[str]:
    """The OpenAPI's routes, relative to the API prefix."""
    return {route_key(method, path.removeprefix(settings.api_prefix))
            for path, operations in app.openapi()["paths"].items() for method in operations}


def test_every_rest_route_is_in_the_rest_api_doc(app):
    application, settings = app
    routes = api_routes(application, settings)
    assert "GET /projects/{}/jobs" in routes
    rows = {route_key(method, path) for method, path in TABLE_ROW.findall(REST_DOC.read_text())}
    missing = sorted(routes - rows)
    assert not missing, missing_report(
        "REST route(s)", missing, "a table of docs/rest-api.md, as a row | METHOD | `/path` | (relative to /api/v1)")
    every_route = {route_key(method, path.removeprefix(settings.api_prefix))
                   for method, path, _ in app_routes(application)}
    stale = sorted(rows - every_route)
    assert not stale, f"docs/rest-api.md documents routes the app does not have: {stale}; fix or remove the rows"


def test_every_route_outside_the_openapi_is_documented(app):
    application, settings = app
    base = settings.base_url.rstrip("/")
    hidden = {route_key(method, path.removeprefix(base)) for method, path, in_openapi in app_routes(application)
              if not in_openapi}
    assert "POST /admin/projects" in hidden and "GET /login" in hidden
    text = all_docs()
    documented = {route_key(method, path) for method, path in (*TABLE_ROW.findall(text), *IN_TEXT.findall(text))}
    missing = sorted(hidden - documented)
    assert not missing, missing_report(
        "route(s) outside the OpenAPI", missing, "docs/admin-guide.md (admin panel) or docs/security.md (login, "
        "capture), written as `METHOD /path` relative to the service's base URL")


# -- settings ---------------------------------------------------------------------------------


def test_every_setting_is_documented():
    from loopml.settings import OAuthSettings, Settings

    text = all_docs()
    missing = [f"`{name}`" for name in Settings.model_fields if f"`{name}`" not in text]
    missing += [f"`oauth.{name}`" for name in OAuthSettings.model_fields if f"`oauth.{name}`" not in text]
    assert not missing, missing_report(
        "setting(s)", missing, "the settings table of docs/operations.md, written as `name` (`oauth.name` for "
        "the [oauth] table), with its LOOPML_* variable, default and meaning")


def toml_examples() -> list[tuple[str, str]]:
    blocks = []
    for path in doc_files():
        for index, block in enumerate(re.findall(r"```toml\n(.*?)```", path.read_text(), re.S)):
            blocks.append((f"{path.relative_to(ROOT)} toml block {index + 1}", block))
    return blocks


def test_every_toml_example_is_a_valid_config_file():
    from loopml.settings import ProjectSeed, Settings, TokenUser

    examples = toml_examples()
    assert examples, "docs/operations.md should show a config.toml"
    token_fields: set[str] = set()
    project_fields: set[str] = set()
    for where, block in examples:
        try:
            data = tomllib.loads(block)
        except tomllib.TOMLDecodeError as exc:
            pytest.fail(f"{where} is not valid TOML ({exc}): fix the example")
        Settings.model_validate(data)  # extra="forbid": a misspelt setting fails here, naming it
        for user in data.get("tokens", {}).values():
            token_fields |= set(user)
        for project in data.get("projects", []):
            project_fields |= set(project)
    missing = [f"tokens.*.{n}" for n in TokenUser.model_fields if n not in token_fields]
    missing += [f"projects[].{n}" for n in ProjectSeed.model_fields if n not in project_fields]
    assert not missing, missing_report(
        "config.toml field(s)", missing, "a ```toml example of docs/operations.md ([tokens.\"…\"] and [[projects]])")


# -- docs/configs -----------------------------------------------------------------------------


def load_yaml(name: str):
    path = CONFIGS / name
    assert path.exists(), f"docs/configs/{name} is missing: the scale-out guide (docs/scale-out.md) refers to it"
    return yaml.safe_load(path.read_text())


def load_toml(name: str) -> dict:
    path = CONFIGS / name
    assert path.exists(), f"docs/configs/{name} is missing: the scale-out guide (docs/scale-out.md) refers to it"
    return tomllib.loads(path.read_text())


def env_of(entries) -> dict:
    """Kubernetes-style ``env`` (a list of {name, value | valueFrom}, or z2jh's dict) as name -> entry."""
    if isinstance(entries, dict):
        return {name: value if isinstance(value, dict) else {"value": value} for name, value in entries.items()}
    return {entry["name"]: entry for entry in entries}


def test_every_config_loads():
    files = sorted(CONFIGS.iterdir())
    assert {f.name for f in files} >= {"kuberay-raycluster.yaml", "z2jh-values.yaml", "mlflow-postgres-s3.yaml",
                                       "oidc-keycloak.toml", "oidc-github.toml"}
    text = all_docs()
    for path in files:
        assert path.suffix in (".yaml", ".toml"), f"docs/configs/{path.name}: only .yaml and .toml configs are checked"
        loaded = yaml.safe_load(path.read_text()) if path.suffix == ".yaml" else tomllib.loads(path.read_text())
        assert loaded, f"docs/configs/{path.name} is empty"
        assert f"configs/{path.name}" in text, f"docs/configs/{path.name} is not referred to by any doc (scale-out.md)"


def ray_cluster() -> tuple[dict, int, int]:
    cluster = load_yaml("kuberay-raycluster.yaml")
    head = cluster["spec"]["headGroupSpec"]
    gcs = int(head["rayStartParams"].get("port", 6379))
    dashboard = int(head["rayStartParams"].get("dashboard-port", 8265))
    return cluster, gcs, dashboard


def test_the_ray_cluster_is_a_kuberay_raycluster_with_head_and_workers():
    from loopml.settings import Settings

    cluster, gcs, dashboard = ray_cluster()
    where = "docs/configs/kuberay-raycluster.yaml"
    assert cluster["apiVersion"].startswith("ray.io/") and cluster["kind"] == "RayCluster", where
    spec = cluster["spec"]
    assert str(spec["rayVersion"]).startswith("2."), f"{where}: rayVersion should be a Ray 2.x release"
    head = spec["headGroupSpec"]
    assert head["rayStartParams"].get("dashboard-host") == "0.0.0.0", \
        f"{where}: the head's dashboard (Jobs API) must answer the platform service from another pod"
    [head_container] = head["template"]["spec"]["containers"]
    ports = {port["containerPort"] for port in head_container["ports"]}
    serve_port = Settings.model_fields["serve_port"].default
    assert {gcs, dashboard, serve_port} <= ports, f"{where}: the head exposes the GCS, dashboard and Serve ports"
    groups = spec["workerGroupSpecs"]
    assert groups, f"{where}: at least one worker group"
    for group in [head, *groups]:
        for container in group["template"]["spec"]["containers"]:
            assert container["image"] == head_container["image"], f"{where}: one image for every Ray node"
            assert {"cpu", "memory"} <= set(container["resources"]["limits"]), f"{where}: resources of {container}"
    for group in groups:
        assert group["groupName"] and group["minReplicas"] <= group["replicas"] <= group["maxReplicas"], group


def test_the_z2jh_values_use_kubespawner_and_loopmls_hub_config():
    from loopml.settings import OAuthSettings, Settings

    values = load_yaml("z2jh-values.yaml")
    where = "docs/configs/z2jh-values.yaml"
    extra = values["hub"]["extraConfig"]
    source = "\n".join(extra.values())
    assert "KubeSpawner" in source, f"{where}: hub.extraConfig should use KubeSpawner"
    assert "from loopml.hub_config import config" in source and "configure(" in source, \
        f"{where}: hub.extraConfig should apply loopml's hub configuration (loopml.hub_config.config.configure)"
    for name, snippet in extra.items():
        compile(snippet, f"{where}: hub.extraConfig.{name}", "exec")
    env = env_of(values["hub"]["extraEnv"])
    for name in ("LOOPML_DB_URL", "LOOPML_RAY_ADDRESS", "LOOPML_RAY_DASHBOARD_URL", "LOOPML_MLFLOW_URI"):
        assert name in env, f"{where}: hub.extraEnv should set {name}"
    assert env["LOOPML_DB_URL"]["value"].startswith("postgresql"), f"{where}: the platform DB is PostgreSQL"
    for name in env:
        if name.startswith("LOOPML_OAUTH__"):
            assert name.removeprefix("LOOPML_OAUTH__").lower() in OAuthSettings.model_fields, f"{where}: {name}"
        elif name.startswith("LOOPML_"):
            field = "data_dir" if name == "LOOPML_HOME" else name.removeprefix("LOOPML_").lower()
            assert field in Settings.model_fields, f"{where}: {name} is no loopml setting"
    assert "secretKeyRef" in env["LOOPML_OAUTH__CLIENT_SECRET"].get("valueFrom", {}), \
        f"{where}: the OAuth client secret comes from a Kubernetes Secret"

    cluster, gcs, dashboard = ray_cluster()
    head_service = f"{cluster['metadata']['name']}-head-svc"
    address = env["LOOPML_RAY_ADDRESS"]["value"]
    assert address.startswith(head_service) and address.endswith(f":{gcs}"), \
        f"{where}: LOOPML_RAY_ADDRESS should be the GCS of kuberay-raycluster.yaml ({head_service}…:{gcs})"
    dashboard_url = env["LOOPML_RAY_DASHBOARD_URL"]["value"]
    assert dashboard_url.startswith(f"http://{head_service}") and dashboard_url.endswith(f":{dashboard}"), \
        f"{where}: LOOPML_RAY_DASHBOARD_URL should be the dashboard of kuberay-raycluster.yaml"
    service, port = mlflow_service()
    mlflow_uri = env["LOOPML_MLFLOW_URI"]["value"]
    assert mlflow_uri.startswith(f"http://{service}") and mlflow_uri.endswith(f":{port}"), \
        f"{where}: LOOPML_MLFLOW_URI should be the server of mlflow-postgres-s3.yaml ({service}…:{port})"


def test_the_z2jh_extra_config_runs_against_loopmls_hub_config(monkeypatch, tmp_path):
    """The extraConfig, run as the chart runs it (``c`` in scope) with a stand-in for
    kubespawner, sets loopml's login, service, roles and a KubeSpawner that checks membership."""
    from jupyterhub.spawner import LocalProcessSpawner

    import loopml.hub_config.config as hub_config

    values = load_yaml("z2jh-values.yaml")
    kubespawner = types.ModuleType("kubespawner")
    kubespawner.KubeSpawner = type("KubeSpawner", (LocalProcessSpawner,), {})
    monkeypatch.setitem(sys.modules, "kubespawner", kubespawner)
    monkeypatch.setattr(hub_config, "proxy_command", hub_config.proxy_command)  # the snippet replaces it
    for name in [n for n in os.environ if n.startswith("LOOPML_")]:
        monkeypatch.delenv(name)
    for name, entry in env_of(values["hub"]["extraEnv"]).items():
        if name.startswith("LOOPML_") and "value" in entry:
            monkeypatch.setenv(name, re.sub(r"\$\([A-Z_]+\)", "secret", entry["value"]))
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path))
    monkeypatch.setenv("LOOPML_HOST", "10.0.0.7")  # the pod IP, from the downward API
    monkeypatch.setenv("LOOPML_DB_URL", f"sqlite:///{tmp_path / 'loopml.db'}")  # the hub reads projects from it
    monkeypatch.setenv("LOOPML_OAUTH__CLIENT_SECRET", "from-the-secret")
    for field in ("authorize_url", "token_url", "userdata_url"):  # what discovery would find: no network
        monkeypatch.setenv(f"LOOPML_OAUTH__{field.upper()}", f"https://idp.test/{field}")
    c = Config()
    c.JupyterHub.services = []  # as the chart leaves them before extraConfig
    c.JupyterHub.load_roles = []
    for snippet in values["hub"]["extraConfig"].values():
        exec(snippet, {"c": c})  # noqa: S102 - the chart execs it the same way

    spawner = c.JupyterHub.spawner_class
    assert issubclass(spawner, kubespawner.KubeSpawner) and "start" in vars(spawner) and "get_env" in vars(spawner)
    [service] = [s for s in c.JupyterHub.services if s["name"] == "loopml"]
    assert service["url"] == "http://10.0.0.7:8899" and service["environment"]["LOOPML_HUB"] == "true"
    assert "LOOPML_OAUTH__CLIENT_SECRET" not in service["environment"]
    assert {role["name"] for role in c.JupyterHub.load_roles} >= {"user", "loopml-service"}
    authenticator = c.JupyterHub.authenticator_class
    instance = authenticator(config=c)
    assert instance.oauth_callback_url.startswith("https://") and instance.manage_groups
    assert "access:services!service=loopml" in c.Spawner.server_token_scopes


def mlflow_server() -> tuple[dict, dict]:
    listing = load_yaml("mlflow-postgres-s3.yaml")
    items = listing["items"] if listing.get("kind") == "List" else [listing]
    [deployment] = [item for item in items if item["kind"] == "Deployment"]
    [container] = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "mlflow"]
    return container, {item["metadata"]["name"]: item for item in items if item["kind"] == "Service"}


def mlflow_service() -> tuple[str, int]:
    container, services = mlflow_server()
    [(name, service)] = services.items()
    return name, service["spec"]["ports"][0]["port"]


def test_the_mlflow_server_uses_postgresql_and_s3_artifacts():
    from mlflow.cli import cli

    where = "docs/configs/mlflow-postgres-s3.yaml"
    container, services = mlflow_server()
    argv = [*container.get("command", []), *container.get("args", [])]
    assert "server" in argv, f"{where}: the container runs `mlflow server`"
    args = argv[argv.index("server") + 1:]
    params = cli.commands["server"].make_context("mlflow server", list(args)).params  # unknown options fail here
    assert params["backend_store_uri"].startswith("postgresql"), f"{where}: a PostgreSQL backend store"
    assert params["artifacts_destination"].startswith("s3://"), f"{where}: an S3 artifacts destination"
    assert params["serve_artifacts"], f"{where}: --serve-artifacts (jobs on any Ray node log through the server)"
    env = env_of(container["env"])
    assert "MLFLOW_S3_ENDPOINT_URL" in env, f"{where}: MLFLOW_S3_ENDPOINT_URL for S3-compatible stores"
    assert all("valueFrom" in env[name] for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "PGPASSWORD")), \
        f"{where}: credentials come from a Kubernetes Secret"
    name, port = mlflow_service()
    assert port == params["port"], f"{where}: the Service's port is the server's"


@pytest.mark.parametrize("name", ["oidc-keycloak.toml", "oidc-github.toml"])
def test_each_oidc_config_is_accepted_by_the_hubs_authenticator(name, tmp_path):
    from loopml.hub_config.authenticator import authenticator_config
    from loopml.settings import OAuthSettings, Settings

    where = f"docs/configs/{name}"
    data = load_toml(name)
    oauth = data["oauth"]
    assert oauth.get("provider", "dev") != "dev", f"{where}: an external identity provider"
    assert "client_secret" not in oauth, f"{where}: the client secret belongs in LOOPML_OAUTH__CLIENT_SECRET"
    OAuthSettings(**oauth)
    settings = Settings.model_validate({**data, "data_dir": str(tmp_path),
                                        "oauth": {**oauth, "client_secret": "from LOOPML_OAUTH__CLIENT_SECRET"}})
    asked: list[str] = []

    def discover(issuer: str) -> dict[str, str]:
        asked.append(issuer)
        return {"authorize_url": f"{issuer}/auth", "token_url": f"{issuer}/token", "userdata_url": f"{issuer}/userinfo"}

    cls, traits = authenticator_config(settings, discover_endpoints=discover)
    assert asked == ([] if oauth["provider"] == "github" else [oauth["issuer"]]), f"{where}: endpoints from the issuer"
    cls(config=Config({cls.__name__: traits}))  # every trait exists and validates
