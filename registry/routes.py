"""REST routes of the registry slice: a project's models, versions and aliases."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from loopml.auth import User, member
from loopml.paging import Page, page
from loopml.registry.models import AliasSet, Model, ModelSummary
from loopml.registry.names import check_alias, short_name
from loopml.registry.service import RegistryService
from loopml.services import Services, services

router = APIRouter(tags=["models"])


def registry(found: Services = Depends(services)) -> RegistryService:
    return found.registry


@router.get("/projects/{project}/models", response_model=list[ModelSummary])
def list_models(project: str, window: Page = Depends(page), user: User = Depends(member),
                service: RegistryService = Depends(registry)):
    """The project's registered models with their aliases, by name (``limit`` and ``offset`` page them)."""
    return window.of(service.list(project))


@router.get("/projects/{project}/models/{name:path}", response_model=Model)
def get_model(project: str, name: str, user: User = Depends(member), service: RegistryService = Depends(registry)):
    """One model: versions newest first, with metrics, params, aliases and lineage."""
    return service.get(project, short_name(project, name))


@router.post("/projects/{project}/models/{name}/aliases", response_model=Model)
def set_alias(project: str, name: str, change: AliasSet, user: User = Depends(member),
              service: RegistryService = Depends(registry)):
    """Point an alias (``champion`` to promote) at a version; the move is recorded."""
    return service.set_alias(project, short_name(project, name), change.alias, change.version, user=user.name)


@router.delete("/projects/{project}/models/{name}/aliases/{alias}", response_model=Model)
def delete_alias(project: str, name: str, alias: str, user: User = Depends(member),
                 service: RegistryService = Depends(registry)):
    return service.delete_alias(project, short_name(project, name), check_alias(alias), user=user.name)
