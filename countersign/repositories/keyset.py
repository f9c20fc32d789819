"""Keyset paging over (created_at, id), newest first: the one query shape every paged listing shares."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Select, bindparam, or_
from sqlalchemy.ext.asyncio import AsyncSession

# The (created_at, id) of the last row a page showed; the next page starts after it.
After = tuple[dt.datetime, str]


def newest_first_query(query: Select[Any], created_col: Any, id_col: Any, *, after: bool) -> Select[Any]:
    """``query`` in (created_at desc, id desc) order, ``:limit`` rows, after the row (``:after_created``,
    ``:after_id``) when ``after``: a statement that can be built once and run with ``page_params``."""
    query = query.order_by(created_col.desc(), id_col.desc())
    if after:
        created: Any = bindparam("after_created")
        row_id: Any = bindparam("after_id")
        query = query.where(or_(created_col < created, (created_col == created) & (id_col < row_id)))
    return query.limit(bindparam("limit"))


def page_params(after: After | None, limit: int) -> dict[str, Any]:
    """The parameters of a ``newest_first_query`` statement."""
    params: dict[str, Any] = {"limit": limit}
    if after is not None:
        params["after_created"], params["after_id"] = after
    return params


async def newest_first(
    s: AsyncSession,
    query: Select[Any],
    created_col: Any,
    id_col: Any,
    after: After | None,
    limit: int,
) -> list[Any]:
    """Up to ``limit`` rows of ``query`` in (created_at desc, id desc) order, after the row ``after``."""
    statement = newest_first_query(query, created_col, id_col, after=after is not None)
    return list((await s.scalars(statement, page_params(after, limit))).all())
