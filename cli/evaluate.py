"""``countersign eval``: golden cases through the real system, scored, reported and gated on the baseline.

The composition root's part: it builds the API in-process and drives the eval through it (people's decisions
go through the same checks as in production); ``evals`` itself never imports the API.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import uuid
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from typer.core import TyperGroup

from countersign.settings import Settings


class ApiDriver:
    """The eval's client of the API: a trigger key starts runs, distinct approvers decide."""

    def __init__(self, http: httpx.AsyncClient, trigger: str, approvers: list[str], reader: str) -> None:
        self.http, self.trigger, self.approvers, self.reader = http, trigger, approvers, reader

    def _auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def _call(self, method: str, url: str, **kw: Any) -> httpx.Response:
        # A busy database (503) or a rate limit (429) says when to retry: a well-behaved client waits.
        for attempt in range(20):
            r = await self.http.request(method, url, **kw)
            if r.status_code not in (429, 503):
                return r
            after = r.headers.get("retry-after", "")
            await asyncio.sleep(float(after) if after.isdigit() else min(0.1 * (attempt + 1), 1.0))
        return r

    async def start(self, agent: str, payload: dict[str, Any], budget: dict[str, Any] | None) -> str:
        """Start a run; its id."""
        body: dict[str, Any] = {"agent": agent, "input": payload, **({"budget": budget} if budget else {})}
        headers = self._auth(self.trigger) | {"Idempotency-Key": str(uuid.uuid4())}
        r = await self._call("POST", "/v1/runs", json=body, headers=headers)
        if r.status_code != 201:
            raise RuntimeError(f"POST /v1/runs answered {r.status_code}: {r.text[:300]}")
        return str(r.json()["id"])

    async def run(self, run_id: str) -> dict[str, Any]:
        """The run as the API shows it."""
        r = await self._call("GET", f"/v1/runs/{run_id}", headers=self._auth(self.reader))
        if r.status_code != 200:
            raise RuntimeError(f"GET /v1/runs/{run_id} answered {r.status_code}: {r.text[:300]}")
        value: dict[str, Any] = r.json()
        return value

    async def pending(self, run_id: str) -> list[dict[str, Any]]:
        """The run's pending requests."""
        r = await self._call(
            "GET",
            "/v1/approvals",
            params={"run_id": run_id, "status": "pending"},
            headers=self._auth(self.reader),
        )
        if r.status_code != 200:
            raise RuntimeError(f"GET /v1/approvals answered {r.status_code}: {r.text[:300]}")
        items: list[dict[str, Any]] = r.json()["items"]
        for item in items:
            item["decisions"] = [d["action"] for d in item["decisions"]]
        return items

    async def decide(self, request_id: str, body: dict[str, Any], approver: int) -> None:
        """Decide as the ``approver``-th demo approver."""
        key = self.approvers[approver % len(self.approvers)]
        r = await self._call(
            "POST", f"/v1/approvals/{request_id}/decisions", json=body, headers=self._auth(key)
        )
        if r.status_code not in (200, 201, 409):
            raise RuntimeError(f"deciding {request_id} answered {r.status_code}: {r.text[:300]}")


async def _run(settings: Settings, agents: list[str] | None, workdir: Path, progress: bool) -> list[Any]:
    from agents.models import model_factory
    from api.app import create_app
    from api.auth import create_key, ensure_tenant
    from evals.cases import dataset_paths
    from evals.runner import TENANT, eval_stack
    from evals.suite import evaluate

    paths = dataset_paths(agents)
    model_for = None if settings.model == "scripted" else model_factory(settings)
    async with eval_stack(settings, workdir, model_for=model_for) as stack:
        async with stack.sessions() as s, s.begin():
            await ensure_tenant(s, TENANT)
            _, trigger = await create_key(s, tenant_id=TENANT, name="eval trigger", roles=["trigger"])
            _, reader = await create_key(
                s, tenant_id=TENANT, name="eval reader", roles=["auditor", "approver"]
            )
            approvers = [
                (
                    await create_key(
                        s, tenant_id=TENANT, name=f"eval approver {n}", roles=stack.approver_roles
                    )
                )[1]
                for n in range(3)
            ]
        app = create_app(stack.settings, sessions=stack.sessions, temporal=stack.client)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://eval", timeout=60) as http:
                driver = ApiDriver(http, trigger, approvers, reader)
                return await evaluate(stack, driver, paths, progress=progress)


