"""Opaque keyset cursors over (created_at, id), newest first; the query itself is
``countersign.repositories.keyset``."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any, TypeVar

from api.errors import Invalid
from countersign.repositories.keyset import After

MAX_PAGE = 100
T = TypeVar("T")


def encode(created_at: dt.datetime, row_id: str) -> str:
    """The cursor that continues after this row."""
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str | None) -> After | None:
    """The (created_at, id) a cursor this API returned continues after; None for the first page."""
    if not cursor:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        stamp, row_id = json.loads(base64.urlsafe_b64decode(padded))
        created = dt.datetime.fromisoformat(stamp)
    except (ValueError, TypeError) as e:
        raise Invalid("cursor: not a cursor this API returned") from e
    return created, str(row_id)


def page(rows: list[T], limit: int) -> tuple[list[T], str | None]:
    """The page of ``rows`` (fetched with ``limit + 1``, newest first), and the cursor of the next page."""
    shown = rows[:limit]
    more = len(rows) > limit and bool(shown)
    last: Any = shown[-1] if more else None
    return shown, encode(last.created_at, last.id) if more else None
