"""Fixtures shared by the CLI unit tests (each test module provides its own ``client``)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from loopml.cli import main


@pytest.fixture
def no_ambient_config(monkeypatch, tmp_path):
    """No LOOPML_* of the machine running the tests, and an empty data dir."""
    for name in ("LOOPML_PROJECT", "LOOPML_URL", "LOOPML_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOOPML_HOME", str(tmp_path / "home"))


@pytest.fixture
def run(client):
    """``run(*args)`` -> click Result, with the module's ``client`` injected as ``obj``."""

    def invoke(*args: str):
        return CliRunner().invoke(main, list(args), obj=client)

    return invoke
