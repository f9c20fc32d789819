"""Canonical hashing: one JSON form for everything Countersign hashes (arguments, results, ledger events).

Sorted keys, no spaces, UTF-8 as is; values JSON cannot hold are written as their ``str``. The same value
always hashes the same, in any process and on replay (no I/O, no clock: safe in workflow code).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(value: Any) -> bytes:
    """The canonical JSON bytes of ``value``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def canonical_hash(value: Any) -> str:
    """SHA-256 (hex) of the canonical JSON form of ``value``."""
    return hashlib.sha256(canonical_json(value)).hexdigest()
