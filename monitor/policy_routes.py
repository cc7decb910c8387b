"""REST routes of policies, alerts and requeues (the feedback loop)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from loopml.auth import User, member
from loopml.monitor.models import Alert, Policy, PolicySpec, Requeued, RequeueRequest
from loopml.monitor.policies import PolicyService
from loopml.names import check_name
from loopml.paging import Page, page
from loopml.services import Services, services

router = APIRouter(tags=["monitor"])


def policies(found: Services = Depends(services)) -> PolicyService:
    return found.policies


@router.put("/projects/{project}/endpoints/{name}/policy", response_model=Policy)
def set_policy(project: str, name: str, spec: PolicySpec, user: User = Depends(member),
               service: PolicyService = Depends(policies)):
    """Set the endpoint's thresholds, action (alert or requeue), cooldown and auto-promotion."""
    return service.set_policy(user.name, project, check_name("endpoint", name), spec)


@router.get("/projects/{project}/endpoints/{name}/policy", response_model=Policy)
def get_policy(project: str, name: str, user: User = Depends(member), service: PolicyService = Depends(policies)):
    return service.get_policy(project, check_name("endpoint", name))


@router.post("/projects/{project}/endpoints/{name}/requeue", response_model=Requeued, status_code=201)
def requeue(project: str, name: str, body: RequeueRequest | None = None, user: User = Depends(member),
            service: PolicyService = Depends(policies)):
    """Resubmit the training job of the version the endpoint serves (trigger ``user``); the
    alert it answers (or a new ``manual`` one) records the job and, later, the challenger."""
    return service.requeue(user.name, project, check_name("endpoint", name), body or RequeueRequest())


@router.get("/projects/{project}/alerts", response_model=list[Alert])
def list_alerts(project: str, endpoint: str | None = None, status: str | None = Query(None, pattern="^(open|closed)$"),
                job_id: str | None = Query(None, pattern="^[0-9a-f]{1,32}$"), window: Page = Depends(page),
                user: User = Depends(member), service: PolicyService = Depends(policies)):
    """Alerts newest first (the latest 500; ``limit`` and ``offset`` page them); ``job_id`` finds the
    alert that requeued a job (lineage)."""
    return window.of(service.alerts(project, check_name("endpoint", endpoint) if endpoint else None, status, job_id))
