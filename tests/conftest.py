"""The headless platform's session fixtures (``platform``, ``admin``, ``alice``, ``project``)
live in a plugin module, not a conftest, so that every package using them (integration,
security) shares the one instance a test session starts."""

pytest_plugins = ["tests.integration.platform_fixtures"]
