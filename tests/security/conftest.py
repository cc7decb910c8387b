"""Security tests run against the real headless platform of the test session (the fixtures
of tests/integration/platform_fixtures.py, loaded for every package by tests/conftest.py)."""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(scope="session")
def bob_project(admin) -> str:
    """A project whose only member is bob: alice must learn nothing about it."""
    name = f"b-{uuid.uuid4().hex[:10]}"
    admin.create_project(name, members=["bob"])
    return name
