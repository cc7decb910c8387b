"""The executor slice: notebook jobs run by papermill on a Ray cluster, with schedules.

Its public surface is ``__all__``: the job and schedule models (light: pydantic only) and
the services the platform and the other slices use. Imports are lazy (:mod:`loopml._lazy`),
so the client and the panels pay for the models alone.
"""

from loopml._lazy import lazy_exports

_EXPORTS = {
    **dict.fromkeys(["Job", "JobFailure", "JobRequeue", "JobStatus", "JobSubmit", "Progress", "Resources",
                     "Schedule", "ScheduleCreate", "Trigger"], ".models"),
    **dict.fromkeys(["AttemptOptions", "AttemptRecord", "AttemptReport", "AttemptSpec", "Updates"], ".attempts"),
    **dict.fromkeys(["JobBackend", "RayJobBackend", "job_backend_class"], ".backend"),
    "JobService": ".service",
    "ScheduleService": ".schedules",
    "JobTokens": ".job_tokens",
    **dict.fromkeys(["outputs", "set_output"], ".workdir"),
    **dict.fromkeys(["PipelineCheck", "PipelineChild", "PipelineRun", "PipelineStep", "PipelineSubmit"],
                    ".pipelines.models"),
    **dict.fromkeys(["RunStatus", "StepStatus"], ".pipelines.run_state"),
    **dict.fromkeys(["needed_files", "read_pipeline"], ".pipelines.local"),
}

__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
