"""Job kernels: started inside their sandbox, kept warm in a runner worker, killed with it.

With ``job_isolation = "bwrap"`` every kernel runs under :func:`loopml.sandbox.wrap` in its
own host dir (its sockets, its connection file and the job's working dir, bound read-write):
it sees its own processes only, a private ``/tmp``, nothing of the data dir, and starts with
:func:`loopml.sandbox.environment` (never the Ray worker's environment: no ``RAY_*``, no
``LOOPML_*`` of the node). A warm kernel holds no secret: the job's credentials reach it when
the job starts (:func:`prepare`, over the kernel's socket, never on a command line).
Killing the kernel kills its sandbox, and the pid namespace takes with it whatever the job
left running. ``job_isolation = "off"`` starts kernels as before: unsandboxed, with the
worker's whole environment.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from jupyter_client.manager import KernelManager
from traitlets import List, Unicode

from loopml import sandbox

log = logging.getLogger(__name__)

KERNEL_ARGS = ["--HistoryManager.enabled=False"]
START_TIMEOUT_S = 60
# settings of the Ray worker a job needs (its GPUs, its thread limits); nothing else of it
PASSED_ENV = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES",
              "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "TZ")
GPU_DEVICES = ("/dev/nvidia*", "/dev/nvidia-caps", "/dev/dri", "/dev/kfd")

# kernel name -> (fingerprint of how it was started, started kernel nobody used yet)
_warm: dict[str, tuple[int, KernelManager]] = {}
# kernel name -> the start of its next warm kernel under way (see prestart_soon)
_starting: dict[str, Future] = {}
# One thread that lives as long as the worker: the kernel's sandbox dies with the THREAD that
# started it (bwrap's --die-with-parent is Linux's parent-death signal, which is per thread).
_starter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loopml-prestart")


class SandboxedKernelManager(KernelManager):
    """A kernel whose process is a bubblewrap sandbox rooted in ``sandbox_dir``."""

    sandbox_dir = Unicode(help="host dir of this kernel: sockets and working dir, bound read-write")
    hidden = List(Unicode(), help="host paths the kernel must not see even inside a bound path")

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        cmd = super().format_kernel_cmd(extra_arguments)
        wrapped = sandbox.wrap(cmd, workdir=self.sandbox_dir, hide=self.hidden, devices=_gpu_devices())
        # jupyter_client tells the kernel its parent's pid: inside the pid namespace its parent
        # is the sandbox's init, so ipykernel would take itself for an orphan and exit. The
        # sandbox dies with this process anyway (--die-with-parent).
        wrapped[1:1] = ["--unsetenv", "JPY_PARENT_PID"]
        return wrapped


def _gpu_devices() -> list[str]:
    """GPU device nodes of this machine, when the worker was given GPUs (else none)."""
    if not os.environ.get("CUDA_VISIBLE_DEVICES") and not os.environ.get("ROCR_VISIBLE_DEVICES"):
        return []
    return sorted(path for pattern in GPU_DEVICES for path in glob.glob(pattern))


def passed_env() -> dict[str, str]:
    """What a sandboxed kernel keeps of the worker's environment."""
    return {name: os.environ[name] for name in PASSED_ENV if name in os.environ}


def fingerprint(isolation: str, hide: Sequence[str]) -> int:
    """How a kernel would be started now; a warm kernel started otherwise is not used."""
    env = passed_env() if isolation == "bwrap" else dict(os.environ)
    return hash((isolation, tuple(hide), frozenset(env.items())))


def start(kernel_name: str, isolation: str = "bwrap", hide: Sequence[str] = ()) -> KernelManager:
    """A started kernel over IPC sockets in its own short private dir (its working dir too),
    started from the worker's long-lived starter thread (see ``_starter``)."""
    if threading.current_thread().name.startswith("loopml-prestart"):
        return _start(kernel_name, isolation, hide)
    return _starter.submit(_start, kernel_name, isolation, hide).result()


def _start(kernel_name: str, isolation: str, hide: Sequence[str]) -> KernelManager:
    home = tempfile.mkdtemp(prefix="lmk-")
    where = {"kernel_name": kernel_name, "transport": "ipc", "ip": os.path.join(home, "k"),
             "connection_file": os.path.join(home, "kernel.json")}
    try:
        if isolation == "bwrap":
            km = SandboxedKernelManager(sandbox_dir=home, hidden=list(hide), **where)
            # SIGINT would stop bwrap, not reach the kernel: interrupt over the control channel
            km.kernel_spec.interrupt_mode = "message"
            km.start_kernel(cwd=home, env=sandbox.environment(passed_env(), home), extra_arguments=KERNEL_ARGS)
        else:
            km = KernelManager(**where)
            km.start_kernel(cwd=home, extra_arguments=KERNEL_ARGS)
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)
        raise
    return km


def workdir(km: KernelManager) -> str:
    """The kernel's own dir: the job's working dir."""
    return os.path.dirname(km.connection_file)


def halt(km: KernelManager) -> None:
    """Kill the kernel (its sandbox, and everything the job left running there); keep its dir,
    whose files then change no more (the runner reads the job's outputs from it)."""
    if km.has_kernel:
        km.shutdown_kernel(now=True)


def stop(km: KernelManager) -> None:
    """Kill the kernel (its sandbox, and everything the job left running there) and its dir."""
    try:
        halt(km)
    finally:
        shutil.rmtree(workdir(km), ignore_errors=True)


def take(kernel_name: str, isolation: str, hide: Sequence[str]) -> KernelManager:
    """This worker's warm kernel if it was started as the job needs it, else a new one."""
    starting = _starting.get(kernel_name)
    if starting is not None:  # the previous attempt's prestart_soon: half started beats none
        starting.result()
    entry = _warm.pop(kernel_name, None)
    if entry is not None:
        started_as, km = entry
        if started_as == fingerprint(isolation, hide) and km.is_alive():
            return km
        stop(km)
    return start(kernel_name, isolation, hide)


def prestart(kernel_name: str, isolation: str, hide: Sequence[str]) -> None:
    """Leave a started kernel in this worker for the next job (idempotent)."""
    if kernel_name in _warm:
        return
    try:
        _warm[kernel_name] = (fingerprint(isolation, hide), start(kernel_name, isolation, hide))
    except Exception:  # a missing kernelspec shows up, with its message, in the job that needs it
        log.exception("could not pre-start kernel %s", kernel_name)


def prestart_soon(kernel_name: str, isolation: str, hide: Sequence[str]) -> None:
    """:func:`prestart` in the background: the attempt that just ended does not wait for the
    next job's sandbox and kernel to start (its result goes back at once)."""
    if kernel_name in _warm or kernel_name in _starting:
        return
    future = _starter.submit(prestart, kernel_name, isolation, hide)
    _starting[kernel_name] = future
    future.add_done_callback(lambda _: _starting.pop(kernel_name, None))


def prepare(km: KernelManager, env: dict[str, str]) -> None:
    """Give the (possibly pre-started) kernel the job's environment (its credentials among it).

    Sent as code over the kernel's own socket: never on a command line, never to a warm kernel
    before its job.
    """
    code = (
        "import os as _o, json as _j\n"
        f"_o.environ.update(_j.loads({json.dumps(env)!r}))\n"
        f"_o.chdir({workdir(km)!r})\n"
        "del _o, _j\n"
    )
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=START_TIMEOUT_S)
        reply = kc.execute_interactive(code, timeout=30, store_history=False, output_hook=lambda msg: None)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"could not set up the job in the kernel: {reply['content'].get('evalue')}")
    finally:
        kc.stop_channels()
