"""What the bench scripts share: the environment of a ``loopml up`` of their own, and a
``loopml down`` that complains about any process left behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil

VENV_BIN = Path(sys.executable).parent


def platform_env(home: Path) -> dict[str, str]:
    """This environment without LOOPML_* / RAY_ADDRESS / JUPYTERHUB_*, with LOOPML_HOME=home and the venv on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPML_", "RAY_ADDRESS", "JUPYTERHUB_"))}
    env["LOOPML_HOME"] = str(home)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def state_records(home: Path) -> list[dict]:
    """The process records of ``<home>/run/state.json`` ([] when there is none)."""
    try:
        return json.loads((home / "run" / "state.json").read_text())["processes"]
    except (OSError, ValueError, KeyError):
        return []


def platform_pids(home: Path) -> set[int]:
    """PIDs of the platform's processes and their descendants (to check ``loopml down``)."""
    pids = set()
    for record in state_records(home):
        try:
            proc = psutil.Process(record["pid"])
            pids.add(proc.pid)
            pids.update(child.pid for child in proc.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    return pids


def stop_platform(home: Path) -> None:
    """``loopml down``; complain loudly about any platform process left behind."""
    pids = platform_pids(home)
    stopped = subprocess.run([str(VENV_BIN / "loopml"), "down", "--data-dir", str(home)], env=platform_env(home),
                             capture_output=True, text=True, timeout=180)
    if stopped.returncode != 0:
        print(f"!!! loopml down failed:\n{stopped.stdout}\n{stopped.stderr}")
    left = [pid for pid in pids if _alive(pid)]
    if left:
        print(f"!!! processes left after `loopml down`: {left}")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
