"""What crosses the job backend boundary: one attempt's spec, options, reports and record.

The platform service sends an :class:`AttemptSpec` and :class:`AttemptOptions` to its
:class:`~loopml.executor.backend.JobBackend`; the Ray backend hands them to the dispatcher
actor, which hands the spec to the runner. The runner answers with :class:`AttemptReport`
patches; the dispatcher keeps one :class:`AttemptRecord` per attempt and the platform reads
them through :class:`Updates`. All are pydantic models, validated once where they are built,
and they pickle through Ray as they are.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from loopml.executor.models import JobFailure, Progress, Resources
from loopml.executor.workdir import check_path

WorkdirPath = Annotated[str, AfterValidator(check_path)]
DEFAULT_MAX_FILES_BYTES = 100 * 2**20

AttemptState = Literal["pending", "running", "succeeded", "failed", "cancelled", "timeout", "lost"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "timeout", "lost"})


def key(job_id: str, attempt: int) -> str:
    """The one name of an attempt across the backend boundary: ``job_id:attempt``."""
    return f"{job_id}:{attempt}"


class AttemptSpec(BaseModel):
    """Everything the runner needs to execute one attempt of one job."""

    model_config = ConfigDict(frozen=True)

    job_id: str = Field(description="The job's id.")
    attempt: int = Field(ge=1, description="Which attempt of the job (1 for the first run, +1 per retry).")
    notebook: str = Field(description="The submitted notebook, as nbformat v4 JSON text.")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Values papermill injects.")
    kernel_name: str = Field(description="Kernelspec the notebook runs on.")
    env: dict[str, str] = Field(default_factory=dict, description="Environment of the job's kernel (LOOPML_*, "
                                "MLFLOW_*; the job's token).")
    warm_kernels: bool = Field(True, description="Take a pre-started kernel and start the next one meanwhile.")
    isolation: Literal["bwrap", "off"] = Field("bwrap", description="How the kernel is sandboxed (job_isolation).")
    hide: tuple[str, ...] = Field((), description="Paths the kernel must not see (the data dir).")
    files: dict[WorkdirPath, bytes] = Field(default_factory=dict, description="Input files: path relative to the "
                                            "working dir → content, written there before the notebook runs.")
    output_files: tuple[WorkdirPath, ...] = Field((), description="Files the job declared it writes, relative to "
                                                  "its working dir: returned in the final report's ``files``.")
    max_files_bytes: int = Field(DEFAULT_MAX_FILES_BYTES, gt=0, description="Most bytes the output files may take "
                                 "together (max_job_files_mb).")

    @property
    def key(self) -> str:
        return key(self.job_id, self.attempt)


class AttemptOptions(BaseModel):
    """What one attempt reserves, in Ray's terms (the options of its Ray task)."""

    model_config = ConfigDict(frozen=True)

    num_cpus: float = Field(1.0, ge=0, description="CPU cores.")
    num_gpus: float = Field(0.0, ge=0, description="GPUs (fractions allowed).")
    memory: int | None = Field(None, gt=0, description="Memory to reserve, bytes.")
    resources: dict[str, float] = Field(default_factory=dict, description="Custom Ray resources.")

    @classmethod
    def of(cls, resources: Resources) -> AttemptOptions:
        """The options of a job's :class:`~loopml.executor.models.Resources`."""
        return cls(**resources.ray_options())

    def ray_options(self) -> dict[str, Any]:
        """Keyword arguments of ``remote_function.options()``."""
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}
        if self.memory is not None:
            options["memory"] = self.memory
        if self.resources:
            options["resources"] = dict(self.resources)
        return options

    def request(self) -> dict[str, float]:
        """The request by Ray resource name (``CPU``, ``GPU``, ``memory``, custom), as ``ray.nodes()`` spells them."""
        return {"CPU": self.num_cpus, "GPU": self.num_gpus,
                **({"memory": self.memory} if self.memory is not None else {}), **self.resources}


class AttemptReport(BaseModel):
    """What a runner tells the dispatcher about its attempt: only the fields it sets change.

    Fields left unset (not passed, see ``model_fields_set``) keep the record's value; set to
    ``None`` they clear it. The runner's return value is one too (the final report).
    """

    state: AttemptState | None = None
    message: str | None = None
    progress: Progress | None = None
    output: str | None = Field(None, description="The notebook as executed so far (nbformat JSON text).")
    error: JobFailure | None = None
    pid: int | None = None
    node: str | None = Field(None, description="Ray node id the runner works on.")
    log_append: str | None = Field(None, description="Log text written since the previous report.")
    outputs: dict[str, Any] | None = Field(None, description="What the notebook set with loopml.set_output "
                                           "(final report only).")
    files: dict[str, bytes] | None = Field(None, description="The declared output files the notebook wrote, "
                                           "path → content (final report only).")

    def changes(self) -> dict[str, Any]:
        """The fields this report sets, by name (values kept as models)."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class AttemptRecord(BaseModel):
    """What the backend knows of one attempt.

    In :class:`Updates`, ``log`` and ``output`` are ``None`` when they did not change after the
    ``since`` asked for (they are large); otherwise they are the whole log and notebook so far.
    """

    model_config = ConfigDict(validate_assignment=True)

    job_id: str
    attempt: int
    state: AttemptState = "pending"
    message: str | None = Field(None, description="Why a pending attempt waits, or why it ended.")
    progress: Progress | None = None
    log: str | None = Field("", description="Kernel stdout/stderr so far (the last 2 MB).")
    output: str | None = Field(None, description="The executed notebook (partial while running).")
    error: JobFailure | None = Field(None, description="Why a failed attempt failed (the user's failure).")
    pid: int | None = Field(None, description="Process id of the runner.")
    node: str | None = Field(None, description="Ray node id the runner ran on.")
    outputs: dict[str, Any] = Field(default_factory=dict, description="Values the notebook set with "
                                    "loopml.set_output (once the attempt ended).")
    files: dict[str, bytes] = Field(default_factory=dict, description="Declared output files the notebook wrote, "
                                    "path → content (once the attempt ended).")
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    seq: int = Field(0, description="Backend sequence number of the record's last change.")
    log_seq: int = Field(0, description="Sequence number of the last change of ``log``.")
    output_seq: int = Field(0, description="Sequence number of the last change of ``output``.")

    @property
    def key(self) -> str:
        return key(self.job_id, self.attempt)

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL


class Updates(BaseModel):
    """Answer of ``JobBackend.updates(since, wait_s)``: records changed after ``since``."""

    seq: int = Field(description="The backend's sequence number now: the next call's ``since``.")
    records: list[AttemptRecord] = Field(default_factory=list)