def eval_command(
    agents: Annotated[list[str] | None, typer.Argument(help="Agents to evaluate (default: --all)")] = None,
    all_agents: Annotated[bool, typer.Option("--all", help="Every agent with a golden dataset")] = False,
    model: Annotated[
        str | None, typer.Option(help="PROVIDER:MODEL to evaluate instead of the offline scripted model")
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Exit 1 when the release gate fails")] = False,
    baseline: Annotated[
        Path | None, typer.Option(help="Baseline file (default: evals/baseline.json)")
    ] = None,
    report: Annotated[Path | None, typer.Option(help="Write report.json and report.html here")] = None,
    update_baseline: Annotated[
        bool, typer.Option("--update-baseline", help="Rewrite the baseline from this run")
    ] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar")] = True,
) -> None:
    """Run the golden cases through the real workflow path (Temporal, worker, graph, policy, gate, tools on
    the demo data, people's scripted decisions through the API), score them and print a table."""
    from evals.suite import BASELINE, baseline_of, summary, write_report
    from evals.suite import check as gate

    settings = Settings()
    if model:
        settings = settings.model_copy(update={"model": model})
    chosen = None if all_agents or not agents else list(agents)
    base_file = baseline or BASELINE
    try:
        before: dict[str, Any] = json.loads(base_file.read_text()) if base_file.exists() else {}
    except ValueError as e:
        typer.echo(f"error: --baseline: {base_file} is not JSON ({e})", err=True)
        raise typer.Exit(2) from e
    with tempfile.TemporaryDirectory(prefix="countersign-eval-") as tmp:
        try:
            results = asyncio.run(_run(settings, chosen, Path(tmp), progress))
        except LookupError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(2) from e
    problems = gate(results, before)
    typer.echo(
        f"{'agent':22} {'cases':>5} {'passed':>6}  evaluators (pass rate)  latency p50/p95  tokens  cost"
    )
    for agent, s in summary(results).items():
        scores = " ".join(f"{k}={v:.0%}" for k, v in s["evaluators"].items())
        typer.echo(
            f"{agent:22} {s['cases']:>5} {s['passed']:>6}  {scores}  "
            f"{s['latency_p50_s']}s/{s['latency_p95_s']}s  {s['tokens']}  ${s['cost_usd']}"
        )
    for r in results:
        if not r.passed:
            failed = [k for k, v in r.scores.items() if v is False]
            typer.echo(f"FAILED {r.key}: {', '.join(failed) or r.error} {r.error or ''}")
    if report is not None:
        write_report(report, results, before, problems)
        typer.echo(f"report: {report / 'report.json'}, {report / 'report.html'}")
    if update_baseline:
        base_file.write_text(json.dumps(baseline_of(results), indent=2, sort_keys=True) + "\n")
        typer.echo(f"baseline written: {base_file}")
    if problems:
        typer.echo("release gate: FAIL")
        for p in problems:
            typer.echo(f"  {p}")
        if check:
            raise typer.Exit(1)
    else:
        typer.echo("release gate: pass")


class EvalGroup(TyperGroup):
    """``countersign eval [AGENT ...] [options]`` runs the evals; ``countersign eval export-decisions``
    is its one subcommand (anything else is the run's arguments)."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and args[0] not in ("--help", "-h")):
            args = ["run", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=EvalGroup,
    help="Golden cases through the real system, scored and gated: `countersign eval [AGENT ...] [--all] "
    "[--check] [--report DIR]` is `countersign eval run ...` (see its --help).",
)
app.command("run")(eval_command)


@app.command("export-decisions")
def export_decisions(
    out: Annotated[Path, typer.Option(help="YAML file to write the cases to (a pydantic-evals dataset)")],
    agent: Annotated[str | None, typer.Option(help="Only this agent's decisions")] = None,
    since: Annotated[str | None, typer.Option(help="Only decisions from this date (YYYY-MM-DD) on")] = None,
) -> None:
    """Turn decided approval requests into golden cases: an edit is the expected arguments, a rejection means
    the call must not run, an approval confirms it; with provenance, and personal data redacted."""
    import datetime as dt

    import yaml

    from countersign.db import make_engine, session_factory
    from evals.evaluators import EVALUATORS
    from evals.export import decided_cases

    start = None
    if since:
        try:
            start = dt.datetime.combine(dt.date.fromisoformat(since), dt.time(), dt.UTC)
        except ValueError as e:
            typer.echo(f"error: --since: a date as YYYY-MM-DD, not {since!r}", err=True)
            raise typer.Exit(2) from e
    settings = Settings()

    async def go() -> list[dict[str, Any]]:
        engine = make_engine(settings.resolved_database_url())
        try:
            async with session_factory(engine)() as s:
                return await decided_cases(s, agent=agent, since=start)
        finally:
            await engine.dispose()

    cases = asyncio.run(go())
    document = {"evaluators": [e.__name__ for e in EVALUATORS], "cases": cases}
    header = (
        "# Golden cases exported from people's decisions (countersign eval export-decisions), personal\n"
        "# data redacted by the rule in evals/export.py. Review them, then add them to a dataset.\n"
    )
    out.write_text(header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=110))
    kinds: dict[str, int] = {}
    for c in cases:
        action = next(iter(c["inputs"]["decisions"].values()))["action"]
        kinds[action] = kinds.get(action, 0) + 1
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) or "none"
    typer.echo(f"wrote {len(cases)} cases to {out} ({summary})")


report_app = typer.Typer(help="Reports for an agent's owner.", no_args_is_help=True)


@report_app.command("roi")
def roi(
    agent: Annotated[str | None, typer.Option(help="Only this agent")] = None,
    period: Annotated[str, typer.Option(help="How far back to read runs, e.g. 30d")] = "30d",
    volume: Annotated[
        float | None, typer.Option(help="Tasks per month (default: the recorded runs, scaled to 30 days)")
    ] = None,
    minutes_saved: Annotated[float, typer.Option(help="People's minutes an automated task saves")] = 4.0,
    hourly_cost: Annotated[float, typer.Option(help="Loaded cost of a person's hour")] = 45.0,
    html: Annotated[Path | None, typer.Option(help="Also write a page with a chart here")] = None,
) -> None:
    """Automation share, review time, model cost and the net monthly saving, from recorded runs."""
    import datetime as dt

    from approvals.policy import parse_duration
    from countersign.db import make_engine, session_factory
    from evals.roi import measure, roi_page

    try:
        seconds = parse_duration(period)
    except (ValueError, TypeError) as e:
        typer.echo(f"error: --period: {e}", err=True)
        raise typer.Exit(2) from e
    settings = Settings()

    async def go() -> list[Any]:
        engine = make_engine(settings.resolved_database_url())
        try:
            async with session_factory(engine)() as s:
                return await measure(
                    s,
                    since=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds),
                    agent=agent,
                    volume=volume,
                    minutes_saved=minutes_saved,
                    hourly_cost=hourly_cost,
                    period_days=seconds / 86400,
                )
        finally:
            await engine.dispose()

    rows = asyncio.run(go())
    if not rows:
        typer.echo(f"no finished runs in the last {period}")
        return
    typer.echo(
        f"{'agent':22} {'runs':>5} {'automated':>9} {'volume/mo':>9} {'gross':>10} {'model':>8} "
        f"{'review*':>9} {'net/mo':>10}"
    )
    for r in rows:
        typer.echo(
            f"{r.agent:22} {r.runs:>5} {r.automation_share:>8.0%} {r.volume:>9.0f} {r.gross:>10,.2f} "
            f"{r.model_cost:>8,.2f} {r.review_cost:>9,.2f} {r.net:>10,.2f}"
        )
    typer.echo(
        f"gross = volume × automated × {minutes_saved:g} min / 60 × ${hourly_cost:g}/h; *review time runs "
        "from a request's opening to its decision: an upper bound of people's time."
    )
    if html is not None:
        html.write_text(roi_page(rows))
        typer.echo(f"page: {html}")
