"""Show 4 of issue 16 at the REST boundary: every bad pipeline of the table in
:mod:`tests.unit.test_pipeline_spec`, native and Elyra, posted to the in-process app's
``/pipelines/validate`` and ``/pipelines`` is refused 422 before anything runs, and the answer
names the step (node) and the field, in its message and in ``problems``.

The rows the issue names, per format: a cycle (naming the steps along it), an unknown step, an
unknown output reference, a missing notebook, a missing dependency file, an unknown parameter
of a step's notebook, a malformed condition, a search space Optuna cannot sample. Elyra's
generic nodes have no templates, conditions, notebook parameters or sweeps, so the last four
rows exist in the native format only; :data:`ISSUE_ROWS` says which row of the table is which.
"""

from __future__ import annotations

import base64
import os
import warnings

import pytest

from loopml.auth import StaticTokenAuthenticator
from loopml.db import Database, migrate
from loopml.executor.pipelines.service import PipelineService
from loopml.executor.service import JobService
from loopml.projects import ProjectCreate, ProjectService
from loopml.server.app import create_app
from loopml.settings import load_settings
from tests.unit.test_pipeline_service import PipelineTracking
from tests.unit.test_pipeline_spec import BAD
from tests.unit.test_service import FakeBackend

ISSUE_ROWS = {
    "cycle": ["native-cycle", "native-cycle-through-a-reference", "elyra-cycle"],
    "unknown step": ["native-after-unknown-step", "native-template-unknown-step", "native-condition-unknown-step",
                     "elyra-link-to-unknown-node"],
    "unknown output reference": ["native-unknown-output-of-a-builtin", "native-output-of-foreach-without-select"],
    "missing notebook": ["native-missing-notebook", "elyra-missing-notebook", "elyra-missing-script"],
    "missing dependency file": ["native-missing-dependency", "elyra-missing-dependency",
                                "elyra-glob-dependency-matching-nothing"],
    "unknown notebook parameter": ["native-unknown-notebook-parameter", "native-unknown-foreach-parameter"],
    "malformed condition": ["native-malformed-condition", "native-eval-in-condition"],
    "search space Optuna cannot sample": ["native-loguniform-from-zero", "native-int-range-reversed",
                                          "native-empty-choice"],
}


def test_the_table_has_each_refusal_the_issue_names_in_both_formats_where_the_format_can_say_it():
    ids = {case[0] for case in BAD}
    assert {row for rows in ISSUE_ROWS.values() for row in rows} <= ids
    for what in ("cycle", "unknown step", "missing notebook", "missing dependency file"):
        assert {row.split("-")[0] for row in ISSUE_ROWS[what]} == {"native", "elyra"}, what


@pytest.fixture(scope="module")
def rest(tmp_path_factory):
    """The REST app (no lifespan) with a real DB and JobService, as alice, member of demo: one for
    the whole table, since a refusal changes nothing (each case checks that)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    with pytest.MonkeyPatch.context() as env:
        for name in [name for name in os.environ if name.upper().startswith("LOOPML_")]:
            env.delenv(name)
        settings = load_settings(data_dir=tmp_path_factory.mktemp("refusals"),
                                 tokens={"alice-token": {"name": "alice"}})
    db = Database(settings.database_url)
    migrate(db.engine)
    ProjectService(db).create(ProjectCreate(name="demo", members=["alice"]))
    tracking = PipelineTracking()
    jobs = JobService(settings, db, tracking, FakeBackend())
    app = create_app(settings)
    app.state.services.authenticator = StaticTokenAuthenticator(settings)
    app.state.services.projects = ProjectService(db)
    app.state.services.pipelines = PipelineService(settings, db, jobs, tracking)
    yield TestClient(app, raise_server_exceptions=False, headers={"Authorization": "Bearer alice-token"}), \
        tracking, jobs
    db.engine.dispose()


def rest_body(fmt: str, text: str, files: dict[str, bytes]) -> dict:
    return {"source_name": "wine.pipeline.yaml" if fmt == "native" else "wine.pipeline", "content": text,
            "files": {path: base64.b64encode(data).decode() for path, data in files.items()}}


@pytest.mark.parametrize(("fmt", "text", "files", "step", "field", "fragment"),
                         [pytest.param(*case[1:], id=case[0]) for case in BAD])
def test_rest_refuses_each_bad_pipeline_with_422_naming_the_step_and_field(rest, fmt, text, files, step, field,
                                                                          fragment):
    api, tracking, jobs = rest
    body = rest_body(fmt, text, files)
    for route in ("/api/v1/projects/demo/pipelines/validate", "/api/v1/projects/demo/pipelines"):
        answer = api.post(route, json=body)
        assert answer.status_code == 422, answer.text
        refusal = answer.json()
        assert {"step": step, "field": field} in [{"step": p["step"], "field": p["field"]}
                                                  for p in refusal["problems"]], refusal
        where = f"{body['source_name']}: step '{step}': " if step else f"{body['source_name']}: "
        assert any(line.startswith(where) and fragment in line for line in refusal["message"].splitlines()), \
            refusal["message"]
    assert tracking.called("start_pipeline_run") == [] and jobs.list("demo") == []
    assert api.get("/api/v1/projects/demo/pipelines").json() == []
