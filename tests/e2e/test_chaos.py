"""The chaos suite, reduced (``make chaos`` runs it at full size): the invariants hold on both backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.run import Size, report, session


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_invariants_hold_under_kills_restarts_outages_and_races(backend: str, tmp_path: Path) -> None:
    size = Size(runs=6, kills=2, decisions=20, outage_seconds=6.0)
    figures = await session(backend, size, tmp_path)
    print(report(figures, size))
    assert figures.kills == 2 and figures.temporal_restarts == 2 and figures.outages == 1
    assert len(figures.started) == size.runs + 3  # the race, a paused run, a start retried after an outage
    assert figures.invariants and figures.ok(), report(figures, size)
