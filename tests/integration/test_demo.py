"""`loopml demo` runs the whole loop headless against the real platform and says each step."""

from __future__ import annotations

import re

import pytest


@pytest.mark.timeout(600)
def test_demo_runs_the_loop_to_a_promoted_challenger(platform):
    ran = platform.cli("demo", "--requests", "100", token=platform.admin_token, timeout=540)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    out = ran.stdout
    assert "drifted features: none, alerts: 0" in out
    # the alert names the shifted features that had drifted when the policy's pass ran: both,
    # or the first to show while the shifted traffic was still arriving
    shifted = r"petal (length|width) \(cm\)"
    assert re.search(rf"drift alert \w+ on {shifted}(, {shifted})?: requeue", out)
    assert re.search(r"challenger v2: accuracy [\d.]+ vs champion [\d.]+ on 100 labelled requests -> promoted", out)
    assert "endpoint iris serves v2" in out
