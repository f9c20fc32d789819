"""What every ``countersign`` command shares: how it fails and how it reads JSON options."""

from __future__ import annotations

import json
from typing import Any, NoReturn

import typer


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code`` (2: bad input, 1: the check failed)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def json_arg(name: str, text: str) -> dict[str, Any]:
    """The JSON object given to option ``name``; a clear error naming the option otherwise."""
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError as e:
        fail(f"{name}: not valid JSON ({e.msg} at position {e.pos})")
    if not isinstance(value, dict):
        fail(f"{name}: must be a JSON object")
    return dict(value)
