"""The built-in steps of pipelines (register, promote, deploy), carried out by the registry and
serving slices. Here, in the server part, because the executor slice may not import serving:
the platform hands these callables to :class:`~loopml.executor.pipelines.service.PipelineService`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from loopml.errors import InvalidInput
from loopml.executor.pipelines.actions import ActionCall, ActionRunner
from loopml.registry import tags as tag
from loopml.registry.service import RegistryService
from loopml.serving.models import EndpointCreate
from loopml.serving.service import EndpointService


def _version(call: ActionCall) -> int:
    """The version an action names, or the newest one registered upstream of it in the run."""
    model, given = call.arguments["model"], call.arguments.get("version")
    if given is None:
        if model not in call.registered:
            raise InvalidInput(f"step {call.step!r} names no version of model {model!r}, and no step upstream of it "
                               "registered one (a register step, or a notebook calling loopml.log_model): give "
                               "version", field=f"{call.kind}.version")
        return call.registered[model]
    try:
        return int(str(given))
    except ValueError:
        raise InvalidInput(f"step {call.step!r}: version {given!r} is not a version number",
                           field=f"{call.kind}.version") from None


def pipeline_actions(registry: Callable[[], RegistryService],
                     endpoints: Callable[[], EndpointService]) -> dict[str, ActionRunner]:
    """The runners of the built-in steps; the services are looked up when a step runs."""

    def register(call: ActionCall) -> dict[str, Any]:
        args = call.arguments
        version = registry().register_run_model(call.project, args["model"], args["run_id"],
                                                args.get("artifact_path") or "model",
                                                tags={tag.PIPELINE_RUN_ID: call.pipeline_run_id,
                                                      tag.PIPELINE_STEP: call.step})
        if args.get("alias"):
            registry().set_alias(call.project, args["model"], args["alias"], version, user=call.user)
        return {"model": args["model"], "version": version}

    def promote(call: ActionCall) -> dict[str, Any]:
        version = _version(call)
        alias = call.arguments.get("alias") or tag.CHAMPION
        registry().set_alias(call.project, call.arguments["model"], alias, version, user=call.user)
        return {"model": call.arguments["model"], "version": version, "alias": alias}

    def deploy(call: ActionCall) -> dict[str, Any]:
        version, canary, name = _version(call), call.arguments.get("canary"), call.arguments["endpoint"]
        if canary is not None and not any(found.name == name for found in endpoints().list(call.project)):
            # A pipeline's first run has no serving version to share the traffic with: where the CLI
            # refuses `--canary` on a new endpoint, an unattended run creates it with the version alone
            # and its later runs add their versions as canaries.
            canary = None
        spec = EndpointCreate(name=name, model=f"{call.arguments['model']}/{version}",
                              canary=float(canary) if canary is not None else None)
        endpoints().deploy(call.user, call.project, spec)
        return {"model": call.arguments["model"], "version": version, "endpoint": call.arguments["endpoint"]}

    return {"register": register, "promote": promote, "deploy": deploy}
