"""The ledger export an auditor takes away: events as JSONL, the signed checkpoints, and a manifest that pins
both files' SHA-256 and the ledger's head. Written by ``countersign audit export`` and downloaded from the web
console; checked by ``countersign audit verify --export``."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from approvals import checkpoints
from approvals.audit import to_json
from approvals.repositories import ledger

FORMAT = "countersign-audit-export/2"


@dataclass(frozen=True)
class Export:
    """The three files of an export, as text."""

    events: str
    checkpoints: str
    manifest: dict[str, Any]

    @property
    def manifest_text(self) -> str:
        """The manifest as written to ``manifest.json``."""
        return json.dumps(self.manifest, indent=2) + "\n"

    def write(self, folder: Path) -> None:
        """Write ``events.jsonl``, ``checkpoints.jsonl`` and ``manifest.json`` into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "events.jsonl").write_text(self.events)
        (folder / "checkpoints.jsonl").write_text(self.checkpoints)
        (folder / "manifest.json").write_text(self.manifest_text)


def _lines(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in rows)


async def build(
    session: AsyncSession,
    *,
    outside_checkpoints: list[dict[str, Any]] | None = None,
    run: str | None = None,
    since: dt.datetime | None = None,
    tenant: str | None = None,
) -> Export:
    """The export of the ledger, or of the events of one run, tenant or time onwards (a filtered export
    still carries every checkpoint; ``verify --export`` then checks their signatures only)."""
    rows = [to_json(e) for e in await ledger.for_export(session, run=run, since=since, tenant=tenant)]
    head = await ledger.head(session)
    cps = await checkpoints.stored(session)
    known = {(c["seq"], c["signature"]) for c in cps}
    cps += [c for c in outside_checkpoints or [] if (c["seq"], c["signature"]) not in known]
    body, cp_body = _lines(rows), _lines(sorted(cps, key=lambda c: c["seq"]))
    manifest = {
        "format": FORMAT,
        "exported_at": dt.datetime.now(dt.UTC).isoformat(),
        "filter": {
            "run": run,
            "since": since.isoformat() if since else None,
            **({"tenant": tenant} if tenant else {}),
        },
        "count": len(rows),
        "first_seq": rows[0]["seq"] if rows else None,
        "last_seq": rows[-1]["seq"] if rows else None,
        "events_sha256": hashlib.sha256(body.encode()).hexdigest(),
        "checkpoints": len(cps),
        "checkpoints_sha256": hashlib.sha256(cp_body.encode()).hexdigest(),
        "ledger_head": {"seq": head.seq, "hash": head.hash} if head else None,
    }
    return Export(body, cp_body, manifest)
