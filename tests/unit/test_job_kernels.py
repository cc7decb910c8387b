"""Job kernels start inside their sandbox with a minimal environment; credentials come later.

These start real kernels under bubblewrap (installed by `make test`): the sandbox is the
point, a fake would prove nothing.
"""

from __future__ import annotations

import ast
import json
import os
import time

import psutil
import pytest

from loopml.executor import kernels

SECRET = "tok-" + "x" * 40


def value(km, expression: str):
    """``expression`` evaluated in the kernel, as JSON-able data."""
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        reply = kc.execute_interactive("import json as _json", timeout=30, store_history=False,
                                       user_expressions={"v": f"_json.dumps({expression})"},
                                       output_hook=lambda msg: None)
    finally:
        kc.stop_channels()
    result = reply["content"]["user_expressions"]["v"]
    assert result["status"] == "ok", result
    return json.loads(ast.literal_eval(result["data"]["text/plain"]))


@pytest.fixture
def worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a Ray worker's environment holds: its token path, the node's settings, its limits."""
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", "/somewhere/ray/auth_token")
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:6379")
    monkeypatch.setenv("LOOPML_HOME", "/somewhere")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")


@pytest.fixture
def kernel(worker_env):
    km = kernels.start("python3", "bwrap", hide=["/somewhere"])
    yield km
    kernels.stop(km)


def test_the_kernel_command_is_bwrap_with_no_secret_and_no_parent_pid(tmp_path) -> None:
    km = kernels.SandboxedKernelManager(kernel_name="python3", sandbox_dir=str(tmp_path),
                                        connection_file=str(tmp_path / "kernel.json"))
    cmd = km.format_kernel_cmd(kernels.KERNEL_ARGS)

    assert os.path.basename(cmd[0]) == "bwrap" and "--unshare-pid" in cmd and "--die-with-parent" in cmd
    assert cmd[1:3] == ["--unsetenv", "JPY_PARENT_PID"]  # else ipykernel exits: its parent is the sandbox's init
    assert cmd[cmd.index("--chdir") + 1] == str(tmp_path)
    assert "ipykernel_launcher" in cmd[cmd.index("--") + 1:][2]


def test_a_warm_kernel_has_none_of_the_workers_environment_and_no_secret(kernel) -> None:
    env = value(kernel, "dict(__import__('os').environ)")

    assert not [name for name in env if name.startswith(("RAY_", "LOOPML_"))]
    assert env["OMP_NUM_THREADS"] == "3" and env["CUDA_VISIBLE_DEVICES"] == ""
    assert env["HOME"] == kernels.workdir(kernel)
    assert value(kernel, "__import__('os').getcwd()") == kernels.workdir(kernel)
    assert len([p for p in value(kernel, "__import__('os').listdir('/proc')") if p.isdigit()]) <= 3


def test_credentials_reach_the_kernel_only_through_prepare_never_a_command_line(kernel) -> None:
    kernels.prepare(kernel, {"LOOPML_TOKEN": SECRET, "MLFLOW_TRACKING_PASSWORD": SECRET})

    assert value(kernel, "__import__('os').environ['LOOPML_TOKEN']") == SECRET
    for proc in psutil.process_iter(["cmdline"]):
        assert SECRET not in " ".join(proc.info["cmdline"] or [])


def test_message_interrupt_stops_the_cell_and_keeps_the_kernel(kernel) -> None:
    kc = kernel.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        msg_id = kc.execute("import time; time.sleep(60)")
        time.sleep(1.0)
        kernel.interrupt_kernel()
        reply = kc.get_shell_msg(timeout=10)
        while reply["parent_header"].get("msg_id") != msg_id:
            reply = kc.get_shell_msg(timeout=10)
        reply = reply["content"]
    finally:
        kc.stop_channels()

    assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt"
    assert kernel.is_alive()


def test_what_a_job_left_running_dies_with_its_kernel(worker_env) -> None:
    km = kernels.start("python3", "bwrap")
    marker = f"loopml-left-{os.getpid()}-{time.time_ns()}"
    value(km, f"__import__('os').system(\"(python -c 'import time; time.sleep(1000)' {marker} &)\")")
    assert [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]

    kernels.stop(km)

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and [p for p in psutil.process_iter(["cmdline"])
                                           if marker in " ".join(p.info["cmdline"] or [])]:
        time.sleep(0.1)
    assert not [p for p in psutil.process_iter(["cmdline"]) if marker in " ".join(p.info["cmdline"] or [])]
    assert not os.path.exists(kernels.workdir(km))


def test_a_warm_kernel_started_otherwise_is_not_used(worker_env, monkeypatch: pytest.MonkeyPatch) -> None:
    kernels.prestart("python3", "bwrap", ())
    warm = kernels._warm["python3"][1]
    monkeypatch.setenv("OMP_NUM_THREADS", "5")  # another job's worker settings

    km = kernels.take("python3", "bwrap", ())
    try:
        assert km is not warm and not warm.is_alive()
        assert value(km, "__import__('os').environ['OMP_NUM_THREADS']") == "5"
    finally:
        kernels.stop(km)


def test_the_next_warm_kernel_starts_in_the_background_and_the_next_job_gets_it(
        worker_env, monkeypatch: pytest.MonkeyPatch) -> None:
    starts = []
    real_start = kernels.start
    monkeypatch.setattr(kernels, "start", lambda *args: starts.append(args) or real_start(*args))
    began = time.monotonic()
    kernels.prestart_soon("python3", "bwrap", ())
    assert time.monotonic() - began < 0.5  # the ending attempt does not wait for it

    km = kernels.take("python3", "bwrap", ())  # waits for the start under way, then takes it
    try:
        assert len(starts) == 1  # the background one: take started none of its own
        assert "python3" not in kernels._warm and "python3" not in kernels._starting
        assert value(km, "1 + 1") == 2
    finally:
        kernels.stop(km)


def test_a_kernel_outlives_the_thread_that_asked_for_it(worker_env) -> None:
    import threading

    started: list = []
    thread = threading.Thread(target=lambda: started.append(kernels.start("python3", "bwrap")))
    thread.start()
    thread.join()  # a Ray task's thread may end; the sandbox must not die with it
    try:
        time.sleep(1.0)
        assert started[0].is_alive() and value(started[0], "2 + 2") == 4
    finally:
        kernels.stop(started[0])
