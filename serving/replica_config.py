"""What an endpoint's replicas are told: the Serve application's ``user_config``.

The platform builds a :class:`ReplicaConfig` (:meth:`loopml.serving.service.EndpointService._config`)
and hands Serve its JSON form; each replica validates it back in
:meth:`loopml.serving.deployment.ModelEndpoint.reconfigure`. Only pydantic here: both sides
import it, and the replica must not pay for the platform's imports.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class CaptureConfig(BaseModel):
    """Where a replica sends its captured requests (:mod:`loopml.monitor.ingest`)."""

    url: str = Field(description="The platform's capture route.")
    token: str = Field(description="This endpoint's capture token.")
    sample: float = Field(ge=0, le=1, description="Share of requests captured.")


class SandboxConfig(BaseModel):
    """How a model whose format can run code is sandboxed (:mod:`loopml.serving.loading`)."""

    isolation: Literal["bwrap", "off"] = "bwrap"
    hide: list[str] = Field(default_factory=list, description="Paths the sandbox must never see (the data dir).")


class CanaryConfig(BaseModel):
    """The version that answers a share of the requests."""

    model_uri: str = Field(description="``models:/<registered name>/<version>``.")
    version: int
    percent: float = Field(ge=0, le=100, description="Share of requests it answers, in percent.")


class ReplicaConfig(BaseModel):
    """One endpoint's replica configuration; changing it reconfigures the live replicas."""

    model_uri: str = Field(description="``models:/<registered name>/<version>`` of the stable version.")
    tracking_uri: str = Field(description="The MLflow server the model is downloaded from.")
    project: str
    endpoint: str
    prefix: str = Field(description="The route prefix, ``/<project>/<endpoint>``.")
    version: int = Field(description="The stable version's number.")
    capture: CaptureConfig | None = Field(None, description="Request capture; None: off.")
    mlflow_auth: dict[str, str] | None = Field(
        None, description="The project's MLflow user (environment variables); None without MLflow auth.")
    key_hash: str | None = Field(None, description="Hash of the endpoint's bearer key; None: public.")
    max_bytes: int = Field(10 << 20, gt=0, description="Largest request body, in bytes.")
    sandbox: SandboxConfig = Field(default_factory=SandboxConfig)
    canary: CanaryConfig | None = None
    contract: dict[str, Any] | None = Field(
        None, description="The stable version's data contract (loopml.serving.contract.DataContract JSON); None: none.")
    on_violation: Literal["pass", "refuse", "header"] = Field(
        "pass", description="What a request that breaks the contract gets: scored (pass), a 422 (refuse), or "
                            "scored with an x-loopml-violations header (header).")
    capture_probabilities: bool = Field(True, description="Capture a classifier's class probabilities.")
