"""A pipeline file on the caller's disk: read it, and gather the files it needs from its folder.

:func:`read_pipeline` picks the reader by the file's name; :func:`needed_files` collects what
the steps name — each notebook or script and its ``dependencies`` (globs expanded) — relative to
the pipeline file's folder, so ``loopml pipelines run FILE`` uploads those files and nothing
else from the folder. A path that leaves the folder (``..``, a symlink out) is never read; a
named file that is missing is left to the platform's check, which names the step and field.
Plain imports only: the CLI and the client load this module.
"""

from __future__ import annotations

from pathlib import Path

from loopml.errors import InvalidInput

from .elyra import read_elyra
from .native import read_native
from .spec import Pipeline
from .validate import MAX_NOTEBOOK_BYTES

PIPELINE_SUFFIXES = (".yaml", ".yml", ".pipeline")


def read_pipeline(source_name: str, content: str) -> Pipeline:
    """The pipeline in ``content``: Elyra's format for a ``.pipeline`` file, else the native YAML."""
    if source_name.endswith(".pipeline"):
        return read_elyra(content, source=source_name)
    if source_name.endswith((".yaml", ".yml")):
        return read_native(content, source=source_name)
    raise InvalidInput(f"{source_name!r}: a pipeline file ends with .pipeline.yaml (or .yaml, .yml) for the native "
                       "format, .pipeline for Elyra's", field="source_name")


def _inside(folder: Path, path: Path) -> Path | None:
    resolved = path.resolve()
    return resolved if folder in resolved.parents and resolved.is_file() else None


def needed_files(pipeline: Pipeline, folder: Path) -> dict[str, bytes]:
    """Relative path → content of every file ``pipeline``'s steps name that exists in ``folder``."""
    folder = folder.resolve()
    found: dict[str, Path] = {}
    for step in pipeline.steps.values():
        names = [step.file] if step.file else []
        for pattern in step.dependencies:
            if any(ch in pattern for ch in "*?["):
                names += [str(p.relative_to(folder)) for p in folder.glob(pattern)]
            else:
                names.append(pattern)
        for name in names:
            local = _inside(folder, folder / name)
            if local is not None:
                found[Path(name).as_posix()] = local
    files = {}
    for name, local in sorted(found.items()):
        if local.stat().st_size > MAX_NOTEBOOK_BYTES:
            raise InvalidInput(f"{name}: {local.stat().st_size} bytes, more than a pipeline file may ship "
                               f"({MAX_NOTEBOOK_BYTES} bytes); read big data inside the step instead", field="files")
        files[name] = local.read_bytes()
    return files
