"""Plain data of the serving slice."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, field_validator, model_validator

from loopml.names import check_custom_resources, check_name
from loopml.registry.tags import CHAMPION

_MODEL_REF = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,140}?)(?:@(?P<alias>[a-z][a-z0-9_-]{0,63})|/(?P<version>\d{1,9}))?$")


MAX_REPLICAS = 16
OnViolation = Literal["pass", "refuse", "header"]


class Autoscale(BaseModel):
    """Replica bounds Serve scales between, by ongoing requests per replica."""

    min: StrictInt = Field(ge=1, le=MAX_REPLICAS, description="Replicas kept running when idle.")
    max: StrictInt = Field(ge=1, le=MAX_REPLICAS, description="Replicas at most, under load.")

    @model_validator(mode="after")
    def _ordered(self) -> Autoscale:
        if self.max < self.min:
            raise ValueError(f"autoscale max ({self.max}) is below min ({self.min}): use MIN:MAX with MIN <= MAX")
        return self

    @classmethod
    def parse(cls, text: str) -> Autoscale:
        """``"MIN:MAX"`` (e.g. ``"1:4"``); ValueError naming the problem otherwise."""
        low, sep, high = text.partition(":")
        if not sep or not low.strip().isdigit() or not high.strip().isdigit():
            raise ValueError(f"invalid autoscale {text!r}: use MIN:MAX, e.g. 1:4")
        return cls(min=int(low), max=int(high))


class EndpointResources(BaseModel):
    """What each replica reserves on the Ray cluster besides its fixed CPU share: custom Ray
    resources, validated like a job's ``resources.custom``. ``{"custom": {"node2": 0.1}}``
    places every replica on a node that offers ``node2`` (and takes 0.1 of it)."""

    model_config = ConfigDict(extra="forbid")

    custom: dict[str, StrictFloat] = Field(
        default_factory=dict,
        description="Custom Ray resources per replica, e.g. {'node2': 0.1} to place replicas on the node that "
                    "offers it.",
    )

    @model_validator(mode="before")
    @classmethod
    def _only_custom(cls, value: Any) -> Any:
        if isinstance(value, dict) and set(value) - {"custom"}:
            unknown = ", ".join(sorted(map(str, set(value) - {"custom"})))
            raise ValueError(f"unknown field(s) {unknown}: an endpoint replica takes only custom Ray resources, "
                             'given as {"custom": {"NAME": AMOUNT}}, e.g. {"custom": {"node2": 0.1}}')
        return value

    @field_validator("custom")
    @classmethod
    def _custom(cls, value: dict[str, float]) -> dict[str, float]:
        return check_custom_resources(value)

    def text(self) -> str:
        """``node2=0.1, fast=1``; empty when there are none."""
        return ", ".join(f"{name}={amount:g}" for name, amount in self.custom.items())


def _one_scaling(spec: BaseModel) -> None:
    if spec.autoscale is not None and "replicas" in spec.model_fields_set and spec.replicas is not None:
        raise ValueError("give either replicas or autoscale, not both")


class EndpointCreate(BaseModel):
    """Body of ``POST /projects/{project}/endpoints``."""

    name: str = Field(description="Endpoint name: lowercase letters, digits, '-', '_'.")
    model: str = Field(description="NAME@ALIAS, NAME/VERSION or NAME (= NAME@champion); NAME may carry the project prefix.")
    public: StrictBool = Field(False, description="Serve without a key.")
    replicas: StrictInt = Field(1, ge=1, le=MAX_REPLICAS, description="Fixed number of replicas.")
    autoscale: Autoscale | None = Field(None, description="Scale between min and max replicas instead.")
    canary: StrictFloat | None = Field(None, gt=0, lt=100,
                                 description="Serve this version to PCT% of requests beside the live one.")
    resources: EndpointResources | None = Field(
        None, description="Custom Ray resources each replica reserves (placement); left out, an existing "
                          "endpoint keeps its own. A change restarts the replicas where the resources are.")
    on_violation: OnViolation | None = Field(
        None, description="What a request that breaks the version's data contract gets: pass (scored, counted; "
                          "the default), refuse (422 naming the feature and rule) or header (scored, with an "
                          "x-loopml-violations header). Left out, an existing endpoint keeps its own.")
    capture_probabilities: StrictBool | None = Field(
        None, description="Capture a classifier's class probabilities (estimated accuracy needs them; default "
                          "on). Left out, an existing endpoint keeps its own.")

    @model_validator(mode="after")
    def _scaling(self) -> EndpointCreate:
        _one_scaling(self)
        return self

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
        alias = found.group("alias") or (None if version else CHAMPION)
        return found.group("name"), alias, int(version) if version else None


class EndpointPatch(BaseModel):
    """Body of ``PATCH /projects/{project}/endpoints/{name}``: only the fields given change.

    Scaling and the canary share change inside the running application (no restart); a new
    key replaces the old one at once and is answered once.
    """

    replicas: StrictInt | None = Field(None, ge=1, le=MAX_REPLICAS, description="Fixed number of replicas.")
    autoscale: Autoscale | None = Field(None, description="Scale between min and max replicas.")
    canary_percent: StrictFloat | None = Field(None, gt=0, lt=100, description="New share of the running canary.")
    rotate_key: StrictBool = Field(False, description="Issue a new bearer key; the old one stops working.")
    on_violation: OnViolation | None = Field(None, description="New data-contract mode: pass, refuse or header.")
    capture_probabilities: StrictBool | None = Field(None, description="Capture class probabilities, or stop.")

    @model_validator(mode="after")
    def _something(self) -> EndpointPatch:
        _one_scaling(self)
        if (self.replicas is None and self.autoscale is None and self.canary_percent is None and not self.rotate_key
                and self.on_violation is None and self.capture_probabilities is None):
            raise ValueError("nothing to change: give replicas, autoscale, canary_percent, rotate_key, "
                             "on_violation or capture_probabilities")
        return self


class HistoryEntry(BaseModel):
    at: dt.datetime
    user: str
    action: str
    version: int | None = None
    kind: str = Field("stable", description="stable: the live version changed; canary: a canary was set; "
                                            "config: scaling, canary share or key changed.")


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
    replicas: int = Field(description="Fixed replicas, or the minimum when autoscaling.")
    autoscale: Autoscale | None = None
    resources: EndpointResources = Field(default_factory=EndpointResources,
                                         description="Custom Ray resources each replica reserves.")
    on_violation: OnViolation = Field("pass", description="Data-contract mode: pass, refuse or header.")
    capture_probabilities: bool = Field(True, description="Whether a classifier's probabilities are captured.")
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime
    history: list[HistoryEntry]


class Deployed(BaseModel):
    """Answer of a deploy or update: the endpoint and, once, its key (``None`` when public or kept)."""

    endpoint: Endpoint
    key: str | None = Field(None, description="Bearer key of the endpoint; shown only when created.")
