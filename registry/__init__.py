"""The registry slice: model registry on MLflow, the tracking server command and one run per job.

Its public surface is ``__all__``: the model and version models, the name and alias rules
and constants (light), and the services the platform and the other slices use. Imports are
lazy (:mod:`loopml._lazy`): nothing here imports mlflow until a service is used.
"""

from loopml._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["AliasChange", "AliasSet", "ContractPatch", "ContractView", "Lineage", "Model", "ModelRef",
                     "ModelSummary", "ModelVersion"], ".models"),
    **dict.fromkeys(["DataContract", "FeatureContract", "apply_overrides", "derive_contract"], ".contract"),
    "ContractService": ".contract_service",
    **dict.fromkeys(["SEPARATOR", "check_alias", "registered_name", "short_name"], ".names"),
    **dict.fromkeys(["CHALLENGER", "CHAMPION"], ".tags"),
    **dict.fromkeys(["RegistryService", "check_version"], ".service"),
    "JobTracking": ".tracking",
    **dict.fromkeys(["JobContext", "current_job", "log_model"], ".sdk"),
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
