"""The error hierarchy (HTTP statuses, surviving pickling) and where settings come from."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import pytest
from ray import cloudpickle

from loopml.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    LoopMLError,
    NotFound,
    Unauthorized,
    Unavailable,
    http_status,
)
from loopml.settings import ClientConfig, load_settings, read_client_config, write_client_config


# Subclasses as other packages of the platform define them (module level, so pickle finds them).
class ModelNotFound(NotFound):
    pass


class QuotaExceeded(Conflict):
    reason = "quota"


class DriftTestFailed(LoopMLError):
    pass


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No LOOPML_* variable of the machine running the tests leaks in.

    DATA_DIR too: the data dir's validation alias makes pydantic-settings read it unprefixed.
    """
    for name in list(os.environ):
        if name.upper().startswith("LOOPML_") or name.upper() == "DATA_DIR":
            monkeypatch.delenv(name)


# ---- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error, status",
    [
        (InvalidInput("x"), 422),
        (Unauthorized("x"), 401),
        (Forbidden("x"), 403),
        (NotFound("x"), 404),
        (Conflict("x"), 409),
        (Unavailable("x"), 503),
        (LoopMLError("x"), 400),
        (ModelNotFound("x"), 404),
        (QuotaExceeded("x"), 409),
        (DriftTestFailed("x"), 400),
        (NotFound("x", reason="job_gone"), 404),
    ],
    ids=["invalid", "unauthorized", "forbidden", "not-found", "conflict", "unavailable", "root",
         "subclass-of-not-found", "subclass-of-conflict", "subclass-of-root", "reason-does-not-change-status"],
)
def test_each_error_maps_to_the_status_of_its_nearest_class(error: LoopMLError, status: int) -> None:
    assert http_status(error) == status


@pytest.mark.parametrize(
    "error, reason",
    [(InvalidInput("x"), "invalid"), (QuotaExceeded("x"), "quota"), (DriftTestFailed("x"), "error"),
     (Conflict("x", reason="exists"), "exists")],
    ids=["class-reason", "subclass-reason", "inherited-root-reason", "reason-given"],
)
def test_reason_comes_from_the_class_unless_given(error: LoopMLError, reason: str) -> None:
    assert error.reason == reason
    assert error.to_json()["reason"] == reason


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps], ids=["pickle", "ray-cloudpickle"])
@pytest.mark.parametrize(
    "error",
    [
        InvalidInput("parameter 'n' expects int", field="parameters.n"),
        NotFound("job j1 is gone", reason="job_gone", job_id="j1"),
        Unavailable("MLflow did not answer", component="mlflow"),
        QuotaExceeded("too many jobs", project="demo", limit=2),
        DriftTestFailed("no details"),
    ],
    ids=["details", "reason-and-details", "unavailable", "subclass", "bare"],
)
def test_pickling_keeps_type_message_reason_and_details(error: LoopMLError, dumps) -> None:
    restored = pickle.loads(dumps(error))

    assert type(restored) is type(error)
    assert (restored.message, restored.reason, restored.details) == (error.message, error.reason, error.details)
    assert str(restored) == error.message
    assert restored.to_json() == error.to_json()


# ---- settings -------------------------------------------------------------------------


def write_config(home: Path, text: str) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text)
    return home


@pytest.mark.parametrize(
    "in_file, in_env, flags, port",
    [
        (None, None, {}, 8899),
        (9000, None, {}, 9000),
        (None, "9100", {}, 9100),
        (9000, "9100", {}, 9100),
        (9000, "9100", {"port": 9200}, 9200),
        (9000, None, {"port": 9200}, 9200),
        (9000, "9100", {"port": None}, 9100),
    ],
    ids=["default", "config-file", "environment", "environment-over-file", "flag-over-environment",
         "flag-over-file", "flag-none-means-not-given"],
)
def test_precedence_flag_environment_file_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  in_file: int | None, in_env: str | None, flags: dict[str, Any],
                                                  port: int) -> None:
    if in_file is not None:
        write_config(tmp_path, f"port = {in_file}\n")
    if in_env is not None:
        monkeypatch.setenv("LOOPML_PORT", in_env)

    assert load_settings(data_dir=tmp_path, **flags).port == port


