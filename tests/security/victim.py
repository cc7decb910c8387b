"""Project B's side of the isolation tests: what B owns, read as the platform reads it, and
how a table of attack results is judged (shared by tests/security and tests/hub)."""

from __future__ import annotations

import hashlib
import json
import time

import httpx

from tests.security import attacks


def platform_secrets(home, admin_token: str, tokens: dict[str, str]) -> dict[str, str]:
    """Every secret of the platform at data dir ``home`` (the admin token, ``tokens``, the old
    all-endpoints capture token, the Ray token, ``secrets.json``), each with its label."""
    import hmac

    secrets = {admin_token: "admin token", **tokens,
               hmac.new(admin_token.encode(), b"loopml-capture", hashlib.sha256).hexdigest(): "capture token"}
    if (home / "ray" / "auth_token").exists():
        secrets[(home / "ray" / "auth_token").read_text().strip()] = "Ray token"
    if (home / "secrets.json").exists():
        for key, value in json.loads((home / "secrets.json").read_text()).items():
            if isinstance(value, str):
                secrets.setdefault(value, f"platform secret {key!r}")
    return secrets


def mlflow_auth(platform) -> tuple[str, str] | None:
    """The platform's own MLflow credentials (its admin user), when its MLflow authenticates:
    the test reads B's state as the platform does."""
    from loopml.registry import mlflow_auth as auth

    if not (platform.home / "mlflow" / auth.CONFIG_FILE).exists():
        return None
    return auth.ADMIN_USER, json.loads((platform.home / "secrets.json").read_text())[auth.ADMIN_SECRET]


def mlflow(platform, route: str, **params) -> httpx.Response:
    answer = httpx.get(platform.state()["urls"]["mlflow"].rstrip("/") + route, params=params,
                       auth=mlflow_auth(platform), timeout=30)
    assert answer.status_code == 200, (f"the test could not read MLflow {route}: "
                                       f"{answer.status_code} {answer.text[:200]}")
    return answer


def artifact_path(uri: str) -> str:
    """``mlflow-artifacts:/<exp>/<run>/artifacts`` → the path under MLflow's artifact proxy."""
    assert uri.startswith("mlflow-artifacts:/"), uri
    return uri.removeprefix("mlflow-artifacts:").lstrip("/")


def model_files(platform, registered: str, version: int) -> tuple[str, str]:
    """``(source, artifact-proxy path of its files)`` of model version ``registered``/``version``."""
    found = mlflow(platform, "/api/2.0/mlflow/model-versions/get", name=registered, version=str(version)).json()
    source = found["model_version"]["source"]
    if source.startswith("models:/"):  # MLflow 3: the version points at a logged model
        model_id = found["model_version"].get("model_id") or source.removeprefix("models:/").split("/")[0]
        uri = mlflow(platform, f"/api/2.0/mlflow/logged-models/{model_id}").json()["model"]["info"]["artifact_uri"]
    else:
        uri = source
    return source, artifact_path(uri)


def tree(platform, root: str) -> dict[str, str]:
    """Every file under artifact-proxy path ``root``: relative path → sha256 of its bytes."""
    files, todo = {}, [root]
    while todo:
        folder = todo.pop()
        listed = mlflow(platform, "/api/2.0/mlflow-artifacts/artifacts", path=folder).json().get("files", [])
        for entry in listed:
            path = f"{folder}/{entry['path']}"
            if entry.get("is_dir"):
                todo.append(path)
            else:
                body = mlflow(platform, f"/api/2.0/mlflow-artifacts/artifacts/{path}").content
                files[path.removeprefix(root + "/")] = hashlib.sha256(body).hexdigest()
    return files


def captures(platform, project: str) -> int:
    from sqlalchemy import create_engine, func, select
    from sqlalchemy.orm import Session

    from loopml.monitor.orm import PredictionRow

    engine = create_engine(f"sqlite:///{platform.home / 'loopml.db'}")
    try:
        with Session(engine) as session:
            return session.scalar(select(func.count()).select_from(PredictionRow)
                                  .where(PredictionRow.project == project)) or 0
    finally:
        engine.dispose()


def b_state(platform, bob, b: dict) -> dict:
    """What project B owns, as the platform records it."""
    models = {m.name: sorted((v.version, tuple(sorted(v.aliases))) for v in bob.model(b["project"], m.name).versions)
              for m in bob.models(b["project"])}
    return {
        "jobs": sorted((j.id, j.status.value) for j in bob.jobs(b["project"], limit=200)),
        "models": models,
        "run artifacts": tree(platform, b["run_root"]),
        "model artifacts": tree(platform, b["model_root"]),
        "captures": captures(platform, b["project"]),
    }


def diff(before: dict, after: dict) -> list[str]:
    changed = []
    for key in before:
        if before[key] != after[key]:
            if isinstance(before[key], dict):
                keys = set(before[key]) | set(after[key])
                detail = {k: (before[key].get(k), after[key].get(k)) for k in keys
                          if before[key].get(k) != after[key].get(k)}
                changed.append(f"B's {key} changed (before, after): {detail}")
            else:
                changed.append(f"B's {key} changed: {before[key]!r} -> {after[key]!r}")
    return changed


def verdict(results: dict[str, str], *, legit: list[str]) -> list[str]:
    """Every line that makes the table fail: a row not blocked, a legit row not ok, a row missing."""
    bad = [f"{row}: {results.get(row, 'MISSING: the attack did not report this row')}"
           for row in attacks.ATTACK_ROWS if not results.get(row, "").startswith("blocked:")]
    bad += [f"{row}: {results.get(row, 'MISSING')} (legitimate work of A must succeed)"
            for row in legit if not results.get(row, "").startswith("ok:")]
    bad += [f"{row}: {text}" for row, text in results.items() if row.startswith("error_")]
    return bad


def table(results: dict[str, str]) -> str:
    return "\n".join(f"  {row:26} {text}" for row, text in results.items())


def wait_status(client, project: str, job_id: str, wanted: set[str], timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.job(project, job_id)
        if job.status.value in wanted or job.status.terminal:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} of {project} is still {job.status} after {timeout}s")


def wait_captures(platform, project: str, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while captures(platform, project) < count and time.monotonic() < deadline:
        time.sleep(0.5)
    assert captures(platform, project) >= count, f"B's {count} scored requests were not captured within {timeout}s"
