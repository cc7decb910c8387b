"""``loopml down`` while a job runs and an endpoint is under traffic, then ``loopml up`` again."""

from __future__ import annotations

import httpx

from loopml.executor.models import JobStatus
from tests.integration.endpoints import score
from tests.integration.notebooks import SLOW
from tests.integration.platform_fixtures import down_leaving_nothing
from tests.integration.processes import kernel_pid, up_again, wait_for
from tests.reliability.ledger import Traffic, assert_all_captured, assert_labels_kept


def test_down_with_work_in_flight_loses_nothing_and_leaves_no_process(platform, alice, served):
    project = served["project"]
    versions = [v.version for v in alice.model(project, "iris").versions]
    running = alice.submit(project, SLOW, parameters={"seconds": 15}, max_retries=1)
    kernel_pid(alice, project, running.id)
    with Traffic(served, threads=2) as traffic:
        wait_for(lambda: len(traffic.answered) >= 20, timeout=30)
        labelled = dict(traffic.answered)
        assert_all_captured(alice, served, labelled)
        answered = len(traffic.answered)
        wait_for(lambda: len(traffic.answered) >= answered + 20, timeout=30)
        assert alice.job(project, running.id).status == JobStatus.RUNNING
        down_leaving_nothing(platform.home, platform.env)  # under traffic; every process of the instance is gone

    up_again(platform)
    assert_labels_kept(alice, served, labelled)
    # what the replica answered just before `down` (and had not sent yet) was flushed, not dropped
    assert_all_captured(alice, served, traffic.answered)
    assert [v.version for v in alice.model(project, "iris").versions] == versions
    answer = wait_for(lambda: _answer(served), timeout=120, every=1)  # the platform redeployed it
    assert answer.json() == {"predictions": served["predictions"]}
    done = alice.wait(project, running.id, timeout=180)  # its runner died with Ray: retried, and it succeeds
    assert done.status == JobStatus.SUCCEEDED and done.attempt == 2
    assert "the runner was lost" in alice.logs(project, running.id)


def _answer(endpoint: dict) -> httpx.Response | None:
    try:
        answer = score(endpoint, timeout=10)
    except httpx.HTTPError:  # Serve's proxy is not listening yet
        return None
    return answer if answer.status_code == 200 else None
