"""The notebooks the magics submit: ``%%loopml submit``'s cell as a one-cell notebook, and the
saved notebook a kernel runs (what ``%loopml submit`` without NOTEBOOK sends).

Pure helpers: nothing here talks to the platform.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from loopml.errors import InvalidInput

ROOT_ENV = "LOOPML_JUPYTER_ROOT"
"""Set by the server extension: the Jupyter server's root dir, which relative
``JPY_SESSION_NAME`` values are relative to."""

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def parameter_literal(value: str) -> str:
    """Source text of a ``-p`` value in a parameters cell: the value itself when it reads as a
    Python literal (``0.01``, ``[1, 2]``, ``'text'``), else the value as a string."""
    try:
        ast.literal_eval(value)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return repr(value)
    return value.strip()


def cell_notebook(code: str, parameters: Mapping[str, str]) -> dict[str, Any]:
    """The one-cell notebook ``%%loopml submit`` runs: a ``parameters``-tagged cell declaring the
    ``-p`` values (so papermill injects them and the platform knows their types), then ``code``.

    :class:`InvalidInput` for a parameter name that is not a Python identifier.
    """
    import nbformat

    nb = nbformat.v4.new_notebook()
    if parameters:
        bad = [name for name in parameters if not name.isidentifier()]
        if bad:
            raise InvalidInput(f"parameter name {bad[0]!r} is not a Python identifier", field="parameters")
        cell = nbformat.v4.new_code_cell("\n".join(f"{k} = {parameter_literal(v)}" for k, v in parameters.items()))
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells.append(nbformat.v4.new_code_cell(code.rstrip("\n")))
    nb.metadata["kernelspec"] = dict(KERNELSPEC)
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def current_notebook(environ: Mapping[str, str], user_ns: Mapping[str, Any], cwd: Path) -> Path:
    """The saved notebook this kernel runs.

    Looked up, in order, from VS Code's ``__vsc_ipynb_file__``, jupyter-server's
    ``JPY_SESSION_NAME`` (absolute, or relative to the server root, which the loopml server
    extension exports as ``LOOPML_JUPYTER_ROOT``) and ipykernel's ``__session__``; a relative
    path is also tried against ``cwd`` and its parents. :class:`InvalidInput` when none
    names an existing ``.ipynb`` file (a console, a script, a renamed or never-saved notebook).
    """
    names = [user_ns.get("__vsc_ipynb_file__"), environ.get("JPY_SESSION_NAME"), user_ns.get("__session__")]
    names = [str(n) for n in names if n]
    root = environ.get(ROOT_ENV)
    for name in names:
        path = Path(name).expanduser()
        bases = [] if path.is_absolute() else [Path(root)] if root else []
        tries = [path] if path.is_absolute() else [b / path for b in (*bases, cwd, *cwd.parents)]
        for candidate in tries:
            if candidate.suffix == ".ipynb" and candidate.is_file():
                return candidate
    if names:
        raise InvalidInput(f"this kernel's session {names[0]!r} is not a saved notebook here: save it, "
                           "or pass the notebook: %loopml submit NOTEBOOK", field="notebook")
    raise InvalidInput("this kernel runs no saved notebook (a console?): pass one: %loopml submit NOTEBOOK",
                       field="notebook")
