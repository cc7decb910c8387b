"""The node supervisor of :mod:`loopml.launcher.ray_start` (``--block``), on stand-in daemons.

``ray start`` is replaced by a shell that starts three long sleeps named like a node's
processes (``raylet``, ``gcs_server``, a dashboard) in the background and exits, as ``ray
start`` does; the supervisor, a subreaper, adopts them. It runs in a process of its own (it
marks itself a subreaper). The real thing is exercised by every integration test's ``up``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil

STAND_IN = textwrap.dedent("""
    import subprocess, sys
    from loopml.launcher import ray_start

    daemons = " ".join(f"(exec -a {name} sleep 300) &" for name in ("/bin/raylet", "/bin/gcs_server", "dashboard"))
    call = subprocess.call
    ray_start.subprocess.call = lambda argv: call(["bash", "-c", daemons + " exit 0"])
    sys.exit(ray_start._supervise(sys.argv[1:]))
""")


def _start(tmp_path: Path) -> tuple[subprocess.Popen, list[psutil.Process]]:
    script = tmp_path / "supervise.py"
    script.write_text(STAND_IN)
    proc = subprocess.Popen([sys.executable, str(script), "--head", "--block"], stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    assert "supervising the node's processes" in line, line
    daemons = psutil.Process(proc.pid).children()
    assert sorted(p.cmdline()[0] for p in daemons) == ["/bin/gcs_server", "/bin/raylet", "dashboard"]
    return proc, daemons


def test_sigterm_stops_every_process_of_the_node_and_exits_0(tmp_path: Path) -> None:
    proc, daemons = _start(tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=15) == 0
    _, alive = psutil.wait_procs(daemons, timeout=5)
    assert alive == []


def test_a_process_that_dies_stops_the_rest_and_the_supervisor_exits_1(tmp_path: Path) -> None:
    proc, daemons = _start(tmp_path)
    raylet = next(p for p in daemons if p.cmdline()[0] == "/bin/raylet")
    os.kill(raylet.pid, signal.SIGKILL)
    assert proc.wait(timeout=15) == 1
    assert "raylet exited unexpectedly" in proc.stdout.read()
    _, alive = psutil.wait_procs(daemons, timeout=5)
    assert alive == []


def test_the_supervisor_is_lean_before_it_drives_a_dispatcher(tmp_path: Path) -> None:
    """A worker node's supervisor never imports Ray (``ray start --block`` did: ~170 MiB)."""
    proc, _ = _start(tmp_path)
    try:
        time.sleep(0.2)
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        assert "_raylet" not in maps
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)
