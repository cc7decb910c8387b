"""A job's working dir as the way in and out of a job: input files, output values, output files.

Jobs share no disk with the platform or with each other. What a job needs travels in its
:class:`~loopml.executor.attempts.AttemptSpec` (``files``: written into the working dir before
the notebook runs) and what it leaves travels back in the runner's final
:class:`~loopml.executor.attempts.AttemptReport`:

- **values**: the notebook calls :func:`set_output` (``loopml.set_output``), which keeps them as
  one JSON object in :data:`OUTPUTS_FILE` of the working dir, at most :data:`MAX_OUTPUTS_BYTES`;
- **files**: the paths the job declared (``output_files``), relative to the working dir.

Both halves of that contract live here: the notebook's (light: the standard library only, it
runs in every job kernel) and the runner's (:func:`write_inputs`, :func:`read_outputs`,
:func:`read_files`). The runner reads what user code left behind, so it trusts none of it:
paths are checked before use and resolved inside the working dir, files are opened without
following links and must be regular files, sizes are capped before anything is read.
"""

from __future__ import annotations

import json
import os
import re
import stat
import warnings
from collections.abc import Iterable, Mapping
from pathlib import PurePosixPath
from typing import Any

from loopml.errors import InvalidInput

RESERVED_DIR = ".loopml"
OUTPUTS_FILE = f"{RESERVED_DIR}/outputs.json"
MAX_OUTPUTS_BYTES = 64 * 1024  # all of a job's outputs together, as compact JSON (UTF-8)
MAX_PATH_CHARS = 1000
WORKDIR_ENV = "LOOPML_WORKDIR"  # the job's working dir, as the runner tells the kernel
_OUTPUT_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")  # what `steps.<id>.outputs.<name>` can spell


# ---- names and paths --------------------------------------------------------------------


def check_output_name(name: str) -> str:
    """``name`` if it can name an output (letters, digits, '_'; not starting with a digit),
    else :class:`InvalidInput` saying what is allowed."""
    if not isinstance(name, str) or not _OUTPUT_NAME.fullmatch(name):
        raise InvalidInput(f"invalid output name {name!r}: use 1-100 letters, digits or '_', not starting with "
                           "a digit (it is read as steps.<step>.outputs.<name>)", field="name")
    return name


def check_path(path: str) -> str:
    """``path`` normalised (``a//b/./c`` → ``a/b/c``) if it names a file inside a working dir,
    else ``ValueError`` saying why (for pydantic validators, which name the field).

    Refused: empty, absolute, ``..``, backslashes, NUL, over :data:`MAX_PATH_CHARS`
    characters, and anything under :data:`RESERVED_DIR` (loopml's own files).
    """
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"invalid path {path!r}: give a file's path relative to the job's working dir")
    if len(path) > MAX_PATH_CHARS:
        raise ValueError(f"path {path[:60]!r}… is longer than {MAX_PATH_CHARS} characters")
    if "\\" in path or "\0" in path:
        raise ValueError(f"path {path!r} contains '\\' or NUL: separate folders with '/'")
    pure = PurePosixPath(path)
    if pure.is_absolute():
        raise ValueError(f"path {path!r} is absolute: give it relative to the job's working dir")
    if ".." in pure.parts:
        raise ValueError(f"path {path!r} contains '..': it must stay inside the job's working dir")
    if not pure.parts:
        raise ValueError(f"path {path!r} names the working dir itself, not a file in it")
    if pure.parts[0] == RESERVED_DIR:
        raise ValueError(f"path {path!r} is under {RESERVED_DIR}/, which loopml keeps for itself")
    return str(pure)


# ---- the notebook's side: loopml.set_output ----------------------------------------------

_outputs: dict[str, Any] = {}
_warned_interactive = False


def _in_job() -> bool:
    return bool(os.environ.get("LOOPML_JOB_ID"))


def _encoded(outputs: Mapping[str, Any]) -> bytes:
    return json.dumps(outputs, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def set_output(name: str, value: Any) -> None:
    """Publish ``value`` as the job's output ``name`` (a later call with the same name replaces it).

    ``value`` must be JSON (numbers, strings, booleans, ``None``, lists and dicts of them; no
    NaN or infinity); it is stored as JSON gives it back (a tuple becomes a list). All outputs
    of a job together may take :data:`MAX_OUTPUTS_BYTES` as JSON. Inside a job they are written
    to the job's :data:`OUTPUTS_FILE`, which the runner returns to the platform when the notebook
    ends (the job's ``outputs``); outside one they are kept in this kernel only, with a warning
    the first time. Raises :class:`InvalidInput` for a bad name, a non-JSON value or a full cap.
    """
    global _warned_interactive
    check_output_name(name)
    try:
        stored = json.loads(_encoded({name: value}))[name]
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"output {name!r} is not JSON-serialisable ({exc}): pass numbers, strings, booleans, "
                           "None, or lists and dicts of them (e.g. float(x) for a numpy number)",
                           field="value") from None
    candidate = {**_outputs, name: stored}
    size = len(_encoded(candidate))
    if size > MAX_OUTPUTS_BYTES:
        raise InvalidInput(f"output {name!r} does not fit: a job's outputs may take {MAX_OUTPUTS_BYTES // 1024} KiB "
                           f"of JSON in all, these would take {size} bytes; write large results to a file and "
                           "declare it in output_files", field="value", limit=MAX_OUTPUTS_BYTES)
    if _in_job():
        _write_atomically(_outputs_path(), _encoded(candidate))
    elif not _warned_interactive:
        _warned_interactive = True
        warnings.warn("loopml.set_output outside a job: outputs are kept in this kernel only "
                      "(loopml.outputs() shows them); a submitted job returns them to the platform",
                      stacklevel=3)  # the caller of loopml.set_output
    _outputs.clear()
    _outputs.update(candidate)


