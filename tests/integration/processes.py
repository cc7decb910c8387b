"""Waiting for, finding and restarting the real processes the integration tests act on."""

from __future__ import annotations

import re
import subprocess
import time

import psutil

from tests.integration.platform_fixtures import LOOPML


def wait_for(predicate, timeout: float = 60, every: float = 0.1):
    """``predicate()``'s first truthy value; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s")


def kernel_pid(client, project, job_id) -> int:
    """The PID of a job's kernel as the kernel sees it (in its sandbox's pid namespace), once
    the job printed it (the ``SLOW`` notebook does)."""
    found = wait_for(lambda: re.search(r"kernel pid (\d+)", client.logs(project, job_id)))
    return int(found.group(1))


def kernel_process(job_id: str, attempt: int) -> psutil.Process:
    """The kernel process, as the host sees it, of ``attempt`` of job ``job_id`` (a child of
    its runner, under the sandbox's bubblewrap processes when jobs are sandboxed)."""
    for proc in runner_process(job_id, attempt).children(recursive=True):
        try:
            cmdline = proc.cmdline()
        except psutil.Error:
            continue
        if "ipykernel_launcher" in " ".join(cmdline) and not cmdline[0].endswith("bwrap"):
            return proc
    raise AssertionError(f"no kernel under the runner of {job_id}:{attempt}")


def runner_process(job_id: str, attempt: int) -> psutil.Process:
    """The Ray worker running ``attempt`` of job ``job_id`` (found by its process title)."""
    title = f"ray::loopml-job:{job_id}:{attempt}"
    for proc in psutil.process_iter(["cmdline"]):
        if proc.info["cmdline"] and proc.info["cmdline"][0].startswith(title):
            return proc
    raise AssertionError(f"no process titled {title}")


def platform_service(platform) -> psutil.Process:
    """The platform service process of ``platform``'s state file."""
    record = next(p for p in platform.state()["processes"] if p["name"] == "platform")
    return psutil.Process(record["pid"])


def up_again(platform) -> None:
    """``loopml up`` on ``platform``'s data dir, which starts only what is missing."""
    again = subprocess.run([LOOPML, "up", "--no-hub", "--data-dir", str(platform.home)], env=platform.env,
                           capture_output=True, text=True, timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr


def restart_platform_service(platform) -> None:
    """Stop the platform service by PID, then ``loopml up`` again."""
    service = platform_service(platform)
    service.terminate()
    service.wait(30)
    up_again(platform)
