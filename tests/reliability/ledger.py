"""What a reliability case accepted, so it can check afterwards that none of it was lost.

Captured predictions and labels are checked through the platform's own API: a label sent
for a request id the platform never captured comes back under ``unknown``, and a label sent
again with the same value counts as ``unchanged``.
"""

from __future__ import annotations

import threading
import time
import uuid

import httpx

from tests.integration.endpoints import score


class Traffic:
    """Scoring requests sent by ``threads`` background threads until :meth:`stop`.

    Each request carries its own ``x-request-id``; ``answered`` maps the ids the endpoint
    answered 200 to their predictions, ``failures`` lists every other outcome (status or
    exception name) with the seconds it took.
    """

    def __init__(self, endpoint: dict, *, threads: int = 2, timeout: float = 30) -> None:
        self.endpoint, self.timeout = endpoint, timeout
        self.answered: dict[str, list] = {}
        self.failures: list[tuple[str | int, float]] = []
        self.longest = 0.0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(self.timeout + 5)

    def _run(self) -> None:
        with httpx.Client() as http:
            while not self._stop.is_set():
                request_id = f"rel-{uuid.uuid4().hex[:20]}"
                began = time.monotonic()
                try:
                    answer = score(self.endpoint, http=http, request_id=request_id, timeout=self.timeout)
                    outcome: str | int = answer.status_code
                except httpx.HTTPError as exc:
                    outcome, answer = type(exc).__name__, None
                took = time.monotonic() - began
                with self._lock:
                    self.longest = max(self.longest, took)
                    if outcome == 200:
                        self.answered[request_id] = answer.json()["predictions"]
                    else:
                        self.failures.append((outcome, took))
                if outcome != 200:
                    time.sleep(0.2)


def labels_for(answered: dict[str, list]) -> list[dict]:
    """One feedback item per answered request: its own predictions as the label."""
    return [{"request_id": request_id, "label": predictions} for request_id, predictions in answered.items()]


def assert_all_captured(client, endpoint: dict, answered: dict[str, list], timeout: float = 30) -> None:
    """Every answered request is captured, and labelling them all is accepted (idempotent)."""
    items = labels_for(answered)
    deadline = time.monotonic() + timeout
    while True:
        result = client.feedback(endpoint["project"], endpoint["name"], items)
        if not result.unknown or time.monotonic() > deadline:
            break
        time.sleep(1)  # replicas send captured records in batches, about every second
    assert result.unknown == [], f"{len(result.unknown)} of {len(items)} answered requests were not captured"


def assert_labels_kept(client, endpoint: dict, labelled: dict[str, list]) -> None:
    """Labels accepted earlier are still stored: sending them again changes nothing."""
    result = client.feedback(endpoint["project"], endpoint["name"], labels_for(labelled))
    assert (result.unknown, result.accepted, result.updated, result.unchanged) == ([], 0, 0, len(labelled))
