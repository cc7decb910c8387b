"""Plain data of the registry slice."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field, StrictInt

from loopml.registry.contract import DataContract


class Lineage(BaseModel):
    """Where a version came from (job → run → version) and where it went (→ endpoints)."""

    job_id: str | None = None
    run_id: str | None = None
    user: str | None = None
    notebook: str | None = None
    notebook_sha256: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    pipeline_run_id: str | None = Field(None, description="The pipeline run whose step registered it.")
    pipeline_step: str | None = Field(None, description="That step.")
    endpoints: list[str] = Field(default_factory=list, description="Endpoints serving it (serving slice).")


class ModelVersion(BaseModel):
    version: int
    aliases: list[str]
    created_at: dt.datetime
    status: str
    source: str
    metrics: dict[str, float]
    params: dict[str, str]
    flavor: str | None
    reference: str | None = Field(None, description="Artifact URI of the reference sample for drift monitoring.")
    lineage: Lineage


class ModelSummary(BaseModel):
    name: str = Field(description="Name within the project.")
    registered_name: str = Field(description="MLflow registered model name, <project>.<name>.")
    latest_version: int | None
    aliases: dict[str, int]
    updated_at: dt.datetime | None


class AliasChange(BaseModel):
    alias: str
    version: int | None
    previous: int | None
    user: str
    at: dt.datetime


class Model(ModelSummary):
    versions: list[ModelVersion] = Field(description="Newest first.")
    alias_history: list[AliasChange]


class AliasSet(BaseModel):
    """Body of ``POST .../models/{name}/aliases``."""

    alias: str = Field(description="champion, challenger, or any lowercase word.")
    version: StrictInt = Field(gt=0)


class ModelRef(BaseModel):
    """A version a job registered."""

    name: str
    version: int


class RegisteredVersion(ModelRef):
    """A version as the registry has it: its model (name within the project), when and by which job."""

    created_at: dt.datetime | None
    job_id: str | None = Field(None, description="The loopml job that registered it, if one did.")


class ContractView(BaseModel):
    """A version's data contract: the logged one with the users' overrides applied."""

    model: str = Field(description="Name within the project.")
    version: int
    contract: DataContract | None = Field(
        description="The effective contract; None for a version logged without one (a tensor signature, or "
                    "logged before loopml derived contracts).")
    overrides: dict[str, dict[str, Any]] = Field(default_factory=dict,
                                                 description="The users' overrides: {feature: {rule: value}}.")
    updated_by: str | None = Field(None, description="Who changed the overrides last.")
    updated_at: dt.datetime | None = None
    endpoints: list[str] = Field(default_factory=list,
                                 description="Endpoints serving the version, which now check the new contract "
                                             "(in the answer to a change).")


class ContractPatch(BaseModel):
    """Body of ``PATCH .../versions/{version}/contract``."""

    set: list[str] = Field(min_length=1, max_length=500, description=(
        "Overrides as feature.rule=value: min, max (a number or none), categories (a,b,c or none), missing "
        "(a share 0-1), check (on/off); the value logged drops an override."))
