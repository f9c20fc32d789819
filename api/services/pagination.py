"""Opaque keyset cursors over (created_at, id), newest first."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any

from sqlalchemy import Select, or_
from sqlalchemy.ext.asyncio import AsyncSession

from api.errors import Invalid

MAX_PAGE = 100


def encode(created_at: dt.datetime, row_id: str) -> str:
    """The cursor that continues after this row."""
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


async def fetch(
    s: AsyncSession, query: Select[Any], cursor: str | None, created_col: Any, id_col: Any, limit: int
) -> tuple[list[Any], str | None]:
    """One page of ``query`` after ``cursor`` (newest first), and the cursor of the next page, if any."""
    rows = list((await s.scalars(after(query, cursor, created_col, id_col).limit(limit + 1))).all())
    page = rows[:limit]
    more = len(rows) > limit and bool(page)
    return page, encode(getattr(page[-1], created_col.key), getattr(page[-1], id_col.key)) if more else None


def after(query: Select[Any], cursor: str | None, created_col: Any, id_col: Any) -> Select[Any]:
    """Restrict ``query`` to rows after ``cursor`` in (created_at desc, id desc) order."""
    query = query.order_by(created_col.desc(), id_col.desc())
    if not cursor:
        return query
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        stamp, row_id = json.loads(base64.urlsafe_b64decode(padded))
        created = dt.datetime.fromisoformat(stamp)
    except (ValueError, TypeError) as e:
        raise Invalid("cursor: not a cursor this API returned") from e
    return query.where(or_(created_col < created, (created_col == created) & (id_col < str(row_id))))
