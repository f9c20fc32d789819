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

from countersign.settings import Settings


class ApiDriver:
    """The eval's client of the API: a trigger key starts runs, distinct approvers decide."""

    def __init__(self, http: httpx.AsyncClient, trigger: str, approvers: list[str], reader: str) -> None:
        self.http, self.trigger, self.approvers, self.reader = http, trigger, approvers, reader

    def _auth(self, key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def start(self, agent: str, payload: dict[str, Any], budget: dict[str, Any] | None) -> str:
        """Start a run; its id."""
        body: dict[str, Any] = {"agent": agent, "input": payload, **({"budget": budget} if budget else {})}
        headers = self._auth(self.trigger) | {"Idempotency-Key": str(uuid.uuid4())}
        r = await self.http.post("/v1/runs", json=body, headers=headers)
        if r.status_code != 201:
            raise RuntimeError(f"POST /v1/runs answered {r.status_code}: {r.text[:300]}")
        return str(r.json()["id"])

    async def run(self, run_id: str) -> dict[str, Any]:
        """The run as the API shows it."""
        r = await self.http.get(f"/v1/runs/{run_id}", headers=self._auth(self.reader))
        value: dict[str, Any] = r.json()
        return value

    async def pending(self, run_id: str) -> list[dict[str, Any]]:
        """The run's pending requests."""
        r = await self.http.get(
            "/v1/approvals", params={"run_id": run_id, "status": "pending"}, headers=self._auth(self.reader)
        )
        items: list[dict[str, Any]] = r.json()["items"]
        for item in items:
            item["decisions"] = [d["action"] for d in item["decisions"]]
        return items

    async def decide(self, request_id: str, body: dict[str, Any], approver: int) -> None:
        """Decide as the ``approver``-th demo approver."""
        key = self.approvers[approver % len(self.approvers)]
        r = await self.http.post(f"/v1/approvals/{request_id}/decisions", json=body, headers=self._auth(key))
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
