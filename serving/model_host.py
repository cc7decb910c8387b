"""The model host: a model that can run code, loaded and called in a sandbox beside its caller.

``python -m loopml.serving.model_host MODEL_DIR`` is the program: it loads the MLflow model
in ``MODEL_DIR`` (:func:`loopml.serving.loading.load_local`), answers ``{"ok": true}`` (or
``{"ok": false, "message"}``) when it is loaded, then one answer per request, over its
stdin and stdout in the frames of :mod:`loopml.serving.model_wire`; what the model prints
goes to stderr (the caller's log), never into the wire. Answers are JSON:
``{"ok": true, "predictions"}`` or ``{"ok": false, "error": "refused"|"failed", "message"}``.

:class:`ModelHost` is the caller's side (a replica, or a challenger's evaluation). It starts
the program under :func:`loopml.sandbox.wrap` with only :func:`loopml.sandbox.environment`
(no Ray token, no MLflow credentials: the caller downloaded the model), the model folder
bound read-only and a private working dir, and turns answers into what an in-process model
would give: predictions, :class:`~loopml.serving.loading.ModelRefused` (422), an exception
(500). A host that dies or hangs past ``timeout_s`` is killed, and restarted in the
background; requests meanwhile get :class:`~loopml.serving.loading.ModelUnavailable` (503).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import warnings
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from loopml import sandbox
from loopml.serving.loading import ModelRefused, ModelUnavailable, load_local, raw_predict, raw_probabilities
from loopml.serving.model_wire import WireError, decode_input, encode_input, read_frame, write_frame
from loopml.serving.protocols import ModelInput
from loopml.serving.responses import jsonable

log = logging.getLogger(__name__)

__all__ = ["ModelHost", "main"]

START_TIMEOUT_S = 180.0  # importing MLflow and unpickling a large model, on a busy machine
PREDICT_TIMEOUT_S = 60.0
# Hosts are started from this one long-lived thread: bwrap's --die-with-parent fires when the
# *thread* that started it ends, and callers run in pools whose threads may come and go.
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loopml-model-host")


class ModelHost:
    """A model in a sandboxed process (module docstring); thread-safe, one request at a time."""

    in_process = False

    def __init__(self, folder: str, *, isolation: str = "bwrap", hide: Iterable[str] = (),
                 timeout_s: float = PREDICT_TIMEOUT_S) -> None:
        self.folder, self.isolation, self.hide, self.timeout_s = folder, isolation, tuple(hide), timeout_s
        self.signature = _signature(folder)
        self._lock = threading.RLock()  # a done callback may run at once, in the locking thread
        self._proc: subprocess.Popen | None = None
        self._workdir: str | None = None
        self._starting: Future | None = None
        self._closed = False

    def start(self) -> None:
        """Start the host and wait until the model is loaded; ``RuntimeError`` naming why not."""
        self._adopt(_SPAWNER.submit(self._spawn).result())

    def predict(self, parsed: ModelInput) -> Any:
        """The model's predictions for ``parsed`` as JSON values (see the module docstring)."""
        return self._ask(parsed, False)[0]

    def predict_with_probabilities(self, parsed: ModelInput) -> tuple[Any, list[list[float]] | None]:
        """Predictions and a classifier's class probabilities (``None`` when it has none)."""
        return self._ask(parsed, True)

    def _ask(self, parsed: ModelInput, probabilities: bool) -> tuple[Any, list[list[float]] | None]:
        with self._lock:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                self._restart_locked()
                raise ModelUnavailable("the model's process is restarting; retry in a few seconds")
            header, blob = encode_input(parsed)
            header["probabilities"] = probabilities
            try:
                write_frame(proc.stdin.fileno(), header, blob)
                answer, _ = read_frame(proc.stdout.fileno(), timeout_s=self.timeout_s)
            except WireError as exc:
                self._restart_locked()
                raise RuntimeError(f"the model's sandboxed process failed on this request ({exc}); "
                                   "it is restarting") from None
        if answer.get("ok"):
            return answer.get("predictions"), answer.get("probabilities")
        message = str(answer.get("message", ""))[:500]
        if answer.get("error") == "refused":
            raise ModelRefused(message)
        raise RuntimeError(f"the model raised {message}")

    def close(self) -> None:
        """Stop the host and remove its working dir (the model folder is the caller's)."""
        with self._lock:
            self._closed = True
            _stop(self._proc, self._workdir)
            self._proc = self._workdir = None

    def __enter__(self) -> ModelHost:
        self.start()
        return self

    def __exit__(self, *_) -> None:
        self.close()

    def _restart_locked(self) -> None:
        """Kill the current process (if any) and start another in the background, once."""
        if self._proc is not None:
            log.warning("the model host of %s exited or hung (exit code %s); restarting it", self.folder,
                        self._proc.poll())
            _stop(self._proc, self._workdir)
            self._proc = self._workdir = None
        if not self._closed and (self._starting is None or self._starting.done()):
            self._starting = _SPAWNER.submit(self._spawn)
            self._starting.add_done_callback(self._adopted)

    def _adopted(self, future: Future) -> None:
        try:
            self._adopt(future.result())
        except Exception as exc:  # noqa: BLE001 - the next request tries again
            log.error("the model host of %s did not restart: %s", self.folder, exc)

    def _adopt(self, started: tuple[subprocess.Popen, str]) -> None:
        with self._lock:
            if self._closed:
                _stop(*started)
            else:
                self._proc, self._workdir = started

    def _spawn(self) -> tuple[subprocess.Popen, str]:
        """A host process with the model loaded (on the spawner thread), and its working dir."""
        workdir = tempfile.mkdtemp(prefix="loopml-model-host-")
        argv = [sys.executable, "-m", "loopml.serving.model_host", self.folder]
        if self.isolation != "off":
            argv = sandbox.wrap(argv, workdir=workdir, ro=[self.folder], hide=self.hide)
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=workdir,
                                env=sandbox.environment({}, workdir), bufsize=0)
        try:
            ready, _ = read_frame(proc.stdout.fileno(), timeout_s=START_TIMEOUT_S)
        except WireError as exc:
            _stop(proc, workdir)
            raise RuntimeError(f"the model's sandboxed process ended while loading the model ({exc}; its "
                               "output is in the replica's log)") from None
        if not ready.get("ok"):
            _stop(proc, workdir)
            raise RuntimeError(f"the model could not be loaded in its sandbox: {ready.get('message')}")
        return proc, workdir


