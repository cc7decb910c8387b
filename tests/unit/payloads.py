"""REST answers, as plain JSON, that the client and CLI unit tests feed their fakes."""

from __future__ import annotations

from typing import Any

NOTEBOOK = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def job_json(job_id: str = "j1", status: str = "QUEUED", done: int = 0, total: int = 0, **fields: Any) -> dict[str, Any]:
    data = {
        "id": job_id, "project": "demo", "user": "alice", "name": "train.ipynb", "status": status,
        "message": None, "progress": {"cells_done": done, "cells_total": total}, "error": None,
        "attempt": 1, "parameters": {}, "resources": {"cpus": 1, "gpus": 0, "memory_mb": None, "custom": {}},
        "timeout_s": None, "max_retries": 0, "mlflow_run_id": None, "trigger": "user", "parent_id": None,
        "schedule_id": None, "created_at": "2025-01-01T10:00:00Z", "started_at": None, "finished_at": None,
    }
    return data | fields


LOOP_STAGES = ("workspace_opened", "code_submitted", "trained", "versioned", "live", "monitored", "feedback_received")


def loop_json(project: str = "demo", **reached: dict[str, Any]) -> dict[str, Any]:
    """``GET /projects/{p}/loop``: the stages named in ``reached`` (``trained={"kind": "job", "id": "j1"}``) were
    reached by that object at 2025-01-01T10:00:00Z; ``note`` in an object's place is why a stage cannot be told."""
    stages = []
    for name in LOOP_STAGES:
        found = reached.get(name)
        if found is None or "note" in found:
            stages.append({"name": name, "reached": False, "object": None, "at": None,
                           "note": (found or {}).get("note")})
        else:
            stages.append({"name": name, "reached": True, "object": {"detail": "", **found},
                           "at": "2025-01-01T10:00:00Z", "note": None})
    return {"project": project, "stages": stages}
