"""The parameter schema of a notebook, read from its papermill ``parameters`` cell.

Submitted values are checked against it before anything runs: an unknown name or a
value of the wrong type is refused with a message naming the parameter. Strings that
read as the declared type are converted (the CLI sends every ``-p k=v`` as a string).
"""

from __future__ import annotations

import ast
import copy
import json
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import nbformat
import papermill

from loopml.errors import InvalidInput

MAX_VALUE_CHARS = 1_000_000
_TRUE, _FALSE = {"true", "yes", "1"}, {"false", "no", "0"}


@dataclass(frozen=True)
class Parameter:
    name: str
    type_name: str  # int, float, bool, str, list, dict, or "any"
    default: str  # source text of the default value
    help: str = ""


_ANNOTATIONS = {"int": "int", "float": "float", "bool": "bool", "str": "str", "list": "list", "dict": "dict",
                "List": "list", "Dict": "dict"}


def _type_of(annotation: str, default: str) -> str:
    base = annotation.split("[", 1)[0].strip()
    if base in _ANNOTATIONS:
        return _ANNOTATIONS[base]
    if annotation not in ("None", ""):
        return "any"
    try:
        value = ast.literal_eval(default)
    except (ValueError, SyntaxError):
        return "any"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(type(value), "any")


def parameter_schema(nb: nbformat.NotebookNode, kernel_name: str = "python3") -> dict[str, Parameter] | None:
    """The notebook's parameters by name, or ``None`` if no cell is tagged ``parameters``.

    ``kernel_name`` stands in when the notebook's metadata names no kernel (papermill
    needs one to pick the language of the parameters cell).
    """
    if not any("parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells):
        return None
    nb = copy.deepcopy(nb)
    nb.metadata.setdefault("kernelspec", {}).setdefault("name", kernel_name)
    nb.metadata.kernelspec.setdefault("language", "python")
    nb.metadata.setdefault("language_info", {}).setdefault("name", nb.metadata.kernelspec.language)
    fd, path = tempfile.mkstemp(suffix=".ipynb")
    try:
        with os.fdopen(fd, "w") as handle:
            nbformat.write(nb, handle)
        found = papermill.inspect_notebook(path)
    finally:
        os.unlink(path)
    return {
        name: Parameter(name, _type_of(p.get("inferred_type_name", "None"), p.get("default", "")), p.get("default", ""), p.get("help", ""))
        for name, p in found.items()
    }


def _wrong(param: Parameter, value: Any) -> InvalidInput:
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    return InvalidInput(
        f"parameter {param.name!r} expects {param.type_name} (default {param.default}), got {shown}",
        field=f"parameters.{param.name}",
    )


def _coerce(param: Parameter, value: Any) -> Any:
    kind = param.type_name
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        raise InvalidInput(f"parameter {param.name!r} is longer than {MAX_VALUE_CHARS} characters", field=f"parameters.{param.name}")
    if kind == "any":
        return value
    if kind == "str":
        if isinstance(value, str):
            return value
        raise _wrong(param, value)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise _wrong(param, value)
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        raise _wrong(param, value)
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value.strip())
            except ValueError:
                pass
        raise _wrong(param, value)
    expected = list if kind == "list" else dict
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _wrong(param, value) from None
    if isinstance(value, expected):
        return value
    raise _wrong(param, value)


def validate_parameters(nb: nbformat.NotebookNode, values: dict[str, Any], kernel_name: str = "python3") -> dict[str, Any]:
    """``values`` checked and converted against ``nb``'s parameters cell.

    Raises :class:`InvalidInput` naming the first unknown or ill-typed parameter.
    """
    if not values:
        return {}
    schema = parameter_schema(nb, kernel_name)
    if schema is None:
        raise InvalidInput(
            "the notebook has no cell tagged 'parameters', so it takes no parameters: "
            "tag the cell that defines them (JupyterLab: property inspector → cell tags)",
            field="parameters",
        )
    result = {}
    for name, value in values.items():
        if name not in schema:
            known = ", ".join(sorted(schema)) or "none"
            raise InvalidInput(
                f"unknown parameter {name!r}: the notebook's parameters cell defines {known}",
                field=f"parameters.{name}",
            )
        result[name] = _coerce(schema[name], value)
    return result
