"""The reliability suite's shared endpoint, and the ledger that proves nothing was lost.

Every case runs against the session platform (``tests/integration/platform_fixtures.py``):
real Ray, MLflow and platform service, which the cases kill, restart and stop on purpose.
"""

from __future__ import annotations

import pytest

from tests.integration.endpoints import train_and_deploy


@pytest.fixture(scope="package")
def served(platform, admin) -> dict:
    """Project ``reliability`` with iris trained by a job and served (with a key) as ``rel-ep``."""
    return train_and_deploy(platform, admin, "reliability", "rel-ep")
