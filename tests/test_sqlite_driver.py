"""The SQLite connection under the async engine: one trip to its thread per statement (a BEGIN travelling with
the first, pipelined writes not waited for), else unchanged."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import column, insert, table, text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from countersign import sqlite
from countersign.db import PIPELINE, make_engine, read_only, session_factory


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(f"sqlite+aiosqlite:///{tmp_path / 'd.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
    yield engine
    await engine.dispose()


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The name of each function sent to a connection's thread."""
    seen: list[str] = []
    original = sqlite.Connection._execute

    async def counted(self: sqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(getattr(fn, "__qualname__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(sqlite.Connection, "_execute", counted)
    return seen


async def test_a_statement_is_one_trip_and_a_read_transaction_one(
    engine: AsyncEngine, trips: list[str]
) -> None:
    async with read_only(session_factory(engine))() as s:
        await s.connection()  # checked out and begun before counting: the pool's first connect is not counted
        trips.clear()
        assert (await s.scalar(text("SELECT count(*) FROM t"))) == 0
        assert len(trips) == 1
    # The BEGIN goes with the statement, and a reader's transaction ends without anyone waiting for it.
    trips.clear()
    async with read_only(session_factory(engine))() as s, s.begin():
        await s.execute(text("SELECT 1"))
    assert len(trips) == 1, trips


async def test_a_reader_transaction_that_ended_unwaited_sees_later_writes(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'r.db'}"
    writer, reader = make_engine(url), make_engine(url, readers=1)  # one reader connection: reused below
    try:
        async with writer.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
        reads = session_factory(reader)
        async with reads() as s:
            assert (await s.scalar(text("SELECT count(*) FROM t"))) == 0
        async with writer.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        # Had the first read's transaction stayed open, its snapshot would still show no row.
        async with reads() as s:
            assert (await s.scalar(text("SELECT count(*) FROM t"))) == 1
            # A write on a reader is never pipelined: it fails where it stands, not silently at the end.
            with pytest.raises(OperationalError, match="readonly"):
                await s.execute(text("INSERT INTO t VALUES (2)").execution_options(**PIPELINE))
    finally:
        await writer.dispose()
        await reader.dispose()


async def test_rows_counts_and_ids_come_back_as_from_the_driver(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        first = await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
        assert first.lastrowid == 1
        await conn.execute(text("INSERT INTO t (name) VALUES (:n)"), [{"n": "b"}, {"n": "c"}])
        changed = await conn.execute(text("UPDATE t SET name = name || '!' WHERE id > 1"))
        assert changed.rowcount == 2
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT id, name FROM t ORDER BY id"))).all()
        assert [tuple(r) for r in rows] == [(1, "a"), (2, "b!"), (3, "c!")]
        assert (await conn.execute(text("SELECT name FROM t WHERE id = 9"))).first() is None


async def test_a_failed_statement_raises_as_sqlalchemy_reports_it(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.begin()
        await conn.execute(text("INSERT INTO t (name) VALUES ('x')"))
        with pytest.raises(IntegrityError):
            await conn.execute(text("INSERT INTO t (name) VALUES ('x')"))
        await conn.rollback()
        with pytest.raises(OperationalError, match="no such table"):
            await conn.execute(text("SELECT * FROM missing"))
    async with engine.connect() as conn:
        assert (await conn.scalar(text("SELECT count(*) FROM t"))) == 0
    # The connection went back to the pool with no transaction open: another writer gets the lock.
    async with engine.begin() as conn:
        await conn.execute(text("INSERT INTO t (name) VALUES ('y')"))


async def test_a_rollback_behind_a_begin_still_queued_is_not_skipped(tmp_path: Path) -> None:
    # A caller cancelled while its BEGIN waits in the queue: the BEGIN still runs, and the rollback that
    # returns the connection to the pool must run after it, not be skipped as "no transaction open".
    conn = await sqlite.connect(str(tmp_path / "q.db"), busy_timeout=1)
    try:
        begun = asyncio.ensure_future(conn.on_thread(lambda raw: raw.execute("BEGIN")))
        await asyncio.sleep(0)  # the BEGIN is queued; its caller is not resumed before the rollback
        await conn.rollback()
        await begun
        assert not await conn.on_thread(lambda raw: raw.in_transaction)
        # Would fail "cannot start a transaction within a transaction" had the rollback been skipped.
        await conn.on_thread(lambda raw: raw.execute("BEGIN"))
        await conn.rollback()
    finally:
        await conn.close()


T = table("t", column("id"), column("name"))


async def test_pipelined_writes_are_not_waited_for_and_land_in_order(
    engine: AsyncEngine, trips: list[str]
) -> None:
    waited: list[str] = []
    original = sqlite.Connection.on_thread_in_transaction

    async def counted(self: sqlite.Connection, fn: Any) -> Any:
        waited.append("statement")
        return await original(self, fn)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sqlite.Connection, "on_thread_in_transaction", counted)
        async with session_factory(engine)() as s, s.begin():
            await s.execute(insert(T).values(name="a"))  # carries the BEGIN IMMEDIATE: waited for
            await s.execute(insert(T).execution_options(**PIPELINE), [{"name": "b"}, {"name": "c"}])
            mark = text("UPDATE t SET name = name || '!' WHERE id > 1")
            await s.execute(mark.execution_options(**PIPELINE))
            # A read sees the pipelined writes: they ran before it on the connection's thread.
            assert list((await s.scalars(text("SELECT name FROM t ORDER BY id"))).all()) == ["a", "b!", "c!"]
    assert waited == ["statement", "statement"]
    async with engine.connect() as conn:
        assert (await conn.scalar(text("SELECT count(*) FROM t"))) == 3


async def test_a_failed_pipelined_write_fails_the_commit_and_nothing_lands(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(insert(T).values(name="taken"))

    async def fails_unseen_then_more() -> None:
        async with session_factory(engine)() as s, s.begin():
            await s.execute(insert(T).values(name="first"))
            await s.execute(insert(T).values(name="taken").execution_options(**PIPELINE))  # fails, unseen
            await s.execute(insert(T).values(name="after").execution_options(**PIPELINE))  # not run

    async def fails_then_reads() -> None:
        async with session_factory(engine)() as s, s.begin():
            await s.execute(insert(T).values(name="taken").execution_options(**PIPELINE))
            await s.execute(text("SELECT 1"))  # the next statement raises the pipelined one's error

    with pytest.raises(IntegrityError):
        await fails_unseen_then_more()  # the commit raises it
    with pytest.raises(IntegrityError):
        await fails_then_reads()
    async with engine.connect() as conn:
        assert list((await conn.scalars(text("SELECT name FROM t"))).all()) == ["taken"]
    # The connection was rolled back and is clean: the next transaction commits.
    async with session_factory(engine)() as s, s.begin():
        await s.execute(insert(T).values(name="next").execution_options(**PIPELINE))
    async with engine.connect() as conn:
        assert (await conn.scalar(text("SELECT count(*) FROM t"))) == 2


async def test_a_write_that_reads_back_or_begins_is_never_pipelined(engine: AsyncEngine) -> None:
    async with session_factory(engine)() as s, s.begin():
        # The first statement carries the BEGIN (it may have to wait for the lock): waited for, ids known.
        first = await s.execute(insert(T).values(name="a").execution_options(**PIPELINE))
        assert first.lastrowid == 1
        back = await s.execute(insert(T).values(name="b").returning(T.c.id).execution_options(**PIPELINE))
        assert back.scalar_one() == 2


async def test_a_failed_pipelined_write_fails_the_commit_even_when_sqlite_ended_the_transaction(
    tmp_path: Path,
) -> None:
    # Some errors (a full disk, say) make SQLite roll the transaction back itself: the commit then finds no
    # transaction open, and must still raise rather than report writes that did not land.
    conn = await sqlite.connect(str(tmp_path / "f.db"), busy_timeout=1)
    try:
        await conn.on_thread(lambda raw: raw.execute("CREATE TABLE t (n INTEGER)"))
        conn.begin_lazily(immediate=True)
        await conn.on_thread_in_transaction(lambda raw: raw.execute("INSERT INTO t VALUES (1)"))

        def fails_and_ends_the_transaction(raw: sqlite3.Connection) -> None:
            raw.rollback()
            raise sqlite3.OperationalError("database or disk is full")

        conn.enqueue(fails_and_ends_the_transaction)
        with pytest.raises(sqlite3.OperationalError, match="full"):
            await conn.commit()
        await conn.rollback()  # nothing open, nothing raised: the connection is clean again
        conn.begin_lazily(immediate=True)
        await conn.on_thread_in_transaction(lambda raw: raw.execute("INSERT INTO t VALUES (2)"))
        await conn.commit()
        assert await conn.on_thread(lambda raw: raw.execute("SELECT n FROM t").fetchall()) == [(2,)]
    finally:
        await conn.close()
