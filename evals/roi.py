"""What an agent is worth to its owner, from recorded runs, decisions and costs.

    net monthly saving = volume × automation share × minutes saved / 60 × hourly cost
                         − model cost − review cost

The automation share is the share of runs that completed without a person taking over (no escalation to a
person, no rejected or answered-instead request). Review time is measured from each request's opening to its
decision: an upper bound of the time people spent (they did other work while it waited).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.ext.asyncio import AsyncSession

from approvals.repositories import approvals
from countersign.repositories import runs as run_repository


@dataclass(frozen=True)
class Roi:
    """One agent's economics over a period, projected to a month of ``volume`` tasks."""

    agent: str
    runs: int
    automated: int
    review_minutes_per_run: float
    model_cost_per_run: float
    volume: float
    minutes_saved: float
    hourly_cost: float

    @property
    def automation_share(self) -> float:
        """Runs completed with no person taking over, of all runs."""
        return self.automated / self.runs if self.runs else 0.0

    @property
    def gross(self) -> float:
        """People's time the automated share saves, in money."""
        return gross_saving(self.volume, self.automation_share, self.minutes_saved, self.hourly_cost)

    @property
    def model_cost(self) -> float:
        """Model cost of a month's volume at the recorded cost per run."""
        return self.volume * self.model_cost_per_run

    @property
    def review_cost(self) -> float:
        """People's review time of a month's volume at the recorded time per run (an upper bound)."""
        return self.volume * self.review_minutes_per_run / 60 * self.hourly_cost

    @property
    def net(self) -> float:
        """Gross saving less model and review cost."""
        return self.gross - self.model_cost - self.review_cost


def gross_saving(volume: float, automation_share: float, minutes_saved: float, hourly_cost: float) -> float:
    """``volume × automation share × minutes saved / 60 × hourly cost``."""
    return volume * automation_share * minutes_saved / 60 * hourly_cost


async def measure(
    s: AsyncSession,
    *,
    since: dt.datetime,
    agent: str | None = None,
    volume: float | None = None,
    minutes_saved: float = 4.0,
    hourly_cost: float = 45.0,
    period_days: float = 30.0,
) -> list[Roi]:
    """Each agent's ROI from its runs since ``since`` (volume: the recorded runs scaled to 30 days unless
    given)."""
    runs = await run_repository.finished_since(s, since, ("completed", "failed", "cancelled"), agent)
    ids = [r.id for r in runs]
    taken_over: set[str] = set()
    review: dict[str, float] = {}
    if ids:
        for run_id, tool, status in await approvals.outcomes_of_runs(s, ids):
            if tool == "escalate_to_person" or status in ("rejected", "responded", "expired"):
                taken_over.add(run_id)
        for run_id, opened, decided in await approvals.review_spans(s, ids):
            review[run_id] = review.get(run_id, 0.0) + (decided - opened).total_seconds() / 60
    out = []
    for name in sorted({r.agent for r in runs}):
        mine = [r for r in runs if r.agent == name]
        automated = sum(
            1
            for r in mine
            if r.status == "completed" and r.id not in taken_over and not (r.output or {}).get("escalated")
        )
        out.append(
            Roi(
                agent=name,
                runs=len(mine),
                automated=automated,
                review_minutes_per_run=sum(review.get(r.id, 0.0) for r in mine) / len(mine),
                model_cost_per_run=sum(r.cost_usd for r in mine) / len(mine),
                volume=volume if volume is not None else len(mine) * 30.0 / period_days,
                minutes_saved=minutes_saved,
                hourly_cost=hourly_cost,
            )
        )
    return out


def roi_page(rows: list[Roi]) -> str:
    """An HTML page of the ROI table with a chart of gross saving against costs per agent."""
    env = Environment(
        loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    top = max((max(r.gross, r.model_cost + r.review_cost) for r in rows), default=1.0) or 1.0
    return env.get_template("roi.html").render(rows=rows, top=top)
