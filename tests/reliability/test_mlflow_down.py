"""The MLflow tracking server is down when a job is submitted, then comes back."""

from __future__ import annotations

import psutil
from mlflow.tracking import MlflowClient

from loopml.errors import Unavailable
from loopml.executor.models import JobStatus
from loopml.registry.tracking import experiment_name
from tests.integration.notebooks import notebook, write
from tests.integration.processes import up_again

NOTEBOOK = notebook("print('tracked')")


def _runs(platform, project: str) -> list:
    tracking = MlflowClient(platform.state()["urls"]["mlflow"])
    experiment = tracking.get_experiment_by_name(experiment_name(project))
    return tracking.search_runs([experiment.experiment_id]) if experiment else []


def test_submit_while_mlflow_is_down_is_refused_clearly_creates_nothing_and_works_when_it_is_back(
        platform, alice, project, tmp_path):
    runs_before = _runs(platform, project)
    record = next(p for p in platform.state()["processes"] if p["name"] == "mlflow")
    server = psutil.Process(record["pid"])
    server.terminate()
    server.wait(30)
    try:
        try:
            alice.submit(project, NOTEBOOK)
        except Unavailable as exc:
            refused = exc
        else:
            raise AssertionError("a job was accepted while MLflow was down")
        assert "MLflow tracking server" in refused.message and "nothing was created" in refused.message
        cli = platform.cli("submit", str(write(tmp_path / "nb.ipynb", NOTEBOOK)), "-P", project)
        assert cli.returncode != 0 and "Traceback" not in cli.stderr
        assert len(cli.stderr.strip().splitlines()) == 1 and "MLflow tracking server" in cli.stderr, cli.stderr
        assert alice.jobs(project) == []
    finally:
        up_again(platform)  # starts only what is missing: MLflow
    assert [r.info.run_id for r in _runs(platform, project)] == [r.info.run_id for r in runs_before]
    job = alice.wait(project, alice.submit(project, NOTEBOOK).id, timeout=120)
    assert job.status == JobStatus.SUCCEEDED
    assert [r.info.run_id for r in _runs(platform, project)] == [job.mlflow_run_id]
