"""Where a project stands in the loop, as plain data: :class:`LoopState`, a list of
:class:`LoopStage` (workspace opened → model code submitted → trained → versioned → live →
monitored → feedback received), each with the :class:`LoopObject` that reached it and when.

The platform composes it (:mod:`loopml.server.loop`) and answers it at
``GET /projects/{project}/loop``; the client, the CLI (``loopml projects show``), the
dashboard's top row and the admin panel read it. Pydantic only, so a polling panel pays for
nothing more.
"""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Literal

from pydantic import BaseModel, Field, computed_field


class LoopStageName(str, Enum):
    """The stages of the loop, in the loop's order."""

    WORKSPACE_OPENED = "workspace_opened"
    CODE_SUBMITTED = "code_submitted"
    TRAINED = "trained"
    VERSIONED = "versioned"
    LIVE = "live"
    MONITORED = "monitored"
    FEEDBACK_RECEIVED = "feedback_received"

    @property
    def label(self) -> str:
        """The stage in words: ``model code submitted``."""
        return "model code submitted" if self is LoopStageName.CODE_SUBMITTED else self.value.replace("_", " ")


class LoopObject(BaseModel):
    """What reached a stage; ``str()`` of it reads ``job 3f2a… (train.ipynb, SUCCEEDED)``."""

    kind: Literal["workspace", "job", "model_version", "endpoint", "alert"]
    id: str = Field(description="The workspace's user, the job id, `model/version`, the endpoint's name or the "
                                "alert's id.")
    detail: str = Field("", description="What else tells it apart: a job's name and status, the job that registered "
                                        "a version, the version an endpoint serves, an alert's kind and status.")

    def __str__(self) -> str:
        what = f"{self.kind.replace('_', ' ')} {self.id}"
        return f"{what} ({self.detail})" if self.detail else what


class LoopStage(BaseModel):
    name: LoopStageName
    reached: bool
    object: LoopObject | None = Field(None, description="The newest object that reached the stage.")
    at: dt.datetime | None = Field(None, description="When that object reached it.")
    note: str | None = Field(None, description="Why the stage cannot be told now (MLflow not answering…): it then "
                                               "reads as not reached.")


class LoopState(BaseModel):
    """Where a project stands in the loop: each stage, in order, whether it was reached and by what."""

    project: str
    stages: list[LoopStage]

    @computed_field(description="The last stage, in the loop's order, that was reached; none before any.")
    @property
    def furthest(self) -> LoopStageName | None:
        return next((stage.name for stage in reversed(self.stages) if stage.reached), None)

    def stage(self, name: LoopStageName | str) -> LoopStage:
        """The stage ``name``; KeyError for a stage the state does not hold."""
        wanted = LoopStageName(name)
        for stage in self.stages:
            if stage.name is wanted:
                return stage
        raise KeyError(wanted.value)
