"""One request must not freeze the platform: while a submit with a hostile parameters cell is
in flight, ``/api/v1/health`` keeps answering within a second, and the submit itself ends
with a JSON 4xx (or a job) in bounded time.

papermill's parameter regex backtracks quadratically on ``a: a<many spaces>b``; run in the
platform process it held the GIL for minutes (health checks, capture ingest and the
dispatcher loop all stopped).
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

pytestmark = pytest.mark.integration

HEALTH_WITHIN_S = 1.0
SUBMIT_WITHIN_S = 10.0


def attack_notebook(spaces: int) -> dict:
    cell = "a: a" + " " * spaces + "b"
    return {
        "cells": [{"cell_type": "code", "execution_count": None, "id": "p", "metadata": {"tags": ["parameters"]},
                   "outputs": [], "source": cell},
                  {"cell_type": "code", "execution_count": None, "id": "c", "metadata": {}, "outputs": [],
                   "source": "print(a)"}],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }


def health_latencies_while(platform, busy: threading.Event, at_least: int = 3) -> list[float]:
    """Seconds each ``/api/v1/health`` took, asked one after another while ``busy`` is set
    (and ``at_least`` times in all); a call that takes over 5 s counts as 5 s."""
    latencies: list[float] = []
    with httpx.Client(base_url=platform.url, timeout=5) as http:
        while busy.is_set() or len(latencies) < at_least:
            started = time.perf_counter()
            try:
                http.get("/api/v1/health").raise_for_status()
                latencies.append(time.perf_counter() - started)
            except httpx.TimeoutException:
                latencies.append(5.0)
                busy.clear()  # the platform is frozen: that is the answer
            time.sleep(0.05)
    return latencies


@pytest.mark.parametrize("spaces", [300_000, 60_000], ids=["over-the-cell-limit", "under-the-cell-limit"])
def test_health_answers_while_a_hostile_parameters_cell_is_submitted(platform, project, spaces):
    answer: dict = {}
    busy = threading.Event()
    busy.set()

    def submit() -> None:
        started = time.perf_counter()
        try:
            with httpx.Client(base_url=platform.url, timeout=SUBMIT_WITHIN_S) as http:
                response = http.post(f"/api/v1/projects/{project}/jobs",
                                     json={"notebook": attack_notebook(spaces), "parameters": {"a": "x"}},
                                     headers={"Authorization": f"Bearer {platform.alice_token}"})
                answer.update(status=response.status_code, body=response.json())
        except httpx.TimeoutException:
            answer.update(status=None)
        finally:
            answer["seconds"] = time.perf_counter() - started
            busy.clear()

    thread = threading.Thread(target=submit, daemon=True)
    thread.start()
    latencies = health_latencies_while(platform, busy)
    thread.join(SUBMIT_WITHIN_S + 5)

    assert max(latencies) < HEALTH_WITHIN_S, f"/health took {max(latencies):.2f} s while the submit was in flight"
    assert answer.get("status") is not None, f"the submit took over {SUBMIT_WITHIN_S} s"
    if spaces > 64_000:
        assert answer["status"] == 422, answer
        assert "more than the limit of 64000" in answer["body"]["message"]
    else:  # parsed: ``a: a<spaces>b`` is no Python
        assert answer["status"] == 422, answer
        assert "the parameters cell is not valid Python" in answer["body"]["message"]
