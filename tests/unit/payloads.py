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
