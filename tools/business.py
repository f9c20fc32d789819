"""The demo systems of record (customers, orders, tickets, refunds, replies) and the effects ledger.

A deployment points ``COUNTERSIGN_BUSINESS_DATABASE_URL`` at its own database; the effects ledger lives in the
same database as the business change so both commit in one transaction, which is what makes a write tool
exactly-once under activity retries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import JSON, ForeignKeyConstraint, MetaData, String, Text, func, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from countersign.db import UTCDateTime, make_engine, read_only, session_factory, utcnow
from countersign.hashing import canonical_hash


class BusinessBase(DeclarativeBase):
    """Tables of the demo systems of record; not Countersign's own schema, so not under Alembic.

    Every record belongs to one tenant: the tenant is the first part of each primary key and of each foreign
    key, so a record can only ever refer to records of its own tenant, and a lookup without the tenant cannot
    be written (``session.get`` needs the whole key).
    """

    metadata = MetaData()
    type_annotation_map = {
        dict[str, Any]: JSON,
        list[str]: JSON,
        list[dict[str, Any]]: JSON,
        dt.datetime: UTCDateTime,
    }


def scoped_fk(column: str, table: str) -> ForeignKeyConstraint:
    """A foreign key to ``table`` within the same tenant."""
    return ForeignKeyConstraint(["tenant_id", column], [f"{table}.tenant_id", f"{table}.id"])


class Customer(BusinessBase):
    __tablename__ = "customers"
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(20), default="standard")


class Order(BusinessBase):
    __tablename__ = "orders"
    __table_args__ = (scoped_fk("customer_id", "customers"),)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(20))
    total: Mapped[float]
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    items: Mapped[list[dict[str, Any]]]
    placed_at: Mapped[dt.datetime]
    delivered_at: Mapped[dt.datetime | None]
    refunded_total: Mapped[float] = mapped_column(default=0.0)


class Ticket(BusinessBase):
    __tablename__ = "tickets"
    __table_args__ = (
        scoped_fk("customer_id", "customers"),
        scoped_fk("order_id", "orders"),
    )
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    customer_id: Mapped[str] = mapped_column(String(36))
    order_id: Mapped[str | None] = mapped_column(String(36))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    requested_refund: Mapped[float | None]
    status: Mapped[str] = mapped_column(String(20), default="open")


class Refund(BusinessBase):
    __tablename__ = "refunds"
    __table_args__ = (scoped_fk("order_id", "orders"),)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    order_id: Mapped[str] = mapped_column(String(36))
    amount: Mapped[float]
    reason: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Reply(BusinessBase):
    __tablename__ = "replies"
    __table_args__ = (scoped_fk("ticket_id", "tickets"),)
    tenant_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(String(36))
    body: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Effect(BusinessBase):
    """The effects ledger: one row per side effect, keyed by its idempotency key."""

    __tablename__ = "effects"
    idempotency_key: Mapped[str] = mapped_column(String(200), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(36), index=True)
    tool: Mapped[str] = mapped_column(String(100))
    arguments_hash: Mapped[str] = mapped_column(String(64))
    result: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class BusinessStore:
    """Connector to the systems-of-record database, with exactly-once execution of side effects."""

    def __init__(self, engine: AsyncEngine, *, sandbox: bool = False) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
        # For reads only (facts): on SQLite they take no write lock.
        self.read_sessions: async_sessionmaker[AsyncSession] = read_only(self.sessions)
        # Demo sandbox: each run sees the seeded records plus its own changes, so demo runs repeat exactly.
        self.sandbox = sandbox

    @classmethod
    def from_url(cls, url: str, *, sandbox: bool = False) -> BusinessStore:
        """A store over a fresh engine for ``url`` (``sandbox``: the demo mode, never for real records)."""
        return cls(make_engine(url), sandbox=sandbox)

    async def refunded(self, session: AsyncSession, order: Order, run_id: str) -> float:
        """What has been refunded on the order, as this run sees it: all refunds, or in the demo sandbox
        only the run's own (so an earlier demo run never uses up the order's refundable balance)."""
        if not self.sandbox:
            return order.refunded_total
        total = await session.scalar(
            select(func.coalesce(func.sum(Refund.amount), 0.0))
            .join(Effect, Effect.idempotency_key == Refund.idempotency_key)
            .where(Refund.tenant_id == order.tenant_id, Refund.order_id == order.id, Effect.run_id == run_id)
        )
        return round(float(total or 0.0), 2)

    async def create_schema(self, *, replace_outdated: bool = False) -> None:
        """Create the tables when missing (the demo database is seeded, not migrated).

        Tables from before records were tenant-scoped are refused, or with ``replace_outdated`` (the demo
        database, whose rows are only seed data and demo effects) dropped and created again.
        """
        async with self.engine.begin() as conn:
            outdated = await conn.run_sync(_outdated_tables)
            if outdated and not replace_outdated:
                raise OutdatedSchema(
                    f"business tables {', '.join(sorted(outdated))} have no tenant_id column: they predate "
                    "tenant-scoped records; add tenant_id to each key, or start from an empty database"
                )
            if outdated:
                await conn.run_sync(BusinessBase.metadata.drop_all)
            await conn.run_sync(BusinessBase.metadata.create_all)

    async def insert_missing(
        self, tenant_id: str, tables: list[tuple[type[BusinessBase], list[dict[str, Any]]]]
    ) -> None:
        """Insert the tenant's rows that are missing, table by table in foreign-key order; rows that exist
        (and whatever agents changed in them) are kept. How demo data is seeded, idempotently."""
        await self.create_schema()
        async with self.sessions() as session, session.begin():
            for model, rows in tables:
                for values in rows:
                    if await session.get(model, {"tenant_id": tenant_id, "id": values["id"]}) is None:
                        session.add(model(tenant_id=tenant_id, **values))
                # Parents must exist before children reference them (foreign keys hold on both backends).
                await session.flush()

    async def once(
        self,
        *,
        key: str,
        tenant_id: str,
        run_id: str,
        tool: str,
        arguments: dict[str, Any],
        act: Callable[[AsyncSession], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        """Run ``act`` at most once per ``key``: its change and the ledger row commit together.

        A retry (or a concurrent duplicate) finds the ledger row and gets the recorded result back.
        """
        recorded = await self.recorded(key, tenant_id)
        if recorded is not None:
            return recorded
        try:
            async with self.sessions() as session, session.begin():
                result = await act(session)
                session.add(
                    Effect(
                        idempotency_key=key,
                        tenant_id=tenant_id,
                        run_id=run_id,
                        tool=tool,
                        arguments_hash=canonical_hash(arguments),
                        result=result,
                    )
                )
        except IntegrityError:
            # Lost a race with a concurrent attempt holding the same key: its result is the one that counts.
            recorded = await self.recorded(key, tenant_id)
            if recorded is None:
                raise
            return recorded
        return result

    async def recorded(self, key: str, tenant_id: str) -> dict[str, Any] | None:
        """The recorded result of the tenant's effect with this idempotency key, if it happened."""
        async with self.sessions() as session:
            row = await session.scalar(
                select(Effect).where(Effect.idempotency_key == key, Effect.tenant_id == tenant_id)
            )
            return None if row is None else dict(row.result)


class OutdatedSchema(RuntimeError):
    """The business database holds tables of an older layout than this code reads."""


def _outdated_tables(conn: Connection) -> set[str]:
    existing = inspect(conn)
    names = set(existing.get_table_names())
    return {
        table.name
        for table in BusinessBase.metadata.sorted_tables
        if table.name in names and "tenant_id" not in {c["name"] for c in existing.get_columns(table.name)}
    }
