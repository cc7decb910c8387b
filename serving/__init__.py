"""The serving slice: model endpoints on Ray Serve, rollout, rollback and canaries.

Its public surface is ``__all__``: the endpoint models, the replicas' configuration (light:
pydantic only) and the service the platform and the monitor slice use. Imports are lazy
(:mod:`loopml._lazy`): nothing here imports ray until the service is used.
"""

from loopml._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["MAX_REPLICAS", "Autoscale", "Deployed", "Endpoint", "EndpointCreate", "EndpointPatch",
                     "EndpointResources", "HistoryEntry"], ".models"),
    "ReplicaConfig": ".replica_config",
    "EndpointService": ".service",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
