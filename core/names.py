"""Validation of names that users give (projects, schedules, endpoints, custom resources...)."""

from __future__ import annotations

import re

from loopml.errors import InvalidInput

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_RESOURCE_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")
_RESERVED_RESOURCES = {"CPU", "GPU", "memory", "object_store_memory"}


def check_name(kind: str, value: str) -> str:
    """``value`` if it is a valid ``kind`` name, else :class:`InvalidInput` saying what is allowed."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise InvalidInput(
            f"invalid {kind} name {value!r}: use 1-40 characters, lowercase letters, digits, '-' or '_', "
            "starting with a letter",
            field=kind,
        )
    return value


def check_custom_resources(value: dict[str, float]) -> dict[str, float]:
    """``value`` if it maps valid custom Ray resource names to positive amounts (a job's
    ``resources.custom``, an endpoint replica's ``resources.custom``), else ``ValueError``
    naming the resource and what is allowed (for pydantic validators, which report the field)."""
    for name, amount in value.items():
        if not _RESOURCE_NAME.fullmatch(name) or name in _RESERVED_RESOURCES:
            raise ValueError(f"invalid custom resource name {name!r}: use letters, digits, '_', '.', ':' or '-', "
                             f"starting with a letter, and none of {', '.join(sorted(_RESERVED_RESOURCES))}")
        if not amount > 0:
            raise ValueError(f"custom resource {name!r} must be a positive amount")
    return value
