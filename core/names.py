"""Validation of names that users give (projects, schedules, endpoints...)."""

from __future__ import annotations

import re

from loopml.errors import InvalidInput

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def check_name(kind: str, value: str) -> str:
    """``value`` if it is a valid ``kind`` name, else :class:`InvalidInput` saying what is allowed."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidInput(
            f"invalid {kind} name {value!r}: use 1-40 characters, lowercase letters, digits, '-' or '_', "
            "starting with a letter",
            field=kind,
        )
    return value
