"""Signed checkpoints: the ledger's head, anchored outside the database.

The hash chain shows that no stored event was changed, and the head row shows how many there were. But
whoever can write the database can also delete the newest events and rewind the head. A checkpoint is an
Ed25519 signature over ``(seq, hash)`` of the head at a moment, made with a key the database does not hold.
Checkpoints are stored in the database, appended to a file and written to every export; with only the public
key, anyone can then prove that the ledger still holds every event up to the newest checkpoint, unchanged.
Events after the newest checkpoint are protected by the chain and the database's own guards only.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.ext.asyncio import AsyncSession

from approvals.audit import VerifyResult, verify
from approvals.models import AuditCheckpoint
from approvals.repositories import ledger
from countersign.db import utcnow

FORMAT = "countersign-audit-checkpoint/1"
PRIVATE_PREFIX = "ed25519-private:"
PUBLIC_PREFIX = "ed25519-public:"


class BadKey(ValueError):
    """A signing or public key that cannot be read; the message says what is wrong, never the key."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as e:
        raise BadKey("not base64") from e


def new_private_key() -> str:
    """A fresh signing key, as ``ed25519-private:<base64url of the 32-byte seed>``."""
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    raw = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return PRIVATE_PREFIX + _b64(raw)


def load_private_key(text: str) -> Ed25519PrivateKey:
    """Read a signing key written by :func:`new_private_key`."""
    body = text.strip().removeprefix(PRIVATE_PREFIX)
    raw = _unb64(body)
    if len(raw) != 32:
        raise BadKey(f"an Ed25519 private key has 32 bytes, this one {len(raw)}")
    return Ed25519PrivateKey.from_private_bytes(raw)


