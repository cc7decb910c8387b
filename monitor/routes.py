"""REST routes of the monitor slice: an endpoint's monitor report and its feedback labels."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from loopml.auth import User, member
from loopml.monitor.models import FeedbackItem, FeedbackResult, MonitorReport
from loopml.monitor.service import MonitorService
from loopml.names import check_name
from loopml.services import Services, services

router = APIRouter(tags=["monitor"])


def monitor(found: Services = Depends(services)) -> MonitorService:
    return found.monitor


@router.get("/projects/{project}/endpoints/{name}/monitor", response_model=MonitorReport)
def monitor_report(project: str, name: str,
                   window: str = Query("1h", description="How far back: a number and s, m, h or d (≤ 30d)."),
                   user: User = Depends(member), service: MonitorService = Depends(monitor)):
    """Traffic, errors, latency, drift against the reference sample and quality from labels,
    over the last ``window``, with a 12-bucket trend."""
    return service.report(project, check_name("endpoint", name), window)


@router.post("/projects/{project}/endpoints/{name}/feedback", response_model=FeedbackResult)
def feedback(project: str, name: str, items: list[FeedbackItem], user: User = Depends(member),
             service: MonitorService = Depends(monitor)):
    """Store true labels of captured requests (by ``x-request-id``); resending is idempotent and
    unknown ids are listed in the answer."""
    return service.feedback(project, check_name("endpoint", name), items)
