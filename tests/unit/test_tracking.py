"""A job's MLflow run is created whole or not at all (MLflow's client faked at the edge)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from loopml.errors import Unavailable
from loopml.registry.tracking import JobTracking


class FlakyMlflow:
    """Creates runs, then fails the call named ``failing`` as a dead server would."""

    def __init__(self, failing: str) -> None:
        self.failing, self.runs, self.deleted = failing, [], []

    def __getattr__(self, name):
        raise AssertionError(f"unexpected MLflow call {name}")

    def _maybe_fail(self, name: str) -> None:
        if name == self.failing:
            raise ConnectionError("connection refused")

    def create_run(self, experiment_id, run_name=None):
        self._maybe_fail("create_run")
        self.runs.append(f"run-{len(self.runs)}")
        return SimpleNamespace(info=SimpleNamespace(run_id=self.runs[-1]))

    def log_batch(self, run_id, params=(), tags=()):
        self._maybe_fail("log_batch")

    def log_text(self, run_id, text, path):
        self._maybe_fail("log_text")

    def delete_run(self, run_id):
        self.deleted.append(run_id)


@pytest.mark.parametrize("failing", ["create_run", "log_batch", "log_text"])
def test_a_run_that_cannot_be_completed_is_deleted_and_the_job_refused(failing):
    tracking = JobTracking("http://127.0.0.1:9")
    tracking.client = FlakyMlflow(failing)
    tracking._experiments["p"] = "1"
    with pytest.raises(Unavailable, match="nothing was created"):
        tracking.start_run(project="p", job_id="j", name="nb.ipynb", user="alice", trigger="user",
                           parameters={"C": 1}, notebook="{}", parent_id=None)
    assert tracking.client.deleted == tracking.client.runs  # every run it created is gone again


def test_a_complete_run_is_kept():
    tracking = JobTracking("http://127.0.0.1:9")
    tracking.client = FlakyMlflow("nothing")
    tracking._experiments["p"] = "1"
    run_id = tracking.start_run(project="p", job_id="j", name="nb.ipynb", user="alice", trigger="user",
                                parameters={}, notebook="{}", parent_id=None)
    assert run_id == "run-0" and tracking.client.deleted == []
