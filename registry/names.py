"""Registered model names: ``<project>.<name>``, validated with a reason for every refusal."""

from __future__ import annotations

import re

from loopml.errors import InvalidInput

SEPARATOR = "."
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_ALIAS = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
RESERVED_ALIASES = {"latest"}


def _why_not(name: str) -> str:
    if not name:
        return "it is empty"
    if "/" in name or "\\" in name:
        return "it contains a path separator"
    if ".." in name:
        return "it contains '..'"
    if any(ch.isspace() for ch in name):
        return "it contains whitespace"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in name):
        return "it contains a control character"
    if len(name) > 100:
        return "it is longer than 100 characters"
    return "use letters, digits, '-' and '_', starting with a letter or digit"


def short_name(project: str, name: str) -> str:
    """The model's name within ``project``: ``name`` itself, or ``name`` without the
    ``<project>.`` prefix. Another project's prefix, or an invalid name, is refused."""
    given = name
    if isinstance(name, str) and SEPARATOR in name and ".." not in name:
        prefix, _, rest = name.partition(SEPARATOR)
        if prefix != project:
            raise InvalidInput(
                f"model {name!r} belongs to project {prefix!r}, not {project!r}: models of this project are "
                f"named '{project}.<name>'",
                field="name",
            )
        name = rest
    if not isinstance(name, str) or not _MODEL.fullmatch(name):
        raise InvalidInput(f"invalid model name {given!r}: {_why_not(str(name))}", field="name")
    return name


def registered_name(project: str, name: str) -> str:
    """The MLflow registered model name ``<project>.<name>``."""
    return f"{project}{SEPARATOR}{short_name(project, name)}"


def check_alias(alias: str) -> str:
    if not isinstance(alias, str) or not _ALIAS.fullmatch(alias) or alias in RESERVED_ALIASES \
            or re.fullmatch(r"v\d+", alias):
        raise InvalidInput(
            f"invalid alias {alias!r}: use lowercase letters, digits, '-' and '_', starting with a letter "
            "('latest' and 'v<number>' are reserved by MLflow)",
            field="alias",
        )
    return alias
