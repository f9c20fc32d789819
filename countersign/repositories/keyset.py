"""Keyset paging over (created_at, id), newest first: the one query shape every paged listing shares."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, or_
from sqlalchemy.ext.asyncio import AsyncSession

# The (created_at, id) of the last row a page showed; the next page starts after it.
After = tuple[dt.datetime, str]


async def newest_first(
    s: AsyncSession, query: Select[Any], created_col: Any, id_col: Any, after: After | None, limit: int
) -> list[Any]:
    """Up to ``limit`` rows of ``query`` in (created_at desc, id desc) order, after the row ``after``."""
    query = query.order_by(created_col.desc(), id_col.desc())
    if after is not None:
        created, row_id = after
        query = query.where(or_(created_col < created, (created_col == created) & (id_col < row_id)))
    return list((await s.scalars(query.limit(limit))).all())
