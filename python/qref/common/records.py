"""Small helpers shared by the report classes (check, campaign, pt2e)."""

from __future__ import annotations

from typing import Any, Iterable


def find_named(items: Iterable[Any], name: str) -> Any:
    """The first item whose ``.name`` is ``name``; ``KeyError(name)`` if there is none."""
    for item in items:
        if item.name == name:
            return item
    raise KeyError(name)