def outputs() -> dict[str, Any]:
    """A copy of the outputs this kernel has set with :func:`set_output`."""
    return json.loads(_encoded(_outputs))


def _outputs_path() -> str:
    return os.path.join(os.environ.get(WORKDIR_ENV) or os.getcwd(), OUTPUTS_FILE)


def _write_atomically(path: str, data: bytes) -> None:
    """``path`` holds ``data`` or what it held before, never half of it (write aside, then rename)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial"
    with open(partial, "wb") as file:
        file.write(data)
    os.replace(partial, path)


# ---- the runner's side ---------------------------------------------------------------------


class WorkdirError(Exception):
    """What the runner found wrong with a job's files: the message names the file and why."""


def write_inputs(workdir: str, files: Mapping[str, bytes]) -> None:
    """Write ``files`` (relative path → content) into ``workdir`` before the notebook runs.

    Raises :class:`WorkdirError` for a path that is invalid, lies under a link or clashes with a
    file already there (the kernel's own files: its connection file, its sockets).
    """
    root = os.path.realpath(workdir)
    for raw, content in files.items():
        try:
            path = check_path(raw)
        except ValueError as exc:
            raise WorkdirError(f"input file refused: {exc}") from None
        parent = os.path.dirname(os.path.join(root, path))
        os.makedirs(parent, exist_ok=True)
        if not _inside(os.path.realpath(parent), root):
            raise WorkdirError(f"input file {path!r} refused: its folder leads outside the job's working dir")
        try:
            fd = os.open(os.path.join(root, path), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        except FileExistsError:
            raise WorkdirError(f"input file {path!r} clashes with a file of the job's working dir: "
                               "give it another name") from None
        with os.fdopen(fd, "wb") as file:
            file.write(content)


def read_outputs(workdir: str) -> dict[str, Any]:
    """The outputs the notebook set (``{}`` if it set none), read from ``workdir``'s :data:`OUTPUTS_FILE`.

    Raises :class:`WorkdirError` when the file is not what :func:`set_output` writes: a link, too
    large, not JSON, not an object of valid names.
    """
    try:
        data = _read_inside(workdir, OUTPUTS_FILE, MAX_OUTPUTS_BYTES,
                            f"outputs may take {_size(MAX_OUTPUTS_BYTES)} of JSON in all")
    except FileNotFoundError:
        return {}
    what = f"the job's outputs file {OUTPUTS_FILE} (written by loopml.set_output)"
    try:
        found = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError) as exc:
        raise WorkdirError(f"{what} is not valid JSON ({exc}): set outputs with loopml.set_output only") from None
    if not isinstance(found, dict):
        raise WorkdirError(f"{what} holds a {type(found).__name__}, not an object of outputs")
    for name in found:
        try:
            check_output_name(name)
        except InvalidInput as exc:
            raise WorkdirError(f"{what} is broken: {exc.message}") from None
    return found


def read_files(workdir: str, paths: Iterable[str], max_bytes: int) -> tuple[dict[str, bytes], list[str]]:
    """The declared output files of ``workdir`` (path → content) and the declared paths not there.

    Raises :class:`WorkdirError` for a path that is invalid, a link leading outside the working
    dir, no regular file, or when the files together take more than ``max_bytes``.
    """
    found: dict[str, bytes] = {}
    missing: list[str] = []
    left = max_bytes
    for raw in paths:
        try:
            path = check_path(raw)
        except ValueError as exc:
            raise WorkdirError(f"refused: {exc}") from None
        try:
            found[path] = data = _read_inside(
                workdir, path, left, f"a job's output files may take {_size(max_bytes)} in all (max_job_files_mb)")
        except FileNotFoundError:
            missing.append(path)
            continue
        left -= len(data)
    return found, missing


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _read_inside(workdir: str, path: str, limit: int, cap: str) -> bytes:
    """The bytes of the regular file ``path`` of ``workdir``, at most ``limit`` of them.

    ``FileNotFoundError`` when it is not there; :class:`WorkdirError` when it resolves outside
    the working dir, is no regular file (a folder, a fifo, a device) or is larger than ``limit``
    (the message then says ``cap``, the rule it breaks).
    """
    root = os.path.realpath(workdir)
    joined = os.path.join(root, path)
    real = os.path.realpath(joined)
    if not _inside(real, root):
        if not os.path.lexists(joined):
            raise FileNotFoundError(path)
        raise WorkdirError(f"{path!r} is a link that leads outside the job's working dir: refused")
    try:
        # O_NOFOLLOW: a link put in its place since realpath is refused; O_NONBLOCK: a fifo does not hang us
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise WorkdirError(f"{path!r} cannot be read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise WorkdirError(f"{path!r} is not a regular file: declare the files themselves")
        if info.st_size > limit:
            raise WorkdirError(f"{path!r} does not fit: {cap}")
        with os.fdopen(os.dup(fd), "rb") as file:
            data = file.read(limit + 1)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise WorkdirError(f"{path!r} does not fit: {cap}")
    return data


def _size(count: int) -> str:
    return f"{count / 2**20:g} MiB" if count >= 2**20 else f"{count // 1024} KiB" if count >= 1024 else f"{count} bytes"
