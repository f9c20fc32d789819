"""Database engine, session factory and the declarative base shared by every ORM model."""

from __future__ import annotations

import datetime as dt
import functools
import weakref
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, ColumnDefault, DateTime, MetaData, Table, TextClause, bindparam, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from countersign import sqlite

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware UTC timestamp on every backend (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(dt.UTC)

    def process_result_value(self, value: dt.datetime | None, dialect: object) -> dt.datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    """Declarative base of Countersign's own tables (migrated by Alembic)."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {
        dict[str, Any]: JSON,
        list[str]: JSON,
        list[dict[str, Any]]: JSON,
        dt.datetime: UTCDateTime,
    }


def utcnow() -> dt.datetime:
    """Now, in UTC (for database rows; workflows use ``workflow.now()``)."""
    return dt.datetime.now(dt.UTC)


# Shorter than every activity's timeout, so a writer that cannot get the lock fails (and is retried) rather
# than outliving the activity that waits for it.
SQLITE_BUSY_TIMEOUT_SECONDS = 5.0
SQLITE_LOCK_POLL_SECONDS = 0.002


async def insert_ignore(
    db: AsyncSession | AsyncConnection,
    model: Any,
    keys: Sequence[str],
    rows: dict[str, Any] | list[dict[str, Any]],
    *,
    pipelined: bool = False,
) -> int:
    """``INSERT ... ON CONFLICT (keys) DO NOTHING`` of ``rows`` (one dict, or a list for an executemany) into
    the model's table, on PostgreSQL or SQLite; returns how many rows were inserted. Columns a row leaves out
    get their Python-side defaults, as an ORM insert would give them. ``pipelined`` (see ``PIPELINED``): the
    count may then be unknown (-1).

    The dialects' own ON CONFLICT constructs are not in SQLAlchemy's statement cache (each execution compiles
    afresh, about 0.2 ms, on SQLite while holding the write lock), so the statement is text (the syntax is
    the same on both), built once per table and set of columns, with typed parameters.
    """
    table: Table = getattr(model, "__table__", model)
    many = rows if isinstance(rows, list) else [rows]
    filled = [_with_defaults(table, r) for r in many]
    stmt = _insert_ignore(table, tuple(keys), tuple(filled[0]))
    if pipelined:
        stmt = stmt.execution_options(**PIPELINE)
    result = await db.execute(stmt, filled if isinstance(rows, list) else filled[0])
    return int(result.rowcount)  # type: ignore[attr-defined]


def _with_defaults(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for column in table.columns:
        default = column.default
        if column.key in out or not isinstance(default, ColumnDefault) or default.is_clause_element:
            continue  # given, none, or a SQL expression (none of our tables has one): left out
        # SQLAlchemy wraps a default callable to take an execution context; ours take none.
        out[column.key] = default.arg(None) if default.is_callable else default.arg  # type: ignore[arg-type]
    return out


@functools.lru_cache(maxsize=64)
def _insert_ignore(table: Table, keys: tuple[str, ...], columns: tuple[str, ...]) -> TextClause:
    def name(key: str) -> str:
        return '"' + table.c[key].name + '"'

    names, values = ", ".join(name(c) for c in columns), ", ".join(":" + c for c in columns)
    target = ", ".join(name(k) for k in keys)
    sql = f'INSERT INTO "{table.name}" ({names}) VALUES ({values}) ON CONFLICT ({target}) DO NOTHING'
    return text(sql).bindparams(*(bindparam(c, type_=table.c[c].type) for c in columns))


def make_engine(url: str, *, readers: int = 0) -> AsyncEngine:
    """An async engine. SQLite gets its folder, WAL, a busy timeout and one writer at a time.

    SQLite allows one writer per file. A deferred transaction that reads and then writes cannot wait for
    the lock (it fails at once with "database is locked" when another writer committed meanwhile), so
    every transaction starts with ``BEGIN IMMEDIATE`` and waits for the lock up front, up to the busy
    timeout. Within a process, the pool's single connection queues transactions on the event loop (no
    thread spins on the lock): the one-writer discipline SQLite needs. Other processes wait through the
    busy timeout.

    ``readers`` > 0 makes, for a SQLite file, an engine for reads only (see ``read_only``): that many
    connections, each transaction deferred (in WAL mode a reader takes no lock and waits for no writer),
    and a write through it fails (``query_only``).
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)
    memory = not parsed.database or parsed.database == ":memory:"
    if not memory:
        Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)
    size = max(1, readers)
    pool: dict[str, Any] = {} if memory else {"pool_size": size, "max_overflow": 0, "pool_timeout": 60}
    database = ":memory:" if memory else str(parsed.database)

    async def connect() -> Any:
        return await sqlite.connect(
            database, busy_timeout=SQLITE_BUSY_TIMEOUT_SECONDS, lock_poll=SQLITE_LOCK_POLL_SECONDS
        )

    engine = create_async_engine(url, async_creator=connect, **pool)

    @event.listens_for(engine.sync_engine, "connect")
    def _pragmas(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        # The driver must not open transactions on its own: we emit BEGIN IMMEDIATE ourselves.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        if readers:
            cur.execute("PRAGMA query_only=ON")
            dbapi_conn.driver_connection.reads_only()
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn):  # type: ignore[no-untyped-def]
        # Sent with the transaction's first statement (one trip fewer), and not through
        # conn.exec_driver_sql: it is not the application's statement, and would otherwise go through
        # SQLAlchemy's execution events (a traced span per statement).
        driver: sqlite.Connection = conn.connection.driver_connection
        # Read-only sessions (``read_only``) begin deferred: in WAL mode a reader takes no lock at all.
        driver.begin_lazily(immediate=not (readers or conn.get_execution_options().get(READ_ONLY)))

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _pipeline(conn, cursor, statement, parameters, context, executemany):  # type: ignore[no-untyped-def]
        if context is not None and context.execution_options.get(PIPELINED):
            conn.connection.driver_connection.pipeline_next()

    return engine