def test_loopml_home_names_the_data_dir_and_its_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = write_config(tmp_path / "home", "port = 9001\n")
    monkeypatch.setenv("LOOPML_HOME", str(home))

    settings = load_settings()

    assert settings.home == home.resolve()
    assert settings.port == 9001
    assert settings.database_url == f"sqlite:///{home.resolve() / 'loopml.db'}"


def test_data_dir_flag_beats_loopml_home_for_the_config_file_too(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPML_HOME", str(write_config(tmp_path / "from-env", "port = 9001\n")))
    flag_home = write_config(tmp_path / "from-flag", "port = 9002\n")

    settings = load_settings(data_dir=flag_home)

    assert (settings.home, settings.port) == (flag_home.resolve(), 9002)


def test_config_file_holds_structured_settings(tmp_path: Path) -> None:
    write_config(tmp_path, """\
warm_kernels = false
[tokens.secret-token]
name = "alice"
admin = true
[[projects]]
name = "demo"
members = ["alice", "bob"]
max_concurrent_jobs = 2
""")

    settings = load_settings(data_dir=tmp_path)

    assert settings.warm_kernels is False
    assert settings.tokens["secret-token"].model_dump() == {"name": "alice", "admin": True}
    assert [p.model_dump() for p in settings.projects] == [
        {"name": "demo", "members": ["alice", "bob"], "max_concurrent_jobs": 2}]


def test_bad_toml_is_invalid_input_naming_the_file(tmp_path: Path) -> None:
    path = write_config(tmp_path, "port = [\n") / "config.toml"

    with pytest.raises(InvalidInput) as caught:
        load_settings(data_dir=tmp_path)

    assert caught.value.message.startswith(f"{path} is not valid TOML: ")
    assert caught.value.message.endswith("; fix or remove it")


@pytest.mark.parametrize(
    "base_url, normalised",
    [("", "/"), ("/", "/"), ("///", "/"), ("services/loopml", "/services/loopml/"),
     ("/services/loopml", "/services/loopml/"), ("/services/loopml/", "/services/loopml/"), ("//a//", "/a/")],
    ids=["empty", "root", "only-slashes", "no-slashes", "leading-slash", "both-slashes", "doubled-slashes"],
)
@pytest.mark.parametrize("source", ["flag", "environment", "config-file"])
def test_base_url_is_normalised_wherever_it_comes_from(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str,
                                                       base_url: str, normalised: str) -> None:
    flags = {}
    if source == "flag":
        flags["base_url"] = base_url
    elif source == "environment":
        monkeypatch.setenv("LOOPML_BASE_URL", base_url)
    else:
        write_config(tmp_path, f"base_url = {json.dumps(base_url)}\n")

    settings = load_settings(data_dir=tmp_path, **flags)

    assert settings.base_url == normalised
    assert settings.api_prefix == f"{normalised}api/v1"
    assert settings.url == f"http://127.0.0.1:8899{normalised.rstrip('/')}"


@pytest.mark.parametrize(
    "stored, env, expected",
    [
        ({"url": "http://file:1", "token": "t-file"}, {}, ("http://file:1", "t-file")),
        ({"url": "http://file:1", "token": "t-file"}, {"LOOPML_URL": "http://env:2"}, ("http://env:2", "t-file")),
        ({"url": "http://file:1", "token": "t-file"}, {"LOOPML_TOKEN": "t-env"}, ("http://file:1", "t-env")),
        (None, {"LOOPML_URL": "http://env:2", "LOOPML_TOKEN": "t-env"}, ("http://env:2", "t-env")),
        (None, {"LOOPML_URL": "http://env:2"}, None),
        (None, {}, None),
        ({"url": "http://file:1", "token": ""}, {}, None),
    ],
    ids=["file-only", "env-url-over-file", "env-token-over-file", "env-only", "url-without-token", "nothing",
         "empty-token-in-file"],
)
def test_client_config_environment_overrides_client_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         stored: dict[str, str] | None, env: dict[str, str],
                                                         expected: tuple[str, str] | None) -> None:
    if stored is not None:
        write_client_config(tmp_path, ClientConfig(**stored))
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    config = read_client_config(tmp_path)

    assert ((config.url, config.token) if config else None) == expected


def test_client_config_is_found_through_loopml_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_client_config(tmp_path, ClientConfig(url="http://file:1", token="t-file"))
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path))

    assert read_client_config() == ClientConfig(url="http://file:1", token="t-file")
    assert path.stat().st_mode & 0o777 == 0o600
