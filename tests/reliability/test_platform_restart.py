"""The platform service restarts while jobs run and an endpoint is under traffic."""

from __future__ import annotations

from loopml.executor.models import JobStatus
from tests.integration.notebooks import SLOW, notebook
from tests.integration.processes import kernel_pid, restart_platform_service, wait_for
from tests.reliability.ledger import Traffic, assert_all_captured, assert_labels_kept


def test_restart_under_load_loses_no_job_version_capture_or_label_and_endpoints_keep_serving(platform, alice,
                                                                                               served):
    project = served["project"]
    versions = [v.version for v in alice.model(project, "iris").versions]
    running = alice.submit(project, SLOW, parameters={"seconds": 8})
    second = alice.submit(project, notebook("print('accepted before the restart')"))
    kernel_pid(alice, project, running.id)
    with Traffic(served, threads=2) as traffic:
        wait_for(lambda: len(traffic.answered) >= 20, timeout=30)
        labelled = dict(traffic.answered)
        assert_all_captured(alice, served, labelled)  # labels for these are accepted now
        restart_platform_service(platform)
        answered = len(traffic.answered)
        wait_for(lambda: len(traffic.answered) >= answered + 20, timeout=30)
    assert traffic.failures == [], "the endpoint failed requests while the platform restarted"
    assert_labels_kept(alice, served, labelled)
    assert_all_captured(alice, served, traffic.answered)  # including what was answered while the platform was down
    done = alice.wait(project, running.id, timeout=120)
    assert done.status == JobStatus.SUCCEEDED and done.attempt == 1 and "done" in alice.logs(project, running.id)
    assert alice.wait(project, second.id, timeout=120).status == JobStatus.SUCCEEDED
    assert [v.version for v in alice.model(project, "iris").versions] == versions
