"""Package fixtures of the scale-out run: a private PostgreSQL (platform DB and MLflow
backend store), a second headless platform on it, and a second Ray node offering ``node2``
that behaves like another host (address 127.0.0.2, a mount namespace without the data dir,
the checkout or the head's temp dir: :mod:`tests.scaleout.isolated_node`).

Teardown order: the worker node is left to ``loopml down`` (which must stop it like every
other recorded process: :func:`down_leaving_nothing` checks), then PostgreSQL stops.
"""

from __future__ import annotations

import json

import pytest

from loopml import sandbox
from loopml.launcher import RayWorkerNode, free_port_block, start_ray_worker_node
from tests.integration.platform_fixtures import Platform, down_leaving_nothing, start_platform
from tests.scaleout.isolated_node import NODE_IP, run_under
from tests.scaleout.postgres import PostgresServer, pg_bin_dir, start_postgres

PLATFORM_DB, MLFLOW_DB = "platform", "mlflow"


@pytest.fixture(scope="package")
def postgres() -> PostgresServer:
    if pg_bin_dir() is None:
        pytest.fail("Debian's postgresql is not installed: `make install-test` installs it")
    server = start_postgres((PLATFORM_DB, MLFLOW_DB))
    yield server
    server.stop()


@pytest.fixture(scope="package")
def pg_platform(tmp_path_factory, postgres: PostgresServer) -> Platform:
    """``loopml up --no-hub`` whose config.toml puts the platform DB and MLflow's backend
    store in ``postgres``, on ports of its own (same layout as the session ``platform``)."""
    home = tmp_path_factory.mktemp("loopml-pg-home")
    platform, printed = start_platform(home, f"db_url = {json.dumps(postgres.url(PLATFORM_DB))}\n"
                                             f"mlflow_backend_uri = {json.dumps(postgres.url(MLFLOW_DB))}\n")
    assert postgres.password not in printed
    yield platform
    down_leaving_nothing(home, platform.env)


@pytest.fixture(scope="package")
def node2(pg_platform: Platform) -> RayWorkerNode:
    """A second Ray node (1 CPU, resource ``node2``) on 127.0.0.2 in a mount namespace of its
    own, recorded in the state file: ``down`` stops it."""
    if problem := sandbox.check():
        pytest.fail(problem)
    base = free_port_block(12)
    return start_ray_worker_node(pg_platform.home, num_cpus=1, resources={"node2": 1}, base_port=base,
                                 node_ip=NODE_IP, run_under=run_under(pg_platform.home, base))
