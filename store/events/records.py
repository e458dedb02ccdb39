"""What the event store takes and hands back, and how a row becomes one of these dataclasses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any, TypeVar


@dataclass(frozen=True)
class NewEvent:
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RecordedEvent:
    position: int
    stream_id: str
    version: int
    type: str
    data: dict[str, Any]
    metadata: dict[str, Any]
    recorded_at: datetime


@dataclass(frozen=True)
class AppendResult:
    stream_id: str
    first_position: int
    last_position: int
    version: int
    recorded_at: datetime
    duplicate: bool


@dataclass(frozen=True)
class Claim:
    stream_id: str
    position: int


T = TypeVar("T")


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def field_names(cls: type) -> tuple[str, ...]:
    """A dataclass's field names, in order: the columns a read selects to build it."""
    names = _FIELD_NAMES.get(cls)
    if names is None:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls))
    return names


def from_row(cls: type[T], row: Sequence[Any]) -> T:
    """The frozen dataclass `cls` from a row holding its fields in order (see field_names).

    The generated __init__ of a frozen dataclass sets each field with object.__setattr__, at
    eight times the cost of the assignment this is; the reads build one per row.
    """
    obj = object.__new__(cls)
    obj.__dict__.update(zip(field_names(cls), row, strict=True))
    return obj
