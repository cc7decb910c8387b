"""The failure read from an executed notebook, pointing at the cell of the notebook the user submitted."""

from __future__ import annotations

from typing import Any

import nbformat
import pytest
from nbformat import v4

from loopml.executor.runner import _failure


def code(*outputs: nbformat.NotebookNode, tags: tuple[str, ...] = (), exception: bool = False) -> nbformat.NotebookNode:
    """A code cell as papermill leaves it: ``exception`` sets ``metadata.papermill.exception``."""
    cell = v4.new_code_cell("pass", outputs=list(outputs), metadata={"tags": list(tags)})
    cell.metadata["papermill"] = {"exception": exception, "status": "failed" if exception else "completed"}
    return cell


def error(ename: str, evalue: str) -> nbformat.NotebookNode:
    return v4.new_output("error", ename=ename, evalue=evalue, traceback=[f"{ename}: {evalue}"])


def stream(text: str = "ok\n") -> nbformat.NotebookNode:
    return v4.new_output("stream", name="stdout", text=text)


def parameters() -> nbformat.NotebookNode:
    return code(tags=("parameters",))


def injected(*outputs: nbformat.NotebookNode, exception: bool = False) -> nbformat.NotebookNode:
    return code(*outputs, tags=("injected-parameters",), exception=exception)


def marker() -> nbformat.NotebookNode:
    """The markdown cell papermill adds at the top and above the failing cell."""
    return v4.new_markdown_cell('<span id="papermill-error-cell" style="color:red">An Exception was encountered</span>',
                                metadata={"tags": ["papermill-error-cell-tag"]})


def cell_error(cell_index: int | None, ename: str, evalue: str) -> dict[str, Any]:
    return {"reason": "cell_error", "cell_index": cell_index, "ename": ename, "evalue": evalue}


SILENT = ("CellExecutionError", "the cell failed without an error message")


@pytest.mark.parametrize(
    "cells, expected",
    [
        ([code(stream()), code()], None),
        ([], None),
        ([code(error("ValueError", "bad lr"))], cell_error(0, "ValueError", "bad lr")),
        ([v4.new_markdown_cell("# Title"), code(), code(stream(), error("KeyError", "'x'"))],
         cell_error(2, "KeyError", "'x'")),
        ([parameters(), injected(), code(), code(error("ValueError", "bad"))], cell_error(2, "ValueError", "bad")),
        ([injected(), code(error("ValueError", "bad"))], cell_error(0, "ValueError", "bad")),
        ([marker(), parameters(), injected(), code(), marker(), code(error("ZeroDivisionError", "division by zero"))],
         cell_error(2, "ZeroDivisionError", "division by zero")),
        ([code(error("NameError", "a")), code(error("TypeError", "b"))], cell_error(0, "NameError", "a")),
        ([code(error("SystemExit", "0"))], None),
        ([code(error("SystemExit", ""))], None),
        ([code(error("SystemExit", "0")), code(error("OSError", "disk full"))], cell_error(1, "OSError", "disk full")),
        ([code(error("SystemExit", "1"))], cell_error(0, "SystemExit", "1")),
        ([code(), code(exception=True)], cell_error(1, *SILENT)),
        ([code(error("SystemExit", "0"), exception=True)], cell_error(0, *SILENT)),
        ([parameters(), injected(error("SyntaxError", "invalid syntax")), code()],
         cell_error(None, "SyntaxError", "invalid syntax")),
        ([parameters(), injected(exception=True), code()], cell_error(None, *SILENT)),
    ],
    ids=["no-error", "empty-notebook", "error-in-first-cell", "markdown-cells-count",
         "injected-cell-skipped", "injected-cell-at-top-skipped", "error-markers-skipped", "first-error-wins",
         "sys-exit-0-ignored", "sys-exit-without-code-ignored", "error-after-sys-exit-0", "sys-exit-1-reported",
         "papermill-exception-without-output", "exception-flag-after-ignored-sys-exit",
         "error-in-injected-cell", "exception-in-injected-cell"],
)
def test_first_cell_error_in_users_numbering(cells: list[nbformat.NotebookNode], expected: dict | None) -> None:
    executed = v4.new_notebook(cells=cells)

    assert _failure(executed) == expected