def public_key_text(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """The public key as ``ed25519-public:<base64url of its 32 bytes>``: what a verifier needs."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return PUBLIC_PREFIX + _b64(public.public_bytes(Encoding.Raw, PublicFormat.Raw))


def load_public_key(text: str) -> Ed25519PublicKey:
    """Read a public key (``ed25519-public:...``, or a private key, whose public half is used)."""
    text = text.strip()
    if text.startswith(PRIVATE_PREFIX):
        return load_private_key(text).public_key()
    raw = _unb64(text.removeprefix(PUBLIC_PREFIX))
    if len(raw) != 32:
        raise BadKey(f"an Ed25519 public key has 32 bytes, this one {len(raw)}")
    return Ed25519PublicKey.from_public_bytes(raw)


def key_id(key: Ed25519PrivateKey | Ed25519PublicKey) -> str:
    """A short fingerprint of the public key, so a verifier can tell which key signed."""
    return hashlib.sha256(public_key_text(key).encode()).hexdigest()[:16]


def _message(seq: int, head_hash: str, signed_at: str) -> bytes:
    fields = {"format": FORMAT, "seq": seq, "hash": head_hash, "signed_at": signed_at}
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def to_json(cp: AuditCheckpoint) -> dict[str, Any]:
    """The checkpoint as written to the checkpoint file and to exports."""
    return {
        "format": FORMAT,
        "seq": cp.seq,
        "hash": cp.hash,
        "signed_at": cp.signed_at.astimezone(dt.UTC).isoformat(),
        "key_id": cp.key_id,
        "signature": cp.signature,
    }


def signature_ok(cp: dict[str, Any], public: Ed25519PublicKey) -> bool:
    """Whether the checkpoint was signed by the private half of ``public``, over exactly these fields."""
    try:
        message = _message(int(cp["seq"]), str(cp["hash"]), str(cp["signed_at"]))
        public.verify(_unb64(str(cp["signature"])), message)
    except (InvalidSignature, BadKey, KeyError, ValueError, TypeError):
        return False
    return True


async def write_checkpoint(
    session: AsyncSession, key: Ed25519PrivateKey, file: Path | None = None
) -> dict[str, Any] | None:
    """Sign the ledger's current head, store it, and append it to ``file``; None when the head is already
    checkpointed or the ledger is empty. The caller commits."""
    head = await ledger.head(session)
    if head is None or head.seq == 0:
        return None
    if await ledger.checkpoint_at(session, head.seq) is not None:
        return None
    signed_at = utcnow()
    stamp = signed_at.astimezone(dt.UTC).isoformat()
    cp = AuditCheckpoint(
        seq=head.seq,
        hash=head.hash,
        signed_at=signed_at,
        key_id=key_id(key),
        signature=_b64(key.sign(_message(head.seq, head.hash, stamp))),
    )
    await ledger.add_checkpoint(session, cp)
    line = to_json(cp)
    if file is not None:
        await asyncio.to_thread(_append_line, file, line)
    return line


def _append_line(file: Path, line: dict[str, Any]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    with file.open("a", encoding="utf-8") as f:
        f.write(json.dumps(line, sort_keys=True, separators=(",", ":")) + "\n")


def read_file(file: Path) -> list[dict[str, Any]]:
    """The checkpoints in a checkpoint file (or an export's ``checkpoints.jsonl``); none if it is missing."""
    if not file.exists():
        return []
    return [json.loads(line) for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]


async def stored(session: AsyncSession) -> list[dict[str, Any]]:
    """The checkpoints stored in the database, oldest first."""
    return [to_json(cp) for cp in await ledger.checkpoints(session)]


@dataclass(frozen=True)
class CheckpointCheck:
    """What the checkpoints prove: every event up to ``anchored_seq`` is there, unchanged."""

    ok: bool
    checkpoints: int
    anchored_seq: int
    anchored_at: str | None
    head_seq: int
    problem: str | None = None

    @property
    def unanchored(self) -> int:
        """Events after the newest valid checkpoint: their removal would not be seen by checkpoints."""
        return max(self.head_seq - self.anchored_seq, 0)


def check_against(
    checkpoints: Iterable[dict[str, Any]], public: Ed25519PublicKey, hash_at: dict[int, str], head_seq: int
) -> CheckpointCheck:
    """Check signed checkpoints against the ledger's events (``hash_at``: seq → hash of the events at hand).

    Checkpoints with a bad signature are reported (someone wrote them without the key); a valid one whose
    event is missing or different means events were removed or rewritten.
    """
    seen: dict[int, dict[str, Any]] = {}
    for cp in checkpoints:
        if not signature_ok(cp, public):
            return CheckpointCheck(
                False,
                len(seen),
                0,
                None,
                head_seq,
                f"checkpoint at seq {cp.get('seq')} has an invalid signature",
            )
        seen[int(cp["seq"])] = cp
    anchored, at = 0, None
    for seq in sorted(seen):
        cp = seen[seq]
        if seq > head_seq:
            return CheckpointCheck(
                False,
                len(seen),
                anchored,
                at,
                head_seq,
                f"checkpoint signed at {cp['signed_at']} covers {seq} events, the ledger ends at {head_seq}: "
                f"events {head_seq + 1}..{seq} were removed",
            )
        if hash_at.get(seq) != cp["hash"]:
            return CheckpointCheck(
                False,
                len(seen),
                anchored,
                at,
                head_seq,
                f"event seq {seq} does not match the checkpoint signed at {cp['signed_at']}",
            )
        anchored, at = seq, str(cp["signed_at"])
    return CheckpointCheck(True, len(seen), anchored, at, head_seq)


@dataclass(frozen=True)
class LedgerCheck:
    """A ledger check: the chain (``chain``) and, with a public key, the checkpoints (``anchors``)."""

    chain: VerifyResult
    anchors: CheckpointCheck | None

    @property
    def ok(self) -> bool:
        """Nothing found wrong."""
        return self.chain.ok and (self.anchors is None or self.anchors.ok)


async def verify_ledger(
    session: AsyncSession,
    public: Ed25519PublicKey | None,
    outside: Iterable[dict[str, Any]] = (),
    *,
    since_checkpoint: bool = False,
) -> LedgerCheck:
    """Check the stored chain and every checkpoint (stored ones, and ``outside`` ones from the file).

    With ``since_checkpoint``, the chain is recomputed only after the newest checkpoint that holds: the
    events up to it are proven by the signature over its hash.
    """
    if public is None:
        return LedgerCheck(await verify(session), None)
    cps = {(int(c["seq"]), str(c["signature"])): c for c in [*await stored(session), *outside]}
    last = await ledger.last_seq(session)
    hashes = await ledger.hashes(session, [seq for seq, _ in cps])
    anchors = check_against(cps.values(), public, hashes, last)
    after = None
    if since_checkpoint and anchors.ok and anchors.anchored_seq:
        after = (anchors.anchored_seq, hashes[anchors.anchored_seq])
    return LedgerCheck(await verify(session, after), anchors)
