"""The parameter schema of a notebook, read from its papermill ``parameters`` cell.

Submitted values are checked against it before anything runs: an unknown name or a
value of the wrong type is refused with a message naming the parameter. Strings that
read as the declared type are converted (the CLI sends every ``-p k=v`` as a string).
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Any

import nbformat
from papermill.exceptions import PapermillException
from papermill.translators import PythonTranslator, papermill_translators

from loopml.errors import InvalidInput

MAX_VALUE_CHARS = 1_000_000
MAX_CELL_CHARS = 64_000  # of the parameters cell: parameter definitions fit in far less, and Python
# parses this much in about 0.2 s (holding the GIL of the platform process)
_TRUE, _FALSE = {"true", "yes", "1"}, {"false", "no", "0"}


@dataclass(frozen=True)
class Parameter:
    name: str
    type_name: str  # int, float, bool, str, list, dict, or "any"
    default: str  # source text of the default value
    help: str = ""


_ANNOTATIONS = {"int": "int", "float": "float", "bool": "bool", "str": "str", "list": "list", "dict": "dict",
                "List": "list", "Dict": "dict"}


def _type_of(annotation: str, value: ast.expr) -> str:
    base = annotation.split("[", 1)[0].strip()
    if base in _ANNOTATIONS:
        return _ANNOTATIONS[base]
    if annotation not in ("None", ""):
        return "any"
    try:
        default = ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return "any"
    return {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(type(default), "any")


def _is_python(nb: nbformat.NotebookNode, kernel_name: str) -> bool:
    """Whether papermill reads the parameters cell as Python (its translator by kernel name,
    else by language); only its lookup table is used, never its parameter regex."""
    kernelspec = nb.metadata.get("kernelspec", {})
    language = kernelspec.get("language") or nb.metadata.get("language_info", {}).get("name") or "python"
    try:
        translator = papermill_translators.find_translator(kernelspec.get("name") or kernel_name, language)
    except PapermillException:
        return False
    return issubclass(translator, PythonTranslator)


def _segment(lines: list[bytes], node: ast.AST) -> str:
    """The source text of ``node`` (``ast.get_source_segment`` splits the whole source on each call)."""
    first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
    start, end = node.col_offset, node.end_col_offset or 0  # offsets count UTF-8 bytes
    if first == last:
        return lines[first][start:end].decode(errors="replace")
    return b"\n".join([lines[first][start:], *lines[first + 1:last], lines[last][:end]]).decode(errors="replace")


def _comment_after(lines: list[bytes], node: ast.stmt) -> tuple[str, str]:
    """``(type comment, help)`` from the ``# ...`` that follows ``node`` on its last line."""
    rest = lines[(node.end_lineno or node.lineno) - 1][node.end_col_offset or 0:].decode(errors="replace").strip()
    if not rest.startswith("#"):
        return "", ""
    comment = rest[1:].strip()
    if comment.startswith("type:"):
        kind, _, comment = comment[5:].strip().partition(" ")
        return kind, comment.strip()
    return "", comment


def _annotation(node: ast.expr | None, lines: list[bytes]) -> str:
    if node is None:
        return ""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # x: "float" = 1
        return node.value.strip()
    return _segment(lines, node)


def _parse_python(source: str) -> dict[str, Parameter]:
    """The top-level ``name [: annotation] = default  # help`` assignments of ``source``.

    Python's own parser, not papermill's regex: that backtracks quadratically on a long
    line and would hold the GIL of the platform for minutes. Lines of IPython magics and
    shell escapes are blanked first, as they are no Python.
    """
    # the parser's own line breaks (str.splitlines also splits at form feeds and others)
    lines = ["" if line.lstrip().startswith(("%", "!")) else line for line in re.split(r"\r\n?|\n", source)]
    code = "\n".join(lines)
    encoded = [line.encode() for line in lines]
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        raise InvalidInput(f"the parameters cell is not valid Python (line {exc.lineno}: {exc.msg}): "
                           "fix it so its parameters can be checked", field="notebook") from None
    except (RecursionError, MemoryError, ValueError):
        raise InvalidInput("the parameters cell nests too deeply to be read: define each parameter as a "
                           "plain value", field="notebook") from None
    found = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, annotation = node.targets[0], None
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, annotation = node.target, node.annotation
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        type_comment, help_text = _comment_after(encoded, node)
        default = _segment(encoded, node.value)
        declared = _annotation(annotation, encoded) or type_comment
        found[target.id] = Parameter(target.id, _type_of(declared or "None", node.value), default, help_text)
    return found


def parameter_schema(nb: nbformat.NotebookNode, kernel_name: str = "python3") -> dict[str, Parameter] | None:
    """The notebook's parameters by name, or ``None`` if no cell is tagged ``parameters``.

    ``kernel_name`` stands in when the notebook's metadata names no kernel. Only Python
    cells are read (papermill inspects no other language): any other defines no parameter
    that can be checked. A cell over :data:`MAX_CELL_CHARS` is refused, so reading it
    takes bounded time.
    """
    cell = next((c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        return None
    source = cell.source if isinstance(cell.source, str) else "".join(cell.source)
    if len(source) > MAX_CELL_CHARS:
        raise InvalidInput(f"the parameters cell has {len(source)} characters, more than the limit of {MAX_CELL_CHARS}: "
                           "keep only the parameter definitions in it", field="notebook")
    if not _is_python(nb, kernel_name):
        return {}
    return _parse_python(source)


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
