"""The demo systems of record (customers, orders, tickets, refunds, replies) and the effects ledger.

A deployment points ``COUNTERSIGN_BUSINESS_DATABASE_URL`` at its own database; the effects ledger lives in the
same database as the business change so both commit in one transaction, which is what makes a write tool
exactly-once under activity retries.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import JSON, ForeignKey, MetaData, String, Text, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from countersign.db import UTCDateTime, make_engine, session_factory, utcnow


class BusinessBase(DeclarativeBase):
    """Tables of the demo systems of record; not Countersign's own schema, so not under Alembic."""

    metadata = MetaData()
    type_annotation_map = {
        dict[str, Any]: JSON,
        list[str]: JSON,
        list[dict[str, Any]]: JSON,
        dt.datetime: UTCDateTime,
    }


class Customer(BusinessBase):
    __tablename__ = "customers"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(20), default="standard")


class Order(BusinessBase):
    __tablename__ = "orders"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    status: Mapped[str] = mapped_column(String(20))
    total: Mapped[float]
    currency: Mapped[str] = mapped_column(String(3), default="USD")
    items: Mapped[list[dict[str, Any]]]
    placed_at: Mapped[dt.datetime]
    delivered_at: Mapped[dt.datetime | None]
    refunded_total: Mapped[float] = mapped_column(default=0.0)


class Ticket(BusinessBase):
    __tablename__ = "tickets"
    id: Mapped[str] = mapped_column(String(20), primary_key=True)
    customer_id: Mapped[str] = mapped_column(ForeignKey("customers.id"))
    order_id: Mapped[str | None] = mapped_column(ForeignKey("orders.id"))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    requested_refund: Mapped[float | None]
    status: Mapped[str] = mapped_column(String(20), default="open")


class Refund(BusinessBase):
    __tablename__ = "refunds"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    order_id: Mapped[str] = mapped_column(ForeignKey("orders.id"))
    amount: Mapped[float]
    reason: Mapped[str] = mapped_column(Text)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class Reply(BusinessBase):
    __tablename__ = "replies"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(ForeignKey("tickets.id"))
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


def canonical_hash(value: Any) -> str:
    """SHA-256 of the canonical JSON form (sorted keys, no spaces): the same value always hashes the same."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


class BusinessStore:
    """Connector to the systems-of-record database, with exactly-once execution of side effects."""

    def __init__(self, engine: AsyncEngine, *, sandbox: bool = False) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = session_factory(engine)
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
            .where(Refund.order_id == order.id, Effect.run_id == run_id)
        )
        return round(float(total or 0.0), 2)

    async def create_schema(self) -> None:
        """Create the tables when missing (the demo database is seeded, not migrated)."""
        async with self.engine.begin() as conn:
            await conn.run_sync(BusinessBase.metadata.create_all)

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
        recorded = await self.recorded(key)
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
            recorded = await self.recorded(key)
            if recorded is None:
                raise
            return recorded
        return result

    async def recorded(self, key: str) -> dict[str, Any] | None:
        """The recorded result of the effect with this idempotency key, if it happened."""
        async with self.sessions() as session:
            row = await session.scalar(select(Effect).where(Effect.idempotency_key == key))
            return None if row is None else dict(row.result)
