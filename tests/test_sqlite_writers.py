"""SQLite's one-writer discipline: a writer waits for another process's lock without blocking its loop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

import countersign.db
from countersign.db import dispose, make_engine, read_only, session_factory


async def _setup(path: Path) -> str:
    url = f"sqlite+aiosqlite:///{path}"
    engine = make_engine(url)
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (n INTEGER)"))
    await engine.dispose()
    return url


async def test_a_writer_waits_for_the_lock_and_readers_do_not(tmp_path: Path) -> None:
    url = await _setup(tmp_path / "w.db")
    # Two engines: two connections, as two processes would have.
    holder, waiter = make_engine(url), make_engine(url)
    try:
        held, release = asyncio.Event(), asyncio.Event()

        async def hold() -> None:
            async with holder.begin() as conn:
                await conn.execute(text("INSERT INTO t VALUES (1)"))
                held.set()
                await release.wait()

        task = asyncio.create_task(hold())
        await held.wait()
        write = asyncio.create_task(_write(session_factory(waiter), 2))
        # The reader's deferred BEGIN takes no lock: it reads (the committed state) while the writer waits.
        async with read_only(session_factory(waiter))() as s:
            assert (await s.scalar(text("SELECT count(*) FROM t"))) == 0
        assert not write.done()
        release.set()
        await task
        await write
        async with session_factory(waiter)() as s:
            assert list((await s.scalars(text("SELECT n FROM t ORDER BY n"))).all()) == [1, 2]
    finally:
        await holder.dispose()
        await waiter.dispose()


async def test_reads_do_not_queue_behind_the_process_own_writer_and_cannot_write(tmp_path: Path) -> None:
    url = await _setup(tmp_path / "r.db")
    engine = make_engine(url)
    sessions = session_factory(engine)
    reads = read_only(sessions)
    try:
        async with sessions() as w, w.begin():
            # The engine's one writer connection is in a write transaction: a read goes beside it.
            await w.execute(text("INSERT INTO t VALUES (1)"))
            async with reads() as r:
                assert (await r.scalar(text("SELECT count(*) FROM t"))) == 0
        async with reads() as r:
            assert (await r.scalar(text("SELECT count(*) FROM t"))) == 1
            with pytest.raises(OperationalError, match="readonly"):
                await r.execute(text("INSERT INTO t VALUES (2)"))
        assert read_only(sessions).kw["bind"] is reads.kw["bind"]  # one reader engine per engine
    finally:
        await dispose(engine)


async def test_a_writer_that_cannot_get_the_lock_fails_as_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(countersign.db, "SQLITE_BUSY_TIMEOUT_SECONDS", 0.2)
    url = await _setup(tmp_path / "b.db")
    holder, waiter = make_engine(url), make_engine(url)
    try:
        async with holder.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))
            with pytest.raises(OperationalError, match="locked"):
                await _write(session_factory(waiter), 2)
        # Once the lock is free the same engine writes again: the failed attempt left nothing open.
        await _write(session_factory(waiter), 3)
    finally:
        await holder.dispose()
        await waiter.dispose()


async def _write(sessions: async_sessionmaker[AsyncSession], n: int) -> None:
    async with sessions() as s, s.begin():
        await s.execute(text("INSERT INTO t VALUES (:n)"), {"n": n})
