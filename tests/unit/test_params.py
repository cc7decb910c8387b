"""The parameter schema read from a notebook's ``parameters`` cell, and submitted values checked against it."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import nbformat
import papermill
import pytest
from nbformat import v4

from loopml.errors import InvalidInput
from loopml.executor.params import MAX_CELL_CHARS, MAX_VALUE_CHARS, parameter_schema, validate_parameters

# papermill's inspection finds the translator through the kernelspec, so every notebook
# here names one (as notebooks saved by JupyterLab do).
KERNELSPEC = {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}

PARAMETERS_CELL = '''\
count = 3
rate = 0.5
label = "demo"
verbose = True
layers = [64, 32]
options = {"depth": 2}
anything = None
n: int = 3
x: "float" = 1
sizes: List[int] = []
'''


def notebook(parameters_cell: str | None = PARAMETERS_CELL) -> nbformat.NotebookNode:
    """A two-cell notebook; the first cell is tagged ``parameters`` unless ``parameters_cell`` is None."""
    cells = [v4.new_code_cell("print(count)")]
    if parameters_cell is not None:
        cells.insert(0, v4.new_code_cell(parameters_cell, metadata={"tags": ["parameters"]}))
    return v4.new_notebook(cells=cells, metadata=KERNELSPEC)


@pytest.mark.parametrize(
    "name, type_name, default",
    [
        ("count", "int", "3"),
        ("rate", "float", "0.5"),
        ("label", "str", '"demo"'),
        ("verbose", "bool", "True"),
        ("layers", "list", "[64, 32]"),
        ("options", "dict", '{"depth": 2}'),
        ("anything", "any", "None"),
        ("n", "int", "3"),
        ("x", "float", "1"),
        ("sizes", "list", "[]"),
    ],
    ids=["int-default", "float-default", "str-default", "bool-default", "list-default", "dict-default",
         "none-default-is-any", "int-annotation", "string-annotation-beats-int-default", "generic-list-annotation"],
)
def test_schema_infers_type_from_default_or_annotation(name: str, type_name: str, default: str) -> None:
    parameter = parameter_schema(notebook())[name]

    assert (parameter.type_name, parameter.default) == (type_name, default)


def test_schema_of_notebook_without_parameters_cell_is_none() -> None:
    assert parameter_schema(notebook(None)) is None


@pytest.mark.parametrize(
    "name, given, expected",
    [
        ("count", 7, 7),
        ("count", "3", 3),
        ("count", " 42 ", 42),
        ("rate", "0.5", 0.5),
        ("rate", 2, 2.0),
        ("x", "1.5", 1.5),
        ("verbose", "true", True),
        ("verbose", "no", False),
        ("verbose", " YES ", True),
        ("verbose", "0", False),
        ("verbose", False, False),
        ("label", "3", "3"),
        ("layers", "[1, 2]", [1, 2]),
        ("layers", [1, 2], [1, 2]),
        ("sizes", "[]", []),
        ("options", '{"depth": 4}', {"depth": 4}),
        ("anything", {"free": ["form"]}, {"free": ["form"]}),
        ("anything", "3", "3"),
    ],
    ids=["int-as-int", "int-from-text", "int-from-padded-text", "float-from-text", "float-accepts-int",
         "annotated-float-from-text", "bool-true-text", "bool-no-text", "bool-text-any-case", "bool-zero-text",
         "bool-as-bool", "str-keeps-digits", "list-from-json", "list-as-list", "annotated-list-from-json",
         "dict-from-json", "any-takes-anything", "any-keeps-text"],
)
def test_values_are_converted_to_the_declared_type(name: str, given: Any, expected: Any) -> None:
    converted = validate_parameters(notebook(), {name: given})[name]

    assert converted == expected
    assert type(converted) is type(expected)


@pytest.mark.parametrize(
    "name, given, type_name",
    [
        ("count", True, "int"),
        ("count", 1.5, "int"),
        ("count", "three", "int"),
        ("count", "3.0", "int"),
        ("rate", False, "float"),
        ("rate", "fast", "float"),
        ("verbose", "maybe", "bool"),
        ("verbose", 1, "bool"),
        ("label", 3, "str"),
        ("layers", '{"a": 1}', "list"),
        ("layers", "[1, 2", "list"),
        ("options", [1], "dict"),
    ],
    ids=["bool-for-int", "float-for-int", "word-for-int", "decimal-text-for-int", "bool-for-float",
         "word-for-float", "word-for-bool", "int-for-bool", "int-for-str", "json-object-for-list",
         "broken-json-for-list", "list-for-dict"],
)
def test_wrong_type_is_refused_naming_parameter_and_type(name: str, given: Any, type_name: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_parameters(notebook(), {name: given})

    assert f"parameter {name!r} expects {type_name}" in caught.value.message
    assert caught.value.details == {"field": f"parameters.{name}"}


def test_wrong_value_is_shown_shortened_in_the_message() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_parameters(notebook(), {"count": "z" * 500})

    assert "z" * 50 + "..." in caught.value.message
    assert "z" * 100 not in caught.value.message


@pytest.mark.parametrize(
    "parameters_cell, known",
    [("beta = 1\nalpha = 2\n", "alpha, beta"), ("# no assignments here\n", "none")],
    ids=["lists-known-names-sorted", "cell-defining-nothing"],
)
def test_unknown_name_is_refused_listing_the_known_ones(parameters_cell: str, known: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_parameters(notebook(parameters_cell), {"epochs": 3})

    assert caught.value.message == f"unknown parameter 'epochs': the notebook's parameters cell defines {known}"
    assert caught.value.details == {"field": "parameters.epochs"}


def test_notebook_without_parameters_cell_refuses_any_parameter() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_parameters(notebook(None), {"count": 3})

    assert "no cell tagged 'parameters'" in caught.value.message
    assert caught.value.details == {"field": "parameters"}


@pytest.mark.parametrize("parameters_cell", [None, PARAMETERS_CELL], ids=["no-parameters-cell", "parameters-cell"])
def test_no_values_are_accepted_by_any_notebook(parameters_cell: str | None) -> None:
    assert validate_parameters(notebook(parameters_cell), {}) == {}


@pytest.mark.parametrize(
    "text",
    ['say "hi" and \'bye\'', "line one\nline two\r\n", "C:\\new\\table \\n \\\\", 'a """docstring""" inside',
     "ends with a backslash \\", "'''\n\"\"\"\n\\"],
    ids=["quotes", "newlines", "backslashes", "triple-double-quotes", "trailing-backslash", "all-at-once"],
)
def test_strings_are_kept_verbatim_up_to_the_injected_cell(text: str) -> None:
    nb = notebook()
    checked = validate_parameters(nb, {"label": text})
    # what the runner hands to papermill, prepared but not executed
    injected = papermill.execute_notebook(nb, None, parameters=checked, prepare_only=True, progress_bar=False)
    namespace: dict[str, Any] = {}
    exec(next(c.source for c in injected.cells if "injected-parameters" in c.metadata.get("tags", [])), namespace)

    assert checked == {"label": text}
    assert namespace["label"] == text


@pytest.mark.parametrize(
    "name, value",
    [("label", "x" * (MAX_VALUE_CHARS + 1)), ("anything", "x" * (MAX_VALUE_CHARS + 1)),
     ("layers", "[" + "1," * (MAX_VALUE_CHARS // 2) + "1]")],
    ids=["str-parameter", "any-parameter", "list-as-json-text"],
)
def test_over_long_strings_are_refused(name: str, value: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_parameters(notebook(), {name: value})

    assert f"parameter {name!r} is longer than {MAX_VALUE_CHARS} characters" in caught.value.message


def test_string_of_exactly_the_limit_is_accepted() -> None:
    text = "x" * MAX_VALUE_CHARS

    assert validate_parameters(notebook(), {"label": text}) == {"label": text}


@pytest.mark.parametrize(
    "parameters_cell",
    ["a: a" + " " * 60_000 + "b = 1\n", "x = 1  #" + " " * 60_000 + "=\n", "a = [" + "[" * 150 + "]" * 150 + "]\n",
     "a = 1\n" * 10_000],
    ids=["papermill-regex-backtracking", "long-comment", "deep-brackets", "many-lines"],
)
def test_parameters_cell_under_the_limit_is_read_in_bounded_time(parameters_cell: str) -> None:
    # papermill's regex takes minutes on the first of these; Python's parser, milliseconds
    started = time.perf_counter()
    with contextlib.suppress(InvalidInput):
        parameter_schema(notebook(parameters_cell))

    assert time.perf_counter() - started < 1.0


def test_parameters_cell_over_the_limit_is_refused_naming_it() -> None:
    attack = "a: a" + " " * 300_000 + "b"
    started = time.perf_counter()
    with pytest.raises(InvalidInput) as caught:
        validate_parameters(notebook(attack), {"a": 1})

    assert time.perf_counter() - started < 1.0
    assert f"more than the limit of {MAX_CELL_CHARS}" in caught.value.message
    assert caught.value.details == {"field": "notebook"}


@pytest.mark.parametrize(
    "parameters_cell, name, type_name, default, help_text",
    [("epochs = 3  # how many passes\n", "epochs", "int", "3", "how many passes"),
     ("size = None  # type: int the batch size\n", "size", "int", "None", "the batch size"),
     ("%matplotlib inline\n!ls\nrate = 0.1\n", "rate", "float", "0.1", ""),
     ("layers = [\n    64,  # first\n    32,\n]\n", "layers", "list", "[\n    64,  # first\n    32,\n]", ""),
     ("opts = dict(depth=2)\n", "opts", "any", "dict(depth=2)", ""),
     ("name = 'café'  # é\n", "name", "str", "'café'", "é")],
    ids=["help-comment", "type-comment", "magics-skipped", "multi-line-value", "call-is-any", "non-ascii"],
)
def test_schema_reads_python_assignments(parameters_cell: str, name: str, type_name: str, default: str,
                                         help_text: str) -> None:
    parameter = parameter_schema(notebook(parameters_cell))[name]

    assert (parameter.type_name, parameter.default, parameter.help) == (type_name, default, help_text)


@pytest.mark.parametrize("parameters_cell", ["a, b = 1, 2\nx.y = 3\nif True:\n    z = 4\nw: int\n"],
                         ids=["no-plain-names"])
def test_schema_skips_what_is_no_plain_assignment(parameters_cell: str) -> None:
    assert parameter_schema(notebook(parameters_cell)) == {}


def test_invalid_python_parameters_cell_is_refused_naming_the_line() -> None:
    with pytest.raises(InvalidInput) as caught:
        validate_parameters(notebook("a = 1\nb = (\n"), {"a": 2})

    assert "the parameters cell is not valid Python (line 2" in caught.value.message


def test_cell_of_another_language_defines_no_checkable_parameter() -> None:
    nb = notebook("n <- 3\n")
    nb.metadata = {"kernelspec": {"name": "ir", "language": "R", "display_name": "R"}}

    assert parameter_schema(nb) == {}
