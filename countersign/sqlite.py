"""SQLite connections for the async engine: one trip to the connection's thread per statement.

aiosqlite runs each call on the connection's own thread and hands the result back to the event loop. Through
SQLAlchemy's adapter a ``SELECT`` is four such trips (open a cursor, execute, fetch, close), a ``BEGIN``
three, and returning a connection to the pool one more for a rollback, even after a commit. Each trip wakes
a thread and then the event loop (0.1–0.2 ms on a busy machine), so a request that runs three statements
spent most of its time in hand-overs: 22 of them for one inbox page. The connection here keeps aiosqlite's
thread and queue and SQLAlchemy's adapter, and changes only what a trip carries: a cursor's execute runs,
fetches and closes in one trip, and commit or rollback make no trip when no transaction is open.

Two more trips are saved where a writer holds SQLite's one write lock, since every trip then keeps every other
writer (the API, the worker) waiting while the event loop gets round to the next statement: a transaction's
``BEGIN`` travels with its first statement, and a write whose result nobody reads (an insert of ledger events,
say) can be *pipelined*: queued behind the statements before it without waiting for it. A pipelined statement
that fails makes every later statement of its transaction, and its commit, raise its error, so the transaction
is rolled back as if the statement had failed where it stood.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
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
        await self._run(sql, lambda cur: cur.execute(sql, () if parameters is None else parameters))
        return self

    async def executemany(self, sql: str, parameters: Iterable[Any]) -> Cursor:
        """Run ``sql`` once per parameter set."""
        await self._run(sql, lambda cur: cur.executemany(sql, parameters))
        return self

    async def _run(self, sql: str, statement: Callable[[sqlite3.Cursor], object]) -> None:
        connection = self._connection

        def run(raw: sqlite3.Connection) -> tuple[Description, list[Row], int, int | None]:
            cur = raw.cursor()
            try:
                statement(cur)
                rows = cur.fetchall() if cur.description else []
                return cur.description, rows, cur.rowcount, cur.lastrowid
            finally:
                cur.close()

        if connection.pipelines(sql):
            connection.enqueue(run)
            self.description, self._rows, self.rowcount, self.lastrowid = None, [], -1, None
            return
        result = await connection.on_thread_in_transaction(run)
        self.description, self._rows, self.rowcount, self.lastrowid = result

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

    def __init__(
        self, connector: Callable[[], sqlite3.Connection], busy_timeout: float, lock_poll: float
    ) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._thread.daemon = True  # as SQLAlchemy's adapter does: a stuck statement never blocks exit
        self._in_transaction = False
        # The BEGIN (or BEGIN IMMEDIATE) of a transaction with no statement yet: it goes with the first.
        self._pending_begin: str | None = None
        self._pipeline_next = False
        # Set on the connection's thread when a pipelined statement fails; cleared there by a rollback.
        self._pipelined_error: BaseException | None = None
        self._lock_poll = lock_poll
        self._reads_only = False
        # Trips queued (counted on the event loop) and finished (counted on the connection's thread): each
        # counter has one writer. While they differ, a trip may still open a transaction, even one whose
        # caller was cancelled and stopped waiting.
        self._queued = 0
        self._finished = 0
        self._busy_timeout_ms = int(busy_timeout * 1000)

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        # Every trip goes through here (aiosqlite's own methods too) or through ``enqueue``, so the
        # transaction state seen last on the connection's thread is current once every queued trip has
        # finished.
        self._queued += 1
        return await super()._execute(self._call, fn, args, kwargs)  # type: ignore[no-untyped-call]

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # On the connection's thread.
        try:
            return fn(*args, **kwargs)
        finally:
            try:
                self._in_transaction = self._conn.in_transaction
            except (ValueError, sqlite3.ProgrammingError):  # closed: no transaction
                self._in_transaction = False
            self._finished += 1

    def _surely_idle(self) -> bool:
        """No transaction open and none that a queued trip could still open."""
        return self._finished == self._queued and not self._in_transaction

    async def on_thread(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """``fn(connection)``, run on the connection's thread."""
        return await self._execute(lambda: fn(self._conn))

    def reads_only(self) -> None:
        """Mark the connection as one that never writes (``PRAGMA query_only``): its transactions then end
        without waiting (a reader's commit cannot fail, and the next statement queues behind it anyway), so
        a read costs one trip per statement and none for its end."""
        self._reads_only = True

    def begin_lazily(self, *, immediate: bool) -> None:
        """Begin a transaction with the next statement, in the same trip. ``immediate``: ``BEGIN IMMEDIATE``,
        which takes the write lock up front; the statement waits for it (see ``on_thread_in_transaction``)."""
        self._pending_begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    def pipeline_next(self) -> None:
        """Let the next statement be pipelined, if it can be (see ``pipelines``)."""
        self._pipeline_next = True

    def pipelines(self, sql: str) -> bool:
        """Whether ``sql``, the statement about to run, is sent without waiting for it: when it was allowed
        (``pipeline_next``), the connection may write, a transaction is already open (a BEGIN may have to
        wait for the lock) and nothing is read back from it."""
        allowed, self._pipeline_next = self._pipeline_next, False
        # Never on a reader: a write there must fail where it stands, not be dropped with the reader's end.
        waits = self._reads_only or self._pending_begin is not None or "RETURNING" in sql.upper()
        return allowed and not waits

    def enqueue(self, fn: Callable[[sqlite3.Connection], Any]) -> None:
        """Queue ``fn(connection)`` on the connection's thread without waiting for it. Its error, if any, is
        raised by the transaction's next statement or its commit."""

        def call() -> None:
            if self._pipelined_error is not None:
                return
            try:
                fn(self._conn)
            except BaseException as e:  # noqa: BLE001 - re-raised by the transaction's next trip
                self._pipelined_error = e

        self._send(call)

    def _send(self, fn: Callable[[], Any]) -> None:
        # A trip nobody waits for: no future, so aiosqlite's thread only runs it.
        self._queued += 1
        self._tx.put_nowait((None, partial(self._call, fn, (), {})))

    async def on_thread_in_transaction(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        """``fn(connection)`` on the connection's thread, after the pending BEGIN if there is one.

        ``BEGIN IMMEDIATE`` is tried without waiting: when another connection holds the write lock the trip
        comes back at once and is tried again after a short sleep on the event loop, up to the busy timeout.
        SQLite's own busy handler would sleep ever longer (up to 100 ms) on the thread, so a process whose
        writer is busy would keep the lock from one transaction to the next while the other slept.
        """
        begin, self._pending_begin = self._pending_begin, None
        if begin is None:
            return await self._execute(lambda: self._statement(fn))
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            try:
                return await self._execute(lambda: self._statement(fn, begin))
            except _Locked as e:
                if time.monotonic() > deadline:
                    raise sqlite3.OperationalError(f"{begin}: database is locked") from e.__cause__
            await asyncio.sleep(self._lock_poll)

    def _statement(self, fn: Callable[[sqlite3.Connection], Any], begin: str | None = None) -> Any:
        # On the connection's thread.
        if self._pipelined_error is not None:
            raise self._pipelined_error
        raw = self._conn
        if begin == "BEGIN IMMEDIATE":
            raw.execute("PRAGMA busy_timeout=0")
            try:
                raw.execute(begin)
            except sqlite3.OperationalError as e:
                if "locked" not in str(e):
                    raise
                raise _Locked from e
            finally:
                raw.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        elif begin is not None:
            raw.execute(begin)
        return fn(raw)

    async def cursor(self) -> Cursor:  # type: ignore[override]
        """A cursor (no trip: it is opened on the thread with each statement)."""
        return Cursor(self)

    async def commit(self) -> None:
        """Commit the open transaction, if any (queued after every earlier trip); a pipelined statement's
        error is raised instead."""
        self._pending_begin = None
        if self._reads_only:
            self._end_without_waiting()
        elif not self._surely_idle():
            await self._execute(self._commit_on_thread)
        elif (failed := self._take_pipelined_error()) is not None:
            # SQLite ended the transaction itself when the statement failed (it does on some errors): there
            # is nothing to commit, and the caller must not think its writes landed.
            raise failed

    async def rollback(self) -> None:
        """Roll the open transaction back, if any (queued after every earlier trip)."""
        self._pending_begin = None
        if self._reads_only:
            self._end_without_waiting()
        elif not self._surely_idle():
            await self._execute(self._rollback_on_thread)
        else:
            self._take_pipelined_error()

    def _end_without_waiting(self) -> None:
        if not self._surely_idle():
            self._send(self._rollback_on_thread)

    def _take_pipelined_error(self) -> BaseException | None:
        # Only when no trip is queued: the connection's thread is then done with it.
        failed, self._pipelined_error = self._pipelined_error, None
        return failed

    def _commit_on_thread(self) -> None:
        if self._pipelined_error is not None:
            raise self._pipelined_error
        self._conn.commit()

    def _rollback_on_thread(self) -> None:
        self._pipelined_error = None
        self._conn.rollback()


async def connect(database: str, *, busy_timeout: float, lock_poll: float = 0.002) -> Connection:
    """A started connection to ``database`` that waits up to ``busy_timeout`` seconds for a lock (polling
    every ``lock_poll`` seconds for the write lock a transaction begins with)."""
    connection = Connection(partial(sqlite3.connect, database, timeout=busy_timeout), busy_timeout, lock_poll)
    await connection
    return connection


class _Locked(Exception):
    """``BEGIN IMMEDIATE`` found the write lock taken (raised on the thread, retried on the event loop)."""
