"""Argument checks shared by the SeqDep modules."""

from __future__ import annotations

from typing import Any


def check_int(value: Any, name: str, minimum: int = 1, allow_none: bool = False) -> None:
    """Raise a ValueError naming ``name`` unless ``value`` is an int >= ``minimum`` (or None if allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"`{name}` must be an int >= {minimum}{' or None' if allow_none else ''}, got {value!r}."
        )
