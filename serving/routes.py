"""REST routes of the serving slice: a project's endpoints."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response

from loopml.auth import User, member
from loopml.names import check_name
from loopml.paging import Page, page
from loopml.services import Services, services
from loopml.serving.models import Deployed, Endpoint, EndpointCreate, EndpointPatch
from loopml.serving.service import EndpointService

router = APIRouter(tags=["endpoints"])


def endpoints(found: Services = Depends(services)) -> EndpointService:
    return found.endpoints


@router.post("/projects/{project}/endpoints", response_model=Deployed, status_code=201)
def deploy(project: str, spec: EndpointCreate, user: User = Depends(member),
           service: EndpointService = Depends(endpoints)):
    """Deploy a model version (``NAME@ALIAS`` or ``NAME/VERSION``) to an endpoint; an existing
    endpoint switches version inside its live replicas. The key is shown only at creation."""
    return service.deploy(user.name, project, spec)


@router.get("/projects/{project}/endpoints", response_model=list[Endpoint])
def list_endpoints(project: str, window: Page = Depends(page), user: User = Depends(member),
                   service: EndpointService = Depends(endpoints)):
    """The project's endpoints by name (``limit`` and ``offset`` page them)."""
    return window.of(service.list(project))


@router.get("/projects/{project}/endpoints/{name}", response_model=Endpoint)
def get_endpoint(project: str, name: str, user: User = Depends(member),
                 service: EndpointService = Depends(endpoints)):
    return service.get(project, check_name("endpoint", name))


@router.patch("/projects/{project}/endpoints/{name}", response_model=Deployed)
def update_endpoint(project: str, name: str, patch: EndpointPatch, user: User = Depends(member),
                    service: EndpointService = Depends(endpoints)):
    """Change scaling (``replicas`` or ``autoscale``), the canary's share, or rotate the key, in
    the running application. A rotated key is in the answer, once."""
    return service.update(user.name, project, check_name("endpoint", name), patch)


@router.post("/projects/{project}/endpoints/{name}/promote", response_model=Endpoint)
def promote_canary(project: str, name: str, user: User = Depends(member),
                   service: EndpointService = Depends(endpoints)):
    """End the canary: its version takes all traffic (recorded in the history)."""
    return service.promote(user.name, project, check_name("endpoint", name))


@router.post("/projects/{project}/endpoints/{name}/rollback", response_model=Endpoint)
def rollback(project: str, name: str, user: User = Depends(member), service: EndpointService = Depends(endpoints)):
    """Drop a running canary, or go back to the previously live version."""
    return service.rollback(user.name, project, check_name("endpoint", name))


@router.delete("/projects/{project}/endpoints/{name}", status_code=204)
def delete_endpoint(project: str, name: str, user: User = Depends(member),
                    service: EndpointService = Depends(endpoints)):
    service.delete(project, check_name("endpoint", name))
    return Response(status_code=204)
