"""Paging of the REST routes that list: every one takes ``limit`` and ``offset`` and answers
at most ``limit`` items, so no answer grows with what a project has accumulated.

The answer stays a plain JSON list (clients and the CLI read it as before); a caller pages by
asking again with ``offset`` moved on by ``limit`` until fewer than ``limit`` items come back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Query

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_OFFSET = 1_000_000

T = TypeVar("T")


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int

    def of(self, items: Sequence[T]) -> list[T]:
        """The page's window of ``items`` (already in the route's order)."""
        return list(items[self.offset:self.offset + self.limit])


def page(limit: int = Query(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT, description=f"Most items to return (at most {MAX_LIMIT})."),
         offset: int = Query(0, ge=0, le=MAX_OFFSET, description="Items to skip first: page on by adding limit.")) -> Page:
    """FastAPI dependency of every listing route: its ``limit`` and ``offset`` query parameters."""
    return Page(limit, offset)
