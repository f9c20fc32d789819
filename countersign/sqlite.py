"""SQLite connections for the async engine: one trip to the connection's thread per statement.

aiosqlite runs each call on the connection's own thread and hands the result back to the event loop. Through
SQLAlchemy's adapter a ``SELECT`` is four such trips (open a cursor, execute, fetch, close), a ``BEGIN``
three, and returning a connection to the pool one more for a rollback, even after a commit. Each trip wakes
a thread and then the event loop (0.1–0.2 ms on a busy machine), so a request that runs three statements
spent most of its time in hand-overs: 22 of them for one inbox page. The connection here keeps aiosqlite's
thread and queue and SQLAlchemy's adapter, and changes only what a trip carries: a cursor's execute runs,
fetches and closes in one trip, and commit or rollback make no trip when no transaction is open.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import aiosqlite

Row = tuple[Any, ...]
Description = tuple[tuple[Any, ...], ...] | None


class Cursor:
    """The cursor SQLAlchemy's aiosqlite adapter drives: ``execute`` does the whole statement in one trip and
    keeps its rows; ``fetch*`` and ``close`` then need no trip."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection
        self.description: Description = None
        self.rowcount = -1
        self.lastrowid: int | None = None
        self.arraysize = 1
        self._rows: list[Row] = []

    async def execute(self, sql: str, parameters: Any = None) -> Cursor:
        """Run ``sql`` and keep its rows."""
        await self._run(lambda cur: cur.execute(sql, () if parameters is None else parameters))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> Cursor:
        """Run ``sql`` once per parameter set."""
        await self._run(lambda cur: cur.executemany(sql, parameters))
        return self

    async def _run(self, statement: Callable[[sqlite3.Cursor], object]) -> None:
        def run(raw: sqlite3.Connection) -> tuple[Description, list[Row], int, int | None]:
            cur = raw.cursor()
            try:
                statement(cur)
                rows = cur.fetchall() if cur.description else []
                return cur.description, rows, cur.rowcount, cur.lastrowid
            finally:
                cur.close()

        self.description, self._rows, self.rowcount, self.lastrowid = await self._connection.on_thread(run)

    async def fetchone(self) -> Row | None:
        """The next row, or None."""
        return self._rows.pop(0) if self._rows else None

    async def fetchmany(self, size: int | None = None) -> list[Row]:
        """Up to ``size`` rows (``arraysize`` by default)."""
        n = self.arraysize if size is None else size
        rows, self._rows = self._rows[:n], self._rows[n:]
        return rows

    async def fetchall(self) -> list[Row]:
        """The remaining rows."""
        rows, self._rows = self._rows, []
        return rows

    async def close(self) -> None:
        """Drop the rows (the driver's cursor was closed with the statement)."""
        self._rows = []


class Connection(aiosqlite.Connection):
    """An aiosqlite connection whose cursors take one trip per statement, and whose commit and rollback
    make no trip when no transaction is open or could be (a pooled connection is rolled back each time it
    is returned)."""

    OperationalError = sqlite3.OperationalError

    def __init__(self, connector: Callable[[], sqlite3.Connection], busy_timeout: float) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._thread.daemon = True  # as SQLAlchemy's adapter does: a stuck statement never blocks exit
        self._in_transaction = False
        # Trips queued (counted on the event loop) and finished (counted on the connection's thread): each
        # counter has one writer. While they differ, a trip may still open a transaction, even one whose
        # caller was cancelled and stopped waiting.
        self._queued = 0
        self._finished = 0
        self._busy_timeout_ms = int(busy_timeout * 1000)

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # Every trip goes through here (aiosqlite's own methods too), so the transaction state seen last on
        # the connection's thread is current once every queued trip has finished.
        def call() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                try:
                    self._in_transaction = self._conn.in_transaction
                except (ValueError, sqlite3.ProgrammingError):  # closed: no transaction
                    self._in_transaction = False
                self._finished += 1

        self._queued += 1
        return await super()._execute(call)  # type: ignore[no-untyped-call]

    def _surely_idle(self) -> bool:
        """No transaction open and none that a queued trip could still open."""
        return self._finished == self._queued and not self._in_transaction

    async def on_thread(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """``fn(connection)``, run on the connection's thread."""
        return await self._execute(lambda: fn(self._conn))

    async def begin(self) -> None:
        """``BEGIN`` (deferred: in WAL mode, a reader takes no lock)."""
        await self.on_thread(lambda raw: raw.execute("BEGIN"))

    async def begin_immediate_or_fail(self) -> None:
        """``BEGIN IMMEDIATE`` without waiting: raises ``OperationalError`` ("database is locked") at once
        when another connection holds the write lock, so the caller can wait for it without a thread
        sleeping."""

        def run(raw: sqlite3.Connection) -> None:
            raw.execute("PRAGMA busy_timeout=0")
            try:
                raw.execute("BEGIN IMMEDIATE")
            finally:
                raw.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")

        await self.on_thread(run)

    async def cursor(self) -> Cursor:  # type: ignore[override]
        """A cursor (no trip: it is opened on the thread with each statement)."""
        return Cursor(self)

    async def commit(self) -> None:
        """Commit the open transaction, if any (queued after every earlier trip)."""
        if not self._surely_idle():
            await super().commit()

    async def rollback(self) -> None:
        """Roll the open transaction back, if any (queued after every earlier trip)."""
        if not self._surely_idle():
            await super().rollback()


async def connect(database: str, *, busy_timeout: float) -> Connection:
    """A started connection to ``database`` that waits up to ``busy_timeout`` seconds for a lock."""
    connection = Connection(partial(sqlite3.connect, database, timeout=busy_timeout), busy_timeout)
    await connection
    return connection