def _stop(proc: subprocess.Popen | None, workdir: str | None) -> None:
    if proc is not None:
        proc.kill()  # bubblewrap's init goes, and every process of the sandbox with it
        proc.wait(10)
        for pipe in (proc.stdin, proc.stdout):
            pipe.close()
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


def _signature(folder: str):
    """The model's signature, read from its MLmodel file (YAML and JSON: nothing is loaded)."""
    from mlflow.models import Model

    return Model.load(folder).signature


# -- the program, inside the sandbox ----------------------------------------------------------


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def _answer(model, header: dict[str, Any], blob: bytes) -> dict[str, Any]:
    try:
        parsed = decode_input(header, blob)
        answer = {"ok": True, "predictions": jsonable(raw_predict(model, parsed))}
        if header.get("probabilities"):
            answer["probabilities"] = raw_probabilities(model, parsed)
        return answer
    except ModelRefused as exc:
        return {"ok": False, "error": "refused", "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the model's own failure, told to the caller
        log.exception("the model failed on a request")
        return {"ok": False, "error": "failed", "message": _one_line(exc)}


def main(argv: list[str] | None = None) -> int:
    folder = (argv if argv is not None else sys.argv[1:])[0]
    wire_in, wire_out = os.dup(0), os.dup(1)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)  # the model's prints go to stderr, never into the wire
    logging.basicConfig(level=logging.WARNING, format="model host: %(levelname)s %(message)s")
    warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
    try:
        model = load_local(folder)
    except Exception as exc:  # noqa: BLE001 - told to the caller, which refuses the deploy
        log.exception("could not load the model")
        write_frame(wire_out, {"ok": False, "message": _one_line(exc)})
        return 1
    write_frame(wire_out, {"ok": True})
    while True:
        try:
            header, blob = read_frame(wire_in)
            write_frame(wire_out, _answer(model, header, blob))
        except WireError:  # the caller is gone
            return 0


if __name__ == "__main__":
    sys.exit(main())
