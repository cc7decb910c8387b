"""The runner: one attempt of one job, executed by papermill inside a Ray worker.

It runs wherever Ray places it and shares no disk with the platform: the notebook and the
job's input files arrive as an argument, progress, log lines and output snapshots go back to
the dispatcher actor, and the executed notebook, the job's outputs (``loopml.set_output``) and
its declared output files are the task's return value (:mod:`loopml.executor.workdir`).

Speed: a Ray worker is reused for many tasks, so while each attempt runs it starts the
kernel for the next one (``warm`` kernels). A warm kernel is only used by a job whose
worker environment is the one it was started in (same GPUs, same thread limits), and
it is never reused: every job gets a fresh kernel process. Kernels run in their sandbox
(:mod:`loopml.executor.kernels`); the attempt's secret, its key to the dispatcher, stays
in this process.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence
from typing import Any

import nbformat
import ray
from papermill.engines import NBClientEngine, papermill_engines
from papermill.exceptions import PapermillExecutionError

from loopml.executor import kernels, workdir
from loopml.executor.attempts import AttemptReport, AttemptSpec

log = logging.getLogger(__name__)

ENGINE = "loopml"
SNAPSHOT_EVERY_S = 1.0
LOG_FLUSH_EVERY_S = 0.5


@ray.remote(num_cpus=1, max_retries=0)
def warm_up(kernel_name: str, isolation: str = "bwrap", hide: Sequence[str] = ()) -> int:
    """Ray task: make this worker hold a warm kernel. Returns the worker's PID."""
    kernels.prestart(kernel_name, isolation, hide)
    return os.getpid()


class _Reporter:
    """Sends progress, log text and output snapshots of one attempt to the dispatcher."""

    def __init__(self, dispatcher, job_id: str, attempt: int, secret: str) -> None:
        self.dispatcher = dispatcher
        self.job_id = job_id
        self.attempt = attempt
        self._secret = secret  # proves to the dispatcher that this runner owns the attempt
        self.cells_total = 0
        self.cells_done = 0
        self._log: list[str] = []
        self._log_sent = time.monotonic()
        self._snapshot_sent = 0.0
        self._snapshot_timer: threading.Timer | None = None

    def drain_log(self) -> str:
        """The log text not sent yet (and forget it)."""
        text = "".join(self._log)
        self._log.clear()
        self._log_sent = time.monotonic()
        return text

    def send(self, **changes: Any) -> None:
        """Report ``changes`` (fields of :class:`AttemptReport`) with the log text not sent yet."""
        text = self.drain_log()
        if text:
            changes["log_append"] = text
        self.dispatcher.report.remote(self.job_id, self.attempt, AttemptReport(**changes), self._secret)

    # file-like: papermill writes the kernel's stdout/stderr here
    def write(self, text: str) -> int:
        self._log.append(text)
        if time.monotonic() - self._log_sent > LOG_FLUSH_EVERY_S:
            self.send()
        return len(text)

    def flush(self) -> None:
        pass

    def attach(self, nb_man) -> None:
        """Follow papermill's cell lifecycle (it has no hook API, so wrap the manager's methods)."""
        code_cells = [i for i, c in enumerate(nb_man.nb.cells) if c.cell_type == "code"]
        self.cells_total = len(code_cells)
        self.send(progress={"cells_done": 0, "cells_total": self.cells_total})
        start, complete = nb_man.cell_start, nb_man.cell_complete

        def cell_start(cell, cell_index=None, **kwargs):
            start(cell, cell_index, **kwargs)
            if cell.cell_type == "code":
                self._log.append(f"[loopml] cell {cell_index} ({self.cells_done + 1}/{self.cells_total}) started\n")

        def cell_complete(cell, cell_index=None, **kwargs):
            complete(cell, cell_index, **kwargs)
            if cell.cell_type != "code":
                return
            self.cells_done += 1
            changes: dict[str, Any] = {"progress": {"cells_done": self.cells_done, "cells_total": self.cells_total}}
            if time.monotonic() - self._snapshot_sent > SNAPSHOT_EVERY_S:
                changes["output"] = nbformat.writes(nb_man.nb)
                self._snapshot_sent = time.monotonic()
            else:
                self._snapshot_later(nb_man.nb)
            self.send(**changes)

        nb_man.cell_start, nb_man.cell_complete = cell_start, cell_complete

    def _snapshot_later(self, nb) -> None:
        """Send the snapshot the throttle held back as soon as it allows, so the output of
        fast cells followed by a long one is kept even if the attempt dies in the long one."""
        if self._snapshot_timer is not None:
            return
        delay = max(0.0, SNAPSHOT_EVERY_S - (time.monotonic() - self._snapshot_sent))
        self._snapshot_timer = threading.Timer(delay, self._send_snapshot, args=(nb,))
        self._snapshot_timer.daemon = True
        self._snapshot_timer.start()

    def _send_snapshot(self, nb) -> None:
        """(Timer thread) the notebook as it is now; the log is left to the executing thread."""
        self._snapshot_timer = None
        if time.monotonic() - self._snapshot_sent < SNAPSHOT_EVERY_S / 2:
            return  # a cell completed meanwhile and sent a newer one
        for _ in range(3):
            try:
                text = nbformat.writes(nb)
                break
            except RuntimeError:  # the kernel's output changed the notebook while it was written
                time.sleep(0.05)
        else:
            return
        self._snapshot_sent = time.monotonic()
        self.dispatcher.report.remote(self.job_id, self.attempt, AttemptReport(output=text), self._secret)


