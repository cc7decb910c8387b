"""The monitor slice: captured requests (stored as replicas post them), metrics, drift, feedback
labels and the policies that close the loop.

Its public surface is ``__all__``: the report, feedback, policy and alert models (light:
pydantic only) and the services the platform uses. Imports are lazy (:mod:`loopml._lazy`):
nothing here imports scipy or the ORM until a service is used.
"""

from loopml._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["MAX_FEEDBACK", "Alert", "FeedbackItem", "FeedbackResult", "MonitorReport", "Policy",
                     "PolicySpec", "Requeued", "RequeueRequest", "Trend", "parse_window"], ".models"),
    "CaptureService": ".ingest",
    "MonitorService": ".service",
    "PolicyService": ".policies",
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
