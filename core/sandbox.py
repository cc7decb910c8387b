"""Sandboxes for user code: the command line that runs a program under Debian's bubblewrap.

User code (a job's kernel, a workspace server, a model that unpickles) runs only through
:func:`wrap`. What the sandboxed program sees:

- a fresh pid namespace (it sees only its own processes; ``/proc`` is its own), a fresh user,
  IPC, UTS and cgroup namespace, a new session (no terminal injection), no capabilities;
- a private, empty ``/tmp`` and ``/dev``; ``$HOME`` is its working dir;
- the operating system (``/usr``, ``/etc`` without its secret files) and the Python
  environment (``sys.prefix``, ``sys.base_prefix`` and the loopml source folders of an
  editable install), all read-only;
- the paths named in ``rw`` (read-write) and ``ro`` (read-only) and nothing else of the
  filesystem: never the data dir (``hide`` masks it with an empty tmpfs should it lie inside a
  bound path), never the Ray token;
- only the environment of :func:`environment`: the caller starts ``wrap(...)`` with
  ``env=environment(...)`` (never ``--setenv``: a command line is visible to every process of
  the machine, an environment is not);
- the network of the host: it reaches the platform, MLflow and Serve through their own
  authentication, like any client (Ray refuses it: it holds no Ray token).

It dies with the process that started it (``--die-with-parent``), and everything it started
dies with it (the pid namespace's init is gone).

:func:`check` tells whether this machine can sandbox (bubblewrap installed and user
namespaces allowed); ``job_isolation = "off"`` is the only way to run without it.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path

from loopml.errors import Unavailable

log = logging.getLogger(__name__)

BWRAP = "bwrap"
# /etc is bound read-only, but these files stay out of sight (as root, the sandbox's uid 0 is
# the owner of root-only files).
HIDDEN_ETC = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/sudoers",
              "/etc/ssh", "/etc/sudoers.d", "/etc/security/opasswd")
SYSTEM_RO = ("/usr", "/etc", "/opt")
SYSTEM_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# the loopml packages whose folders an editable install maps outside site-packages
_PACKAGES = ("loopml", "loopml.executor", "loopml.registry", "loopml.serving", "loopml.monitor",
             "loopml.hub_config", "loopml.jupyter_ext")


def bwrap_path() -> str | None:
    return shutil.which(BWRAP)


@functools.cache
def check() -> str | None:
    """``None`` when user code can be sandboxed here, else why not (one readable line)."""
    path = bwrap_path()
    if path is None:
        return ("bubblewrap is not installed (Debian package 'bubblewrap': `make up` installs it); "
                "or set job_isolation = \"off\" to run user code unsandboxed")
    import tempfile

    try:
        with tempfile.TemporaryDirectory(prefix="loopml-probe-") as workdir:
            probe = subprocess.run(wrap(["true"], workdir=workdir), env=environment({}, workdir),
                                   capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap cannot start a sandbox here ({exc}); or set job_isolation = \"off\""
    if probe.returncode != 0:
        detail = (probe.stderr or probe.stdout).strip().splitlines()[-1:] or ["no message"]
        return (f"bubblewrap cannot start a sandbox here ({detail[0]}): user namespaces may be disabled "
                "(sysctl kernel.unprivileged_userns_clone / user.max_user_namespaces); or set "
                "job_isolation = \"off\"")
    return None


def require() -> None:
    """Raise :class:`Unavailable` when this machine cannot sandbox user code."""
    problem = check()
    if problem:
        raise Unavailable(problem, component="sandbox")


@functools.cache
def python_paths() -> tuple[str, ...]:
    """Read-only paths the Python environment needs: prefixes and editable source folders."""
    paths = {os.path.realpath(sys.prefix), os.path.realpath(sys.base_prefix)}
    for name in _PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            paths.add(os.path.realpath(location))
    return tuple(sorted(_outermost(paths)))


def _outermost(paths: Iterable[str]) -> list[str]:
    kept: list[str] = []
    for path in sorted(paths, key=len):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return kept


def _inside(path: str, roots: Iterable[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def wrap(argv: list[str], *, workdir: str, rw: Iterable[str] = (), ro: Iterable[str] = (),
         hide: Iterable[str] = (), devices: Iterable[str] = (), executable: str | None = None) -> list[str]:
    """The command line that runs ``argv`` sandboxed, in ``workdir`` (bound read-write).

    ``rw``/``ro`` are extra host paths bound at the same place; ``hide`` are paths that must
    stay invisible even when they lie inside a bound path (the data dir); ``devices`` are
    device nodes of the host the program may use (a job's GPUs). Start it with
    ``env=environment(...)``: the sandbox keeps the environment it is started with. Never put
    a secret in ``argv``: command lines are visible to every process of the machine.
    """
    args = [executable or bwrap_path() or BWRAP,
            "--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
            "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run"]
    for path in SYSTEM_RO:
        args += ["--ro-bind-try", path, path]
    for link in SYSTEM_LINKS:
        if os.path.islink(link):
            args += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            args += ["--ro-bind", link, link]
    for path in HIDDEN_ETC:
        if os.path.isdir(path):
            args += ["--tmpfs", path]
        elif os.path.exists(path):
            args += ["--ro-bind", "/dev/null", path]
    bound_ro = list(python_paths()) + [os.path.realpath(p) for p in ro]
    mounts = [(path, ["--ro-bind", path, path]) for path in bound_ro if not _inside(path, SYSTEM_RO)]
    bound_rw = [os.path.realpath(workdir)] + [os.path.realpath(p) for p in rw]
    mounts += [(path, ["--bind", path, path]) for path in bound_rw if path != "/"]
    for path in (os.path.realpath(p) for p in hide):
        if _inside(path, [*SYSTEM_RO, *bound_ro, *bound_rw]) and os.path.isdir(path):
            mounts.append((path, ["--tmpfs", path]))
    # bwrap mounts in order, each over what is there: outer paths first, so a hidden data dir's
    # tmpfs covers what lies under it except the paths bound inside it (a project's directory);
    # the sort is stable: at the same path the tmpfs (last) wins
    for _, mount in sorted(mounts, key=lambda m: m[0].rstrip("/").count("/")):
        args += mount
    for path in devices:
        args += ["--dev-bind-try", path, path]
    args += ["--chdir", workdir, "--", *argv]
    return args


def environment(env: Mapping[str, str], workdir: str) -> dict[str, str]:
    """The whole environment of a sandboxed program: ``env`` over a minimal base (``HOME`` is
    ``workdir``; nothing of the caller's environment, so no Ray token, no platform secret)."""
    return {"HOME": workdir, "PATH": os.path.dirname(sys.executable) + ":/usr/local/bin:/usr/bin:/bin",
            "TMPDIR": "/tmp", "LANG": "C.UTF-8", "IPYTHONDIR": os.path.join(workdir, ".ipython"),
            "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime", **env}


def hidden_paths(home: str | Path) -> list[str]:
    """What a sandbox must never see of an instance: its data dir."""
    return [str(Path(home).expanduser().resolve())]
