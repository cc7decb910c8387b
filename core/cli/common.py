"""What the ``loopml`` command and the ``%loopml`` magic share: who calls the click tree, the
results its commands hand back, and the defaults both apply.

The click tree in :mod:`loopml.cli` is the one grammar. A caller other than the shell (the
magic, a test) injects a :class:`Caller` as the root context's ``obj``; each command prints
its text (or ``--json``) and returns what it computed, which the magic turns into a panel.
Kept free of heavy imports, like the CLI.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from loopml.client import Client
from loopml.errors import InvalidInput

PROJECT_ENV = "LOOPML_PROJECT"

NotebookSource = Callable[[Path | None, Mapping[str, str]], "tuple[Path | dict[str, Any], str | None] | None"]
"""``(NOTEBOOK as given or None, -p values) -> (notebook to submit, default job name)``, or
``None`` when there is nothing to submit (the caller said why)."""


@dataclass
class Caller:
    """The root context's ``obj`` when the click tree runs inside another program (the magic).

    ``connect`` makes the client every command uses, on first use (``--help`` needs none);
    ``notebook`` (if set) decides what ``submit`` sends (``%%loopml``'s cell, the notebook
    this kernel runs); ``progress`` ``False`` leaves out the progress bar of ``--wait`` (a
    panel shows progress instead).
    """

    connect: Callable[[], Client]
    notebook: NotebookSource | None = None
    progress: bool = True

    @functools.cached_property
    def client(self) -> Client:
        return self.connect()


@dataclass(frozen=True)
class Listing:
    """What a list command returns: the items it listed, the project, the status filter if any."""

    project: str
    items: list[Any]
    status: str | None = None


@dataclass(frozen=True)
class LabelsSent:
    """What ``feedback`` returns: the platform's receipt for the labels of ``project/endpoint``."""

    project: str
    endpoint: str
    result: Any


class Ended(click.exceptions.Exit):
    """A command's exit code when it computed a result anyway (``--wait`` on a job that did not
    succeed, or a wait stopped by Ctrl-C); a caller that renders results reads :attr:`result`."""

    def __init__(self, code: int, result: Any) -> None:
        super().__init__(code)
        self.result = result


def default_project(client: Client, how: str = "pass -P/--project") -> str:
    """``$LOOPML_PROJECT`` if set, else the caller's only project (one request).

    :class:`~loopml.errors.InvalidInput` naming the choices when the caller has several
    projects, or saying so when it has none; ``how`` says how to name one.
    """
    if os.environ.get(PROJECT_ENV):
        return os.environ[PROJECT_ENV]
    names = client.project_names()
    if len(names) == 1:
        return names[0]
    if not names:
        raise InvalidInput(f"you are not a member of any project: ask a platform admin to add you, then {how}",
                           field="project")
    raise InvalidInput(f"you can use several projects ({', '.join(names)}): {how} or set {PROJECT_ENV}",
                       field="project", choices=names)


def fmt_time(value: dt.datetime | None) -> str | None:
    """Local time to the second, or ``None``."""
    if value is None:
        return None
    return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def short_value(value: Any, limit: int = 40) -> str:
    """A JSON value as one short text: strings as they are, the rest as compact JSON, cut at ``limit``."""
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def pairs(values: dict[str, Any], limit: int = 40) -> str:
    """``name=value, …`` with each value :func:`short_value`."""
    return ", ".join(f"{name}={short_value(value, limit)}" for name, value in values.items())
