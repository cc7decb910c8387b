"""Schemathesis over the live platform's OpenAPI: no generated request gets a 500.

The schema is read from the session platform's ``/openapi.json``; every operation is fuzzed
as the admin (every route is reachable) and as alice, a plain member of the fuzzed project.
Path parameters point at seeded resources, so that the routes behind them are reached
rather than answered 404: a finished job, a schedule, a model version logged the way a
notebook user logs one. No endpoint is seeded: a real Serve deploy costs more than this
whole file may take. Each operation is a subtest; a failure names the operation and the
request that reproduces it.

What may change is scoped so that the session platform is still whole for the tests that
run after this file:

- there is no route that deletes a project; ``PATCH /projects/{project}`` (members, quota)
  is sent to a scratch project, so the fuzzed project keeps alice as a member;
- ``POST /projects`` creates projects with generated names: harmless, as in any session;
- jobs, schedules and endpoints live in the fuzzed project, whose quota of one running job
  keeps requeued copies of the seeded job from crowding the cluster; whatever is left
  active when the file ends is cancelled or deleted.

Only this module imports schemathesis, and it needs none of its pytest plugin: a lazy
schema (``schemathesis.pytest.from_fixture``) runs as a plain test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import hypothesis
import pytest
import schemathesis
from schemathesis.checks import (
    content_type_conformance,
    negative_data_rejection,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from loopml.errors import LoopMLError
from loopml.registry.mlflow_auth import project_env
from tests.integration.notebooks import notebook

pytestmark = pytest.mark.integration

# Phases: the schema's explicit examples, then generated requests, valid and invalid. Not the
# coverage phase: its boundary cases are about nine times the requests of the fuzzing phase
# here (2300 against 260, 47 s against 15 s), over what this file may take in `make test`;
# a manual CLI run also met an internal Hypothesis error in it on POST .../endpoints. Not the
# stateful phase, and no values taken from earlier responses: a model name read back from
# GET .../models would turn generated deploys into real Serve deployments.
PHASES = {"examples": {"enabled": True}, "coverage": {"enabled": False},
          "fuzzing": {"enabled": True, "extra-data-sources": {"responses": False}}, "stateful": {"enabled": False}}
MAX_EXAMPLES = 8  # per operation and caller: operations without inputs send one request; 260 requests in all
FUZZ_SETTINGS = hypothesis.settings(
    max_examples=MAX_EXAMPLES, derandomize=True, database=None, deadline=None, print_blob=False,
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate, hypothesis.Phase.shrink],
    suppress_health_check=list(hypothesis.HealthCheck),
)
MODEL = "tree"
LOG_MODEL = (
    "import loopml\n"
    "from sklearn.datasets import load_iris\n"
    "from sklearn.tree import DecisionTreeClassifier\n"
    "X, y = load_iris(return_X_y=True)\n"
    f"loopml.log_model(DecisionTreeClassifier(max_depth=2).fit(X, y), {MODEL!r}, X, y)\n"
)


def _project(admin, prefix: str, **kw) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    admin.create_project(name, members=["alice"], **kw)
    return name


@pytest.fixture(scope="module")
def seeded(platform, admin):
    """The fuzzed project with a finished job, a schedule (yearly, so it never fires here) and
    a model version logged interactively; afterwards, nothing in it is left running."""
    project = _project(admin, "fuzz", max_concurrent_jobs=1)
    scratch = _project(admin, "fuzz-patch")
    # logged as a workspace of the project would: with the project's MLflow user
    mlflow_env = project_env(platform.home, platform.state()["urls"]["mlflow"], project)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(platform.home), "LOOPML_PROJECT": project, "LOOPML_USER": "alice",
           **mlflow_env}
    logging_model = subprocess.Popen([sys.executable, "-c", LOG_MODEL], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
    try:
        job = admin.wait(project, admin.submit(project, notebook("1 + 1")).id, timeout=120)
        schedule = admin.create_schedule(project, "0 0 1 1 *", notebook("1 + 1"))
        out, _ = logging_model.communicate(timeout=120)
    finally:
        logging_model.kill()  # a no-op once it exited; else the seeding failed already
        logging_model.wait()
    assert logging_model.returncode == 0, out[-2000:]
    yield {"project": project, "scratch": scratch, "job_id": job.id, "schedule_id": schedule.id}
    _clean_up(admin, project)


def _clean_up(admin, project: str) -> None:
    for job in admin.jobs(project, limit=1000):
        if not job.status.terminal:
            try:
                admin.cancel(project, job.id)
            except LoopMLError:
                pass  # it ended meanwhile
    for schedule in admin.schedules(project):
        admin.delete_schedule(project, schedule.id)
    for endpoint in admin.endpoints(project):
        admin.delete_endpoint(project, endpoint.name)


def _schema(platform, seeded, token: str):
    config = schemathesis.Config.from_dict({
        "headers": {"Authorization": f"Bearer {token}"},
        "parameters": {"path.project": seeded["project"], "path.job_id": seeded["job_id"],
                       "path.schedule_id": seeded["schedule_id"], "path.alias": "champion"},
        "operations": [
            {"include-path-regex": r"/models/\{name\}", "parameters": {"path.name": MODEL}},
            # a valid name of no endpoint: the routes get past name validation to the lookup
            {"include-path-regex": r"/endpoints/\{name\}", "parameters": {"path.name": "no-such-endpoint"}},
            {"include-name": "PATCH /api/v1/projects/{project}", "parameters": {"path.project": seeded["scratch"]}},
        ],
        "phases": PHASES,
        "generation": {"mode": "all", "database": "none"},
        "request-timeout": 30,
    })
    return schemathesis.openapi.from_url(f"{platform.url}/openapi.json", config=config)


@pytest.fixture(scope="module")
def admin_schema(platform, seeded):
    return _schema(platform, seeded, platform.admin_token)


@pytest.fixture(scope="module")
def alice_schema(platform, seeded):
    return _schema(platform, seeded, platform.alice_token)


def check_answer(case) -> None:
    """Send ``case``: never a 500; the status, content type and body are the ones the OpenAPI
    documents; every refusal is the platform's JSON error with a message."""
    response = case.call_and_validate(checks=[not_a_server_error, status_code_conformance, negative_data_rejection,
                                              content_type_conformance, response_schema_conformance])
    if response.status_code >= 400:
        text = response.text
        try:
            error = json.loads(text)
        except ValueError:
            error = None
        where = f"{case.method} {case.formatted_path} answered {response.status_code}"
        assert "Traceback" not in text, f"{where} with a traceback: {text[:300]}"
        assert isinstance(error, dict) and error.get("message"), f"{where} without a JSON message: {text[:300]}"


@pytest.fixture(autouse=True)
def _node_id_for_schemathesis(request):
    """Schemathesis 4.32's lazy schemas read and rename ``item._nodeid``, which pytest 9.2
    replaced by ``item._id``: give the item the attribute it reads (its renames then only
    touch this attribute; each operation is still reported as a subtest with its label)."""
    if not hasattr(request.node, "_nodeid"):
        request.node._nodeid = request.node.nodeid


as_admin = schemathesis.pytest.from_fixture("admin_schema")
as_alice = schemathesis.pytest.from_fixture("alice_schema")


@as_admin.parametrize()
@FUZZ_SETTINGS
def test_no_request_of_the_admin_gets_a_500(case):
    check_answer(case)


@as_alice.parametrize()
@FUZZ_SETTINGS
def test_no_request_of_a_member_gets_a_500(case):
    check_answer(case)
