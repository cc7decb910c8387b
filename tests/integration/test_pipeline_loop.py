"""The loop through a pipeline, on real Ray, MLflow and Serve (issue 16, Show 3): the serving
version came from a pipeline run, so a policy's requeue re-runs that pipeline (same files, its
parameters with the policy's overrides, no cache) instead of a job; the challenger is the version
the pipeline's gate let through, scored on the labelled requests and promoted. A requeue whose
gate holds the new version back leaves no challenger, saying why."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from loopml.client import Client
from loopml.executor import RunStatus, StepStatus, Trigger
from tests.integration.notebooks import notebook, write
from tests.integration.processes import wait_for
from tests.integration.test_loop import IRIS, send

TRAIN = notebook(
    "import loopml\n"
    "from sklearn.datasets import load_iris\n"
    "from sklearn.linear_model import LogisticRegression\n"
    "X, y = load_iris(return_X_y=True, as_frame=True)\n"
    "model = LogisticRegression(C=C, max_iter=500).fit(X, y)\n"
    "accuracy = model.score(X, y)\n"
    "loopml.log_model(model, 'irisp', X, y, metrics={'accuracy': accuracy})\n"
    "loopml.set_output('accuracy', accuracy)",
    parameters="C = 1.0",
)
PIPELINE = """
name: iris-retrain
parameters: {C: 1.0, min_accuracy: 0.5}
steps:
  train: {notebook: train.ipynb, parameters: {C: "{{ params.C }}"}}
  gate:
    after: [train]
    when: "steps.train.outputs.accuracy >= params.min_accuracy"
    promote: {model: irisp, alias: challenger}
"""


@pytest.mark.timeout(600)
def test_a_policy_requeue_reruns_the_pipeline_and_its_gated_version_is_the_challenger(
        platform, alice: Client, project: str, tmp_path: Path):
    api = f"{platform.url}/api/v1/projects/{project}"
    auth = {"Authorization": f"Bearer {platform.alice_token}"}
    (tmp_path / "iris-retrain.pipeline.yaml").write_text(PIPELINE)
    write(tmp_path / "train.ipynb", TRAIN)
    first = alice.run_pipeline(project, tmp_path / "iris-retrain.pipeline.yaml", parameters={"C": 0.001})
    first = alice.wait_pipeline_run(project, first.id, timeout=180)
    assert first.status == RunStatus.SUCCEEDED, [(s.id, s.message) for s in first.steps]
    [v1] = [v for v in alice.model(project, "irisp").versions]
    assert v1.lineage.pipeline_run_id == first.id and v1.lineage.pipeline_step == "train"
    alice.set_alias(project, "irisp", "champion", v1.version)
    url = alice.deploy(project, "irisp@champion", "ploop", public=True).endpoint.url + "/invocations"
    policy = httpx.put(f"{api}/endpoints/ploop/policy", headers=auth, json={
        "window": "30m", "min_samples": 60, "drift": True, "action": "requeue", "cooldown_s": 3600,
        "auto_promote": True, "promote_margin": 0.05, "parameters": {"C": 1.0}})
    assert policy.status_code == 200, policy.text

    rng = np.random.default_rng(11)
    rows = IRIS.data.to_numpy()
    picked = rng.integers(0, len(rows), 60)
    calm = send(url, rows[picked].tolist(), "calm")
    wait_for(lambda: alice.monitor(project, "ploop", window="30m").requests >= 60, timeout=30, every=0.5)
    fed = alice.feedback(project, "ploop", [{"request_id": i, "label": int(IRIS.target[p])}
                                            for i, p in zip(calm, picked, strict=True)])
    assert fed.accepted == 60
    shifted = rows[rng.integers(0, len(rows), 80)].copy()
    shifted[:, [2, 3]] += 3.0
    send(url, shifted.tolist(), "shifted")

    def requeued():
        """a drift alert that re-ran the pipeline"""
        found = [a for a in alice.alerts(project, endpoint="ploop") if a.kind == "drift" and a.pipeline_run_id]
        return found[0] if found else None

    alert = wait_for(requeued, timeout=60, every=0.5)
    assert alert.action == "requeue" and alert.job_id is None
    rerun = alice.pipeline_run(project, alert.pipeline_run_id)
    assert (rerun.parent_id, rerun.trigger, rerun.no_cache) == (first.id, Trigger.POLICY, True)
    assert rerun.parameters == {"C": 1.0, "min_accuracy": 0.5}  # the first run's, the policy's override on top
    rerun = alice.wait_pipeline_run(project, rerun.id, timeout=180)
    gate = next(s for s in rerun.steps if s.id == "gate")
    assert gate.status == StepStatus.SUCCEEDED and gate.outputs["alias"] == "challenger"

    def evaluated():
        """the challenger's evaluation"""
        [found] = [a for a in alice.alerts(project, endpoint="ploop") if a.id == alert.id]
        return found if found.evaluation else None

    done = wait_for(evaluated, timeout=240, every=2)
    assert done.produced_version == gate.outputs["version"] == v1.version + 1
    assert done.evaluation["winner"] == "challenger" and done.evaluation["promoted"] is True
    wait_for(lambda: alice.endpoint(project, "ploop").version == done.produced_version, timeout=30, every=0.5)

    # The button's requeue, with a gate the new version cannot pass: no challenger, and why.
    held = alice.requeue_endpoint(project, "ploop", parameters={"min_accuracy": 1.01})
    assert held.job is None and held.pipeline_run.parent_id == rerun.id  # the serving version's own run
    alice.wait_pipeline_run(project, held.pipeline_run.id, timeout=180)

    def held_back():
        """the held-back requeue's evaluation"""
        [found] = [a for a in alice.alerts(project, endpoint="ploop") if a.id == held.alert.id]
        return found if found.evaluation else None

    result = wait_for(held_back, timeout=60, every=1)
    assert result.produced_version is None and "gate held the new version back" in result.evaluation["result"]
    assert "min_accuracy" in result.evaluation["result"] or "1.01" in result.evaluation["result"]
    time.sleep(2 * platform.monitor_interval_s)
    assert alice.endpoint(project, "ploop").version == done.produced_version
    alice.delete_endpoint(project, "ploop")  # frees its replica's CPU for the session's later jobs
