"""The ledger's head is guarded like its events, and signed checkpoints anchor it outside the database."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from typer.testing import CliRunner

from approvals.checkpoints import (
    load_private_key,
    new_private_key,
    public_key_text,
    verify_ledger,
    write_checkpoint,
)
from approvals.models import AuditCheckpoint, AuditHead
from cli.main import app as cli
from tests.conftest import Stack
from tests.e2e.test_audit import drop_sqlite_guards
from workers.activities.checkpoint import ensure_checkpoint_schedule

PRIVATE = new_private_key()
PUBLIC = public_key_text(load_private_key(PRIVATE))


async def run_once(stack: Stack, ticket: str = "T-1001") -> None:
    run = await stack.start("support_drafting", {"ticket_id": ticket})
    await stack.result(run["id"])


async def head(stack: Stack) -> AuditHead:
    async with stack.sessions() as s:
        row = await s.scalar(select(AuditHead))
        assert row is not None
        return row


async def test_the_head_only_moves_forward_onto_an_existing_event(stack: Stack, db_url: str) -> None:
    await run_once(stack)
    before = await head(stack)
    refused = [
        "UPDATE audit_head SET seq = seq - 3",
        "UPDATE audit_head SET hash = 'x'",
        f"UPDATE audit_head SET seq = seq + 1, hash = '{'0' * 64}'",
        "DELETE FROM audit_head",
    ]
    if db_url.startswith("postgresql"):  # on SQLite a changed event is caught by the chain instead
        refused += [
            "DELETE FROM audit_events WHERE seq = 1",
            "UPDATE audit_events SET actor = 'x' WHERE seq = 2",
        ]
    for statement in refused:
        with pytest.raises(DBAPIError, match="append-only|only moves forward"):
            async with stack.sessions() as s, s.begin():
                await s.execute(text(statement))
    after = await head(stack)
    assert (after.seq, after.hash) == (before.seq, before.hash)
    async with stack.sessions() as s, s.begin():
        written = await write_checkpoint(s, load_private_key(PRIVATE))
    assert written is not None and written["seq"] == before.seq
    for statement in ("UPDATE audit_checkpoints SET seq = 1", "DELETE FROM audit_checkpoints"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with stack.sessions() as s, s.begin():
                await s.execute(text(statement))
    async with stack.sessions() as s:
        assert (await verify_ledger(s, load_private_key(PRIVATE).public_key())).ok


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_truncation_after_a_checkpoint_is_caught_with_only_the_public_key(
    stack: Stack, db_url: str, tmp_path: Path
) -> None:
    env = {
        "COUNTERSIGN_DATABASE_URL": db_url,
        "COUNTERSIGN_DATA_DIR": str(tmp_path),
        "COUNTERSIGN_AUDIT_SIGNING_KEY": PRIVATE,
    }
    auditor = {"COUNTERSIGN_DATABASE_URL": db_url, "COUNTERSIGN_DATA_DIR": str(tmp_path)}
    runner = CliRunner()

    async def invoke(*args: str, env: dict[str, str] = env) -> Any:
        return await asyncio.to_thread(runner.invoke, cli, list(args), env=env)

    await run_once(stack)
    signed = await invoke("audit", "checkpoint")
    assert signed.exit_code == 0 and "checkpoint: seq" in signed.output, signed.output
    anchored = (await head(stack)).seq
    await run_once(stack, "T-1003")
    total = (await head(stack)).seq
    assert total > anchored

    ok = await invoke("audit", "verify", "--public-key", PUBLIC, env=auditor)
    assert ok.exit_code == 0, ok.output
    assert f"nothing up to seq {anchored} was removed" in ok.output
    assert f"{total - anchored} later events are not yet covered" in ok.output
    quick = await invoke("audit", "verify", "--public-key", PUBLIC, "--since-checkpoint", env=auditor)
    assert quick.exit_code == 0 and "trusted" in quick.output, quick.output
    exported = await invoke("audit", "export", "--out", str(tmp_path / "export"))
    assert exported.exit_code == 0 and "1 checkpoints" in exported.output
    assert (
        await invoke("audit", "verify", "--export", str(tmp_path / "export"), "--public-key", PUBLIC)
    ).exit_code == 0

    # An attacker with the database file drops the guards, cuts the ledger back to before the checkpoint,
    # rewinds the head onto the new last event and deletes the stored checkpoint: the chain alone holds...
    cut = anchored - 2
    async with stack.sessions() as s, s.begin():
        await drop_sqlite_guards(s)
        await s.execute(text(f"DELETE FROM audit_events WHERE seq > {cut}"))
        await s.execute(
            text(
                f"UPDATE audit_head SET seq = {cut}, hash = (SELECT hash FROM audit_events WHERE seq = {cut})"
            )
        )
        await s.execute(text("DELETE FROM audit_checkpoints"))
    blind = await invoke(
        "audit", "verify", env={**auditor, "COUNTERSIGN_AUDIT_CHECKPOINT_FILE": str(tmp_path / "none")}
    )
    assert blind.exit_code == 0 and "checkpoints: not checked" in blind.output
    # ...but the checkpoint file outside the database, or the export, proves the removal.
    caught = await invoke("audit", "verify", "--public-key", PUBLIC, env=auditor)
    assert caught.exit_code == 1, caught.output
    assert f"events {cut + 1}..{anchored} were removed" in caught.output
    assert (
        await invoke("audit", "verify", "--public-key", PUBLIC, "--since-checkpoint", env=auditor)
    ).exit_code == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_checkpoints_signed_by_another_key_or_altered_are_refused(stack: Stack, tmp_path: Path) -> None:
    await run_once(stack)
    file = tmp_path / "cps.jsonl"
    async with stack.sessions() as s, s.begin():
        written = await write_checkpoint(s, load_private_key(new_private_key()), file)
    assert written is not None
    async with stack.sessions() as s:
        wrong_key = await verify_ledger(s, load_private_key(PRIVATE).public_key())
    assert not wrong_key.ok and "invalid signature" in (wrong_key.anchors.problem or "")  # type: ignore[union-attr]
    forged = {**written, "seq": written["seq"] - 1}
    async with stack.sessions() as s:
        check = await verify_ledger(s, load_private_key(PRIVATE).public_key(), [forged])
    assert not check.ok
    assert json.loads(file.read_text().splitlines()[0]) == written


async def test_workers_sign_checkpoints_on_a_schedule(make_stack: Any, db_url: str, tmp_path: Path) -> None:
    file = tmp_path / "anchors.jsonl"
    async with make_stack(db_url, audit_signing_key=PRIVATE, audit_checkpoint_file=file) as stack:
        await run_once(stack)
        sid = await ensure_checkpoint_schedule(stack.client, stack.settings.task_queue, timedelta(hours=1))
        # Creating it again (a second worker, a restart) updates it instead of failing.
        assert (
            await ensure_checkpoint_schedule(stack.client, stack.settings.task_queue, timedelta(hours=2))
            == sid
        )
        handle = stack.client.get_schedule_handle(sid)
        try:
            await handle.trigger()
            seq = (await head(stack)).seq
            async with asyncio.timeout(60):
                while True:
                    async with stack.sessions() as s:
                        if await s.get(AuditCheckpoint, seq) is not None:
                            break
                    await asyncio.sleep(0.05)
        finally:
            await handle.delete()
        assert [json.loads(line)["seq"] for line in file.read_text().splitlines()] == [seq]
        async with stack.sessions() as s:
            assert (
                await verify_ledger(s, load_private_key(PRIVATE).public_key(), [])
            ).anchors.anchored_seq == seq  # type: ignore[union-attr]
