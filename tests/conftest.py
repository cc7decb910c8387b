"""The headless platform's session fixtures (``platform``, ``admin``, ``alice``, ``project``)
live in a plugin module, not a conftest, so that every package using them (integration,
security) shares the one instance a test session starts."""

pytest_plugins = ["tests.integration.platform_fixtures"]


def pytest_collection_modifyitems(session, config, items):
    """Unit tests first: they start no service, so they run on a quiet machine (and fail fast)
    before the session's platforms come up and load it."""
    items.sort(key=lambda item: 0 if "tests/unit/" in item.nodeid.replace("\\", "/") else 1)
