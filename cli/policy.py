"""``countersign policy``: test, check and compare approval policies, and list the facts rules can read."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.common import fail, json_arg
from countersign.settings import Settings

app = typer.Typer(help="Test, check and compare the approval policy.", no_args_is_help=True)

PolicyOption = Annotated[Path | None, typer.Option(help="Policy file (default: the configured one)")]


def _load(path: Path, settings: Settings) -> Any:
    from approvals.policy import PolicyError, load_policy
    from tools.registry import fact_signatures, signatures

    try:
        return load_policy(path, settings.known_roles(), signatures(), fact_signatures())
    except PolicyError as e:
        fail(str(e), 1)


@app.command("test")
def policy_test(
    policy: Annotated[
        Path | None, typer.Argument(help="Policy file (default: the configured one)", show_default=False)
    ] = None,
    cases: Annotated[
        Path | None, typer.Option(help="Test cases (default: <policy>.tests.yaml next to the policy)")
    ] = None,
    policy_option: Annotated[
        Path | None, typer.Option("--policy", help="Same as the POLICY argument")
    ] = None,
) -> None:
    """Run the policy's test cases (tool, args, run context, provenance, facts -> the expected verdict); fails
    when a case gets another verdict or a rule is reached by no case."""
    from approvals.policy import PolicyError, run_policy_tests
    from tools.registry import signatures

    settings = Settings()
    path = policy or policy_option or settings.policy_path
    file = cases or path.with_name(path.name.removesuffix(".yaml") + ".tests.yaml")
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as e:
        fail(f"cases: cannot read {file}: {e}", 2)
    loaded = _load(path, settings)
    try:
        results, untested = run_policy_tests(loaded, text, signatures())
    except PolicyError as e:
        fail(str(e), 1)
    for r in results:
        mark = "ok  " if r.problem is None else "FAIL"
        typer.echo(
            f"{mark} {r.name}: {r.verdict.outcome} ({r.verdict.rule})"
            + (f" - {r.problem}" if r.problem else "")
        )
    failed = [r for r in results if r.problem is not None]
    for rule in untested:
        typer.echo(f"FAIL rule {rule} is reached by no case")
    typer.echo(f"{len(results) - len(failed)} of {len(results)} cases pass; {len(untested)} rule(s) untested")
    if failed or untested:
        raise typer.Exit(1)


@app.command("check")
def policy_check(
    tool: Annotated[str, typer.Option(help="Tool name, e.g. issue_refund")],
    args: Annotated[str, typer.Option("--args", help="Tool arguments as a JSON object")] = "{}",
    agent: Annotated[str, typer.Option(help="Agent name")] = "support_drafting",
    tenant: Annotated[str, typer.Option(help="Tenant id")] = "demo",
    caller: Annotated[str, typer.Option(help="Caller principal id")] = "cli",
    run: Annotated[
        str, typer.Option("--run", help='The run, as JSON: {"input": {...}, "calls": {...}}')
    ] = "{}",
    provenance: Annotated[
        str, typer.Option(help='Where each argument came from, as JSON: {"order_id": "untrusted"}')
    ] = "{}",
    facts: Annotated[
        str, typer.Option(help='Fact values, as JSON: {"order_customer": "C-1"}; others fail closed')
    ] = "{}",
    policy: PolicyOption = None,
) -> None:
    """Print the verdict the policy gives a tool call, and the rule that produced it (as JSON)."""
    from approvals.policy import evaluate_without_facts
    from tools.registry import get_tool

    settings = Settings()
    arguments = json_arg("--args", args)
    run_context, origins, known = (
        json_arg("--run", run),
        json_arg("--provenance", provenance),
        json_arg("--facts", facts),
    )
    found = get_tool(tool)
    kind = found.kind if found else "write"
    loaded = _load(policy or settings.policy_path, settings)
    verdict = evaluate_without_facts(
        loaded,
        "not given with --facts",
        tool=tool,
        kind=kind,
        args=arguments,
        agent=agent,
        tenant=tenant,
        caller=caller,
        run=run_context,
        provenance=origins,
        facts=known,
    )
    typer.echo(
        json.dumps(
            {"tool": tool, "kind": kind, "known_tool": found is not None, **verdict.to_dict()}, indent=2
        )
    )


@app.command("facts")
def policy_facts() -> None:
    """List the facts policy conditions can read as ``fact.<name>(...)``: parameters, value and meaning."""
    from tools.registry import FACTS, load_all

    load_all()
    for name, fact in sorted(FACTS.items()):
        params = ", ".join(f"{p}: {kind}" for p, kind in fact.params)
        typer.echo(f"fact.{name}({params}) -> {fact.returns}")
        typer.echo(f"    {fact.description}")


@app.command("diff")
def policy_diff(
    old: Annotated[Path, typer.Argument(help="The policy in force")],
    new: Annotated[Path, typer.Argument(help="The proposed policy")],
    since: Annotated[str, typer.Option(help="How far back to replay recorded calls, e.g. 30d")] = "30d",
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's calls")] = None,
    show: Annotated[int, typer.Option(help="Calls listed per kind of change", min=0)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the changes as JSON")] = False,
) -> None:
    """Replay the recorded tool calls under OLD and NEW and print what would change: calls newly allowed,
    newly gated (sent to people) and newly denied. Exit code 0 either way: it is evidence, not a gate."""
    from approvals.policy import parse_duration
    from approvals.replay import compare
    from approvals.repositories import policy_calls
    from countersign.db import make_engine, session_factory
    from tools.business import BusinessStore
    from tools.registry import fact_lookup

    try:
        seconds = parse_duration(since)
    except (ValueError, TypeError) as e:
        fail(f"--since: {e}")
    settings = Settings()
    before, after = _load(old, settings), _load(new, settings)
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)

    async def go() -> Any:
        engine = make_engine(settings.resolved_database_url())
        store = BusinessStore.from_url(settings.resolved_business_database_url())
        caches: dict[str, dict[str, Any]] = {}

        async def lookup(tenant_id: str, name: str, args: list[Any]) -> Any:
            return await fact_lookup(store, tenant_id, caches.setdefault(tenant_id, {}))(name, args)

        try:
            async with session_factory(engine)() as s:
                calls = await policy_calls.since(s, start, tenant)
            return await compare(before, after, calls, lookup)
        finally:
            await engine.dispose()
            await store.engine.dispose()

    result = asyncio.run(go())
    groups = result.by_kind()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "calls": result.calls,
                    "since": start.isoformat(),
                    "rule_changes": result.rule_changes,
                    "facts_looked_up": sorted(result.looked_up),
                    **{
                        kind: [
                            {
                                "run_id": c.call.run_id,
                                "tool": c.call.tool,
                                "old": {"outcome": c.old.outcome, "rule": c.old.rule},
                                "new": {"outcome": c.new.outcome, "rule": c.new.rule},
                            }
                            for c in changes
                        ]
                        for kind, changes in groups.items()
                    },
                },
                indent=2,
            )
        )
        return
    typer.echo(
        f"{result.calls} recorded tool call(s) since {start:%Y-%m-%d %H:%M} UTC, "
        f"judged under {old} and under {new}"
    )
    for kind, changes in groups.items():
        typer.echo(f"{kind}: {len(changes)}")
        for c in changes[:show]:
            typer.echo(
                f"  {c.call.tool} in run {c.call.run_id} ({c.call.agent}): "
                f"{c.old.outcome} ({c.old.rule}) -> {c.new.outcome} ({c.new.rule})"
            )
        if len(changes) > show:
            typer.echo(f"  ... and {len(changes) - show} more")
    typer.echo(f"same outcome by another rule: {result.rule_changes}")
    if result.looked_up:
        typer.echo(
            "facts read from today's records (not recorded with the call): "
            + ", ".join(sorted(result.looked_up))
        )
