"""A Ray worker node that behaves like another machine: its own address and its own mount
namespace (bubblewrap), in which the instance's data dir, the checkout's working tree and
the head node's temp dir do not exist.

What stays is what another host would have: the operating system and the installed Python
environment, read-only. With the editable install ``make`` makes, that environment is the
venv plus the loopml package folders it maps (``core/``, ``executor/``… of the checkout:
:func:`loopml.sandbox.python_paths`, what a job's sandbox binds too); the rest of the
checkout (tests, bench, docs, .git) is gone. ``/tmp`` is empty but for the node's own
private temp dir. The network is the host's: all of 127.0.0.0/8 is loopback.
"""

from __future__ import annotations

from pathlib import Path

from loopml import sandbox
from loopml.launcher.ray_local import short_temp_dir

NODE_IP = "127.0.0.2"
CHECKOUT = Path(__file__).resolve().parents[2]


def run_under(home: Path, base_port: int) -> list[str]:
    """The bubblewrap command line a worker node with ``base_port`` of the instance in
    ``home`` runs under (:func:`loopml.launcher.start_ray_worker_node`'s ``run_under``)."""
    own_dir = str(Path(short_temp_dir(f"{Path(home).resolve()}:{base_port}")).parent)
    args = [sandbox.bwrap_path() or sandbox.BWRAP, "--dev-bind", "/", "/", "--tmpfs", "/tmp",
            "--bind", own_dir, own_dir]
    for hidden in (Path(home).resolve(), CHECKOUT):
        if not str(hidden).startswith("/tmp/"):
            args += ["--tmpfs", str(hidden)]
    for path in sandbox.python_paths():
        if path.startswith((str(CHECKOUT) + "/", "/tmp/")):
            args += ["--ro-bind", path, path]
    return [*args, "--die-with-parent", "--chdir", "/", "--"]


def hidden_paths(home: Path, head_temp_dir: str) -> list[Path]:
    """What the node must not see: the data dir, the checkout's own files, the head's temp dir."""
    return [Path(home).resolve(), CHECKOUT / "tests", CHECKOUT / ".git", CHECKOUT / "pyproject.toml",
            Path(head_temp_dir)]
