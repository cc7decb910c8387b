"""REST routes of the registry slice: a project's models, versions and aliases."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from loopml.auth import User, member
from loopml.paging import Page, page
from loopml.registry.models import AliasSet, ContractPatch, ContractView, Model, ModelSummary
from loopml.registry.names import check_alias, short_name
from loopml.registry.service import RegistryService, check_version
from loopml.services import Services, services

router = APIRouter(tags=["models"])


def registry(found: Services = Depends(services)) -> RegistryService:
    return found.registry


@router.get("/projects/{project}/models", response_model=list[ModelSummary])
def list_models(project: str, window: Page = Depends(page), user: User = Depends(member),
                service: RegistryService = Depends(registry)):
    """The project's registered models with their aliases, by name (``limit`` and ``offset`` page them)."""
    return window.of(service.list(project))


# before get_model: its {name:path} would take .../versions/{version}/contract for a model name
@router.get("/projects/{project}/models/{name}/versions/{version}/contract", response_model=ContractView)
def get_contract(project: str, name: str, version: int, user: User = Depends(member),
                 found: Services = Depends(services)):
    """The version's data contract: the one it was logged with, the users' overrides applied."""
    return found.contracts.get(project, short_name(project, name), check_version(version))


@router.patch("/projects/{project}/models/{name}/versions/{version}/contract", response_model=ContractView)
def update_contract(project: str, name: str, version: int, change: ContractPatch, user: User = Depends(member),
                    found: Services = Depends(services)):
    """Override rules of the version's data contract (``feature.rule=value``); the endpoints serving
    the version check requests against the result at once (they are listed in the answer)."""
    return found.contracts.update(project, short_name(project, name), check_version(version), change.set,
                                  user=user.name)


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
