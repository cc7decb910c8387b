"""Plain data of the serving slice."""

from __future__ import annotations

import datetime as dt
import re

from pydantic import BaseModel, Field, field_validator

from loopml.names import check_name

_MODEL_REF = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,140}?)(?:@(?P<alias>[a-z][a-z0-9_-]{0,63})|/(?P<version>\d{1,9}))?$")


class EndpointCreate(BaseModel):
    """Body of ``POST /projects/{project}/endpoints``."""

    name: str = Field(description="Endpoint name: lowercase letters, digits, '-', '_'.")
    model: str = Field(description="NAME@ALIAS, NAME/VERSION or NAME (= NAME@champion); NAME may carry the project prefix.")
    public: bool = Field(False, description="Serve without a key.")
    replicas: int = Field(1, ge=1, le=16)
    canary: float | None = Field(None, gt=0, lt=100,
                                 description="Serve this version to PCT% of requests beside the live one.")

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return check_name("endpoint", value)

    @field_validator("model")
    @classmethod
    def _model(cls, value: str) -> str:
        if not _MODEL_REF.fullmatch(value):
            raise ValueError(f"invalid model reference {value!r}: use NAME@ALIAS, NAME/VERSION or NAME")
        return value

    def reference(self) -> tuple[str, str | None, int | None]:
        """(model name, alias, version) of :attr:`model`; NAME alone means ``@champion``."""
        found = _MODEL_REF.fullmatch(self.model)
        version = found.group("version")
        alias = found.group("alias") or (None if version else "champion")
        return found.group("name"), alias, int(version) if version else None


class HistoryEntry(BaseModel):
    at: dt.datetime
    user: str
    action: str
    version: int | None = None
    kind: str = Field("stable", description="stable: the live version changed; canary: a canary was set.")


class Endpoint(BaseModel):
    project: str
    name: str
    model: str = Field(description="Registered model name, <project>.<name>.")
    version: int
    alias: str | None = Field(None, description="The alias the version was resolved from, if any.")
    url: str = Field(description="Base URL: POST <url>/invocations, POST <url>/v2/models/<name>/infer.")
    canary_version: int | None = Field(None, description="Version answering a share of requests, if any.")
    canary_percent: float | None = None
    public: bool
    replicas: int
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime
    history: list[HistoryEntry]


class Deployed(BaseModel):
    """Answer of a deploy: the endpoint and, once, its key (``None`` when public or kept)."""

    endpoint: Endpoint
    key: str | None = Field(None, description="Bearer key of the endpoint; shown only when created.")
