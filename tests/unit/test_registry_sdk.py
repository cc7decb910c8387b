"""The notebook SDK's pure parts: job context from the environment, reference frames, refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loopml.errors import InvalidInput, LoopMLError
from loopml.registry import sdk


def test_current_job_is_none_outside_a_job(monkeypatch):
    monkeypatch.delenv("LOOPML_JOB_ID", raising=False)
    assert sdk.current_job() is None


def test_current_job_reads_what_the_runner_sets(monkeypatch):
    env = {"LOOPML_JOB_ID": "j1", "LOOPML_PROJECT": "demo", "LOOPML_USER": "alice", "LOOPML_ATTEMPT": "2",
           "LOOPML_JOB_NAME": "train.ipynb", "MLFLOW_RUN_ID": "r1", "MLFLOW_TRACKING_URI": "http://m",
           "LOOPML_PARAMETERS": '{"C": 0.5}', "LOOPML_NOTEBOOK_SHA256": "ab" * 32}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    job = sdk.current_job()
    assert (job.job_id, job.project, job.user, job.attempt, job.name, job.run_id) == (
        "j1", "demo", "alice", 2, "train.ipynb", "r1")
    assert job.parameters == {"C": 0.5} and job.notebook_sha256 == "ab" * 32


@pytest.mark.parametrize("X", [np.arange(12).reshape(4, 3), pd.DataFrame({"a": [1, 2, 3, 4], "b": [5, 6, 7, 8]})],
                         ids=["array", "frame"])
def test_reference_frame_holds_features_predictions_and_labels(X):
    frame = sdk._reference_frame(X, np.array([0, 1, 0, 1]), np.array([0, 1, 1, 1]))
    assert list(frame.columns)[-2:] == [sdk.PREDICTION_COLUMN, sdk.LABEL_COLUMN]
    assert all(isinstance(c, str) for c in frame.columns) and len(frame) == 4


def test_sample_keeps_small_inputs_and_spreads_large_ones():
    small = np.arange(10)
    assert sdk._sample(small, 20) is small
    picked = sdk._sample(np.arange(10_000), 100)
    assert len(picked) == 100 and picked.min() < 1000 and picked.max() > 9000 and list(picked) == sorted(picked)


def test_log_model_needs_a_project(monkeypatch):
    for name in ("LOOPML_JOB_ID", "LOOPML_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(LoopMLError, match="needs a project"):
        sdk.log_model(object(), "m", [[1]])


def test_log_model_refuses_bad_names_before_touching_mlflow(monkeypatch):
    monkeypatch.delenv("LOOPML_JOB_ID", raising=False)
    monkeypatch.setenv("LOOPML_PROJECT", "demo")
    with pytest.raises(InvalidInput, match="path separator"):
        sdk.log_model(object(), "../etc", [[1]])
    with pytest.raises(InvalidInput, match="X_train is empty"):
        sdk.log_model(object(), "ok", [])