class _ReportingEngine(NBClientEngine):
    """papermill's nbclient engine, reporting each cell to a :class:`_Reporter`."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, reporter: _Reporter | None = None, **kwargs):
        if reporter is not None:
            reporter.attach(nb_man)
        return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)


papermill_engines.register(ENGINE, _ReportingEngine)


_ADDED_BY_PAPERMILL = {"injected-parameters", "papermill-error-cell-tag"}


def _failure(nb: nbformat.NotebookNode) -> dict[str, Any] | None:
    """The first cell error of an executed notebook, as a JobFailure dict.

    ``cell_index`` counts cells of the notebook the user submitted (papermill's injected
    parameters and error-marker cells are skipped), so it points at the user's cell.
    """
    index = -1
    for cell in nb.cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if not tags & _ADDED_BY_PAPERMILL:
            index += 1
        where = None if "injected-parameters" in tags else index
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                if output.get("ename") == "SystemExit" and output.get("evalue") in ("", "0"):
                    continue
                return {"reason": "cell_error", "cell_index": where, "ename": output.get("ename"),
                        "evalue": output.get("evalue")}
        if cell.get("metadata", {}).get("papermill", {}).get("exception"):
            return {"reason": "cell_error", "cell_index": where, "ename": "CellExecutionError",
                    "evalue": "the cell failed without an error message"}
    return None


def _collect(spec: AttemptSpec, work: str, succeeded: bool) -> tuple[dict[str, Any], dict[str, bytes], str | None]:
    """The outputs and declared output files the notebook left in ``work``, and what was wrong
    with them (``None``: nothing). A declared file that is missing is wrong only when the
    notebook succeeded: a failed one may have stopped before writing it."""
    problems = []
    try:
        outputs = workdir.read_outputs(work)
    except workdir.WorkdirError as exc:
        outputs = {}
        problems.append(str(exc))
    try:
        files, missing = workdir.read_files(work, spec.output_files, spec.max_files_bytes)
    except workdir.WorkdirError as exc:
        files, missing = {}, []
        problems.append(f"output file {exc}")
    if missing and succeeded:
        problems.append("the notebook did not write its declared output file(s) "
                        f"{', '.join(repr(path) for path in missing)} (output_files)")
    return outputs, files, "; ".join(problems) or None


@ray.remote(num_cpus=1, max_retries=0)
def run_attempt(spec: AttemptSpec, dispatcher, secret: str) -> AttemptReport:
    """Ray task: execute one attempt and return its final report (``state, output, error,
    progress, log_append, outputs, files``).

    ``secret`` is the attempt's key to :meth:`Dispatcher.report`; it stays in this process
    (the kernel runs in its sandbox and never gets it). A cell error, a dead kernel, input files
    that cannot be written or outputs that cannot be read (see :func:`_collect`) are user
    failures (``state: failed``); anything else raising out of here is a system failure the
    platform may retry.
    """
    reporter = _Reporter(dispatcher, spec.job_id, spec.attempt, secret)
    reporter.send(state="running", pid=os.getpid(), node=ray.get_runtime_context().get_node_id())
    nb = nbformat.reads(spec.notebook, as_version=4)
    kernel_name, isolation, hide, warm = spec.kernel_name, spec.isolation, spec.hide, spec.warm_kernels
    private = tempfile.mkdtemp(prefix="loopml-job-")  # the runner's own: the kernel does not see it
    output_path = os.path.join(private, "_output.ipynb")
    km = kernels.take(kernel_name, isolation, hide) if warm else kernels.start(kernel_name, isolation, hide)
    if warm:  # the next job's kernel starts while this one runs: ready when that job comes
        kernels.prestart_soon(kernel_name, isolation, hide)
    try:
        work = kernels.workdir(km)
        try:
            workdir.write_inputs(work, spec.files)
        except workdir.WorkdirError as exc:
            return AttemptReport(state="failed", error={"reason": "files", "message": str(exc)}, outputs={}, files={},
                                 log_append=reporter.drain_log())
        kernels.prepare(km, {**spec.env, workdir.WORKDIR_ENV: work})
        error = None
        try:
            import papermill

            executed = papermill.execute_notebook(
                nb,
                output_path,
                parameters=spec.parameters or None,
                engine_name=ENGINE,
                kernel_name=kernel_name,
                progress_bar=False,
                start_timeout=kernels.START_TIMEOUT_S,
                stdout_file=reporter,
                stderr_file=reporter,
                km=km,
                reporter=reporter,
            )
        except PapermillExecutionError:
            executed = nbformat.read(output_path, as_version=4)
        except Exception as exc:  # nbclient's DeadKernelError and kin
            if type(exc).__name__ != "DeadKernelError":
                raise
            executed = nbformat.read(output_path, as_version=4) if os.path.exists(output_path) else nb
            error = {"reason": "kernel_died", "message": "the kernel died while running the notebook", "ename": "DeadKernelError", "evalue": str(exc)}
        error = error or _failure(executed)
        kernels.halt(km)  # nothing the job started changes its files while they are read
        outputs, files, problem = _collect(spec, work, succeeded=error is None)
        if problem and error is None:
            error = {"reason": "outputs", "message": problem}
        elif problem:
            reporter.write(f"[loopml] the job's outputs were not all read: {problem}\n")
        return AttemptReport(
            state="failed" if error else "succeeded",
            error=error,
            output=nbformat.writes(executed),
            progress={"cells_done": reporter.cells_done, "cells_total": reporter.cells_total},
            log_append=reporter.drain_log(),
            outputs=outputs,
            files=files,
        )
    finally:
        kernels.stop(km)
        shutil.rmtree(private, ignore_errors=True)
        if warm:  # unless it is already there or on its way
            kernels.prestart_soon(kernel_name, isolation, hide)