READ_ONLY = "countersign_read_only"


def locks_on_begin(session: AsyncSession) -> bool:
    """Whether the session's database takes its one write lock when a write transaction begins (SQLite): the
    order of the transaction's writes then does not change how long others wait for it. Elsewhere a row is
    locked where it is first written, and what comes after holds it longer."""
    return session.get_bind().dialect.name == "sqlite"


# An execution option for writes whose result nobody reads (no row count, no RETURNING): on SQLite they are
# sent without waiting for them (see ``countersign.sqlite``), so a transaction holds the write lock for fewer
# trips; elsewhere it changes nothing. ``stmt.execution_options(**PIPELINE)``.
PIPELINED = "countersign_pipelined"
PIPELINE = {PIPELINED: True}


# Connections of a SQLite file's reader engine: reads run beside the one writer, not queued behind it.
SQLITE_READERS = 4
_readers: weakref.WeakKeyDictionary[AsyncEngine, AsyncEngine] = weakref.WeakKeyDictionary()


def read_only(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """Sessions for reads only; elsewhere than on SQLite, the same sessions.

    On a SQLite file they come from a reader engine of their own (made once per engine, disposed with it by
    ``dispose``): they begin deferred and take no lock, so a read neither waits for the process's one
    writer connection nor for another process's write lock, and a write through them fails.
    """
    engine: AsyncEngine = sessions.kw["bind"]
    url = engine.url
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return session_factory(engine.execution_options(**{READ_ONLY: True}))
    reader = _readers.get(engine)
    if reader is None:
        reader = _readers[engine] = make_engine(
            url.render_as_string(hide_password=False), readers=SQLITE_READERS
        )
    return session_factory(reader)


async def dispose(engine: AsyncEngine) -> None:
    """Close the engine's connections, and those of its reader engine if ``read_only`` made one."""
    reader = _readers.pop(engine, None)
    if reader is not None:
        await reader.dispose()
    await engine.dispose()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded attributes after commit (responses are built after the commit)."""
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One unit of work: commits when the block succeeds, rolls back when it raises."""
    async with sessions() as session, session.begin():
        yield session
