"""A step's notebook beyond the one it names: a one-cell notebook for a script step, and the
first cell that sets a step's environment."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import nbformat


def script_notebook(path: str, name: str) -> dict[str, Any]:
    """A one-cell notebook that runs the script at ``path`` (in its working dir) as ``__main__``."""
    nb = nbformat.v4.new_notebook(metadata={"loopml": {"name": name}})
    nb.cells.append(nbformat.v4.new_code_cell(f"import runpy\nrunpy.run_path({path!r}, run_name='__main__')"))
    return json.loads(nbformat.writes(nb))


def with_env(notebook: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """``notebook`` with a first cell that sets ``env`` in the kernel's environment."""
    cell = nbformat.v4.new_code_cell(f"import os\nos.environ.update({json.dumps(dict(env), sort_keys=True)})",
                                     metadata={"tags": ["loopml-env"]})
    return {**notebook, "cells": [json.loads(json.dumps(cell)), *notebook.get("cells", [])]}
