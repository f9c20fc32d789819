"""The ``countersign`` command line: dev stack, worker, migrations, runs, keys, policy and audit."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from cli import approvals as approvals_cli
from cli import evaluate
from cli import policy as policy_cli
from cli.common import fail, json_arg
from countersign.settings import Settings

app = typer.Typer(help="Countersign: durable AI agents that ask before they act.", no_args_is_help=True)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
audit_app = typer.Typer(help="Verify and export the audit ledger.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Add, list and remove a tenant's webhook endpoints.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(policy_cli.app, name="policy")
app.add_typer(audit_app, name="audit")
app.add_typer(approvals_cli.app, name="approvals")
app.add_typer(evaluate.app, name="eval")
app.add_typer(evaluate.report_app, name="report")


def _cli_actor() -> str:
    import getpass

    return f"cli:{getpass.getuser()}"


def _logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    for noisy in ("alembic", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@app.command()
def dev(
    demo: Annotated[bool, typer.Option(help="Run the demo agent run once the stack is up.")] = False,
    workers: Annotated[int, typer.Option(min=1, max=32, help="Worker processes to run.")] = 1,
) -> None:
    """Start Temporal (dev server), the workers and the API on the embedded defaults; Ctrl-C stops all.

    A worker or the API that crashes is started again, so a run survives a `kill -9` of its worker.
    """
    from cli.dev import run_dev

    _logging()
    raise typer.Exit(run_dev(Settings(), demo=demo, workers=workers))


@app.command()
def worker(
    webhooks: Annotated[
        bool, typer.Option(help="Also run the webhook worker (delivery activities) in this process.")
    ] = True,
) -> None:
    """Run a worker on the configured Temporal and task queue (and, by default, the webhook worker)."""
    from workers.worker import serve

    _logging()
    asyncio.run(serve(Settings(), webhooks=webhooks))


@app.command()
def migrate() -> None:
    """Apply database migrations."""
    from countersign.migrate import upgrade

    upgrade(Settings().resolved_database_url())
    typer.echo("database is at the newest schema")


def _api_key(settings: Settings, given: str | None) -> str:
    if given:
        return given
    keys_file = settings.data_dir / "dev-keys.json"
    if keys_file.exists():
        return str(json.loads(keys_file.read_text())["trigger"]["key"])
    fail("--api-key (or COUNTERSIGN_API_KEY) is required when there are no dev keys")
    raise AssertionError


@app.command()
def run(
    agent: Annotated[str, typer.Argument(help="Agent name, e.g. support_drafting")],
    input: Annotated[str, typer.Option("--input", help="The agent's input as a JSON object")] = "{}",
    wait: Annotated[bool, typer.Option(help="Wait until the run completes or pauses, then print it")] = False,
    api_url: Annotated[str | None, typer.Option(envvar="COUNTERSIGN_API_URL")] = None,
    api_key: Annotated[str | None, typer.Option(envvar="COUNTERSIGN_API_KEY")] = None,
    idempotency_key: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Start a run over the API (the dev trigger key by default) and print it."""
    import httpx

    settings = Settings()
    body = {"agent": agent, "input": json_arg("--input", input)}
    base = api_url or f"http://127.0.0.1:{settings.api_port}"
    headers = {"Authorization": f"Bearer {_api_key(settings, api_key)}"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    with httpx.Client(base_url=base, headers=headers, timeout=30) as http:
        try:
            r = http.post("/v1/runs", json=body)
        except httpx.HTTPError as e:
            fail(f"cannot reach the API at {base}: {e}")
        if r.status_code >= 400:
            problem = r.json()
            fail(f"{problem.get('title')}: {problem.get('detail')}", 1)
        run = r.json()
        deadline = time.monotonic() + 300
        while wait and run["status"] == "running" and time.monotonic() < deadline:
            time.sleep(0.3)
            run = http.get(f"/v1/runs/{run['id']}").json()
    typer.echo(json.dumps(run, indent=2))
    if run["status"] == "failed":
        raise typer.Exit(1)


def _parse_expiry(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    from approvals.policy import parse_duration

    try:
        seconds = parse_duration(text)
    except (ValueError, TypeError) as e:
        fail(f"--expires-in: {e}")
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


@keys_app.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant id; created if new")],
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="Role (repeat): trigger, approver:<group>, auditor, admin"),
    ] = None,
    roles: Annotated[str | None, typer.Option(help="Roles, comma separated")] = None,
    name: Annotated[str | None, typer.Option(help="What the key is for")] = None,
    agent: Annotated[list[str] | None, typer.Option("--agent", help="Agents it may trigger (repeat)")] = None,
    expires_in: Annotated[str | None, typer.Option(help="Lifetime, e.g. 90d")] = None,
) -> None:
    """Create an API key. The key is printed once and never stored."""
    from api.auth import create_key, ensure_tenant
    from approvals.policy import declared_roles

    settings = Settings()
    known = settings.known_roles() | declared_roles(settings.policy_path)
    wanted = [*(role or []), *[r.strip() for r in (roles or "").split(",") if r.strip()]]
    if not wanted:
        fail("--role: give at least one role")
    unknown = sorted(set(wanted) - known)
    if unknown:
        fail(f"--role: unknown role(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    expires_at = _parse_expiry(expires_in)

    async def go() -> tuple[str, str, str]:
        from countersign.db import make_engine, session_factory, transaction

        engine = make_engine(settings.resolved_database_url())
        async with transaction(session_factory(engine)) as s:
            await ensure_tenant(s, tenant)
            row, secret = await create_key(
                s,
                tenant_id=tenant,
                name=name or f"{tenant} key",
                roles=wanted,
                agents=agent or None,
                expires_at=expires_at,
            )
        await engine.dispose()
        return row.id, row.prefix, secret

    key_id, prefix, secret = asyncio.run(go())
    typer.echo(
        f"key id:  {key_id}\nprefix:  {prefix}\ntenant:  {tenant}\nroles:   {', '.join(sorted(wanted))}"
    )
    typer.echo("Store this key now; it is not shown again:")
    typer.echo(secret)


@keys_app.command("list")
def keys_list(tenant: Annotated[str | None, typer.Option(help="Only this tenant's keys")] = None) -> None:
    """List keys by prefix, with roles, status and last use."""
    from countersign.db import make_engine, session_factory
    from countersign.models import ApiKey
    from countersign.repositories import keys

    settings = Settings()

    async def go() -> list[ApiKey]:
        engine = make_engine(settings.resolved_database_url())
        async with session_factory(engine)() as s:
            rows = await keys.oldest_first(s, tenant)
        await engine.dispose()
        return rows

    now = dt.datetime.now(dt.UTC)
    typer.echo(f"{'prefix':<10} {'tenant':<16} {'status':<8} {'last used':<20} roles / name")
    for k in asyncio.run(go()):
        status = (
            "revoked" if k.revoked_at else "expired" if k.expires_at and k.expires_at <= now else "active"
        )
        used = k.last_used_at.strftime("%Y-%m-%d %H:%M:%S") if k.last_used_at else "never"
        typer.echo(f"{k.prefix:<10} {k.tenant_id:<16} {status:<8} {used:<20} {','.join(k.roles)} / {k.name}")


@keys_app.command("revoke")
def keys_revoke(
    key: Annotated[str, typer.Argument(help="The key's prefix (from `keys list`) or the key")],
) -> None:
    """Revoke a key: it is refused (401) from the next request on."""
    from api.auth import KEY_PREFIX, hash_key
    from approvals import audit
    from countersign.db import make_engine, session_factory, transaction, utcnow
    from countersign.repositories import keys

    settings = Settings()
    key = key.strip()
    # Whatever an operator copies: the prefix `keys list` prints, the key's visible start (cs_<prefix>), or
    # the whole key.
    prefix = key.removeprefix(KEY_PREFIX).split("_", 1)[0]

    async def go() -> str | None:
        engine = make_engine(settings.resolved_database_url())
        async with transaction(session_factory(engine)) as s:
            row = await keys.by_prefix_or_hash(s, prefix, hash_key(key))
            if row is not None and row.revoked_at is None:
                row.revoked_at = utcnow()
                await audit.append(
                    s,
                    audit.NewEvent(
                        id=f"key:{row.id}:revoked",
                        type="key.revoked",
                        actor=_cli_actor(),
                        tenant_id=row.tenant_id,
                        data={"key_id": row.id, "prefix": row.prefix},
                    ),
                )
        await engine.dispose()
        return None if row is None else row.prefix

    done = asyncio.run(go())
    if done is None:
        fail(f"key: no key with prefix {prefix!r} (see `countersign keys list`)", 1)
    typer.echo(f"revoked {done}")


@webhooks_app.command("add")
def webhooks_add(
    tenant: Annotated[str, typer.Option(help="Tenant id (must exist)")],
    url: Annotated[str, typer.Option(help="http(s) URL that receives the events")],
    event: Annotated[
        list[str] | None,
        typer.Option("--event", help="Event type (repeat); all event types when omitted"),
    ] = None,
    description: Annotated[str | None, typer.Option(help="What the endpoint is for")] = None,
    format: Annotated[
        str,
        typer.Option(help="standard (signed event JSON) or slack (a chat message for an incoming webhook)"),
    ] = "standard",
) -> None:
    """Add an endpoint. Its signing secret is printed once."""
    from approvals import webhooks
    from countersign.db import make_engine, session_factory, transaction
    from countersign.repositories import keys

    settings = Settings()
    unknown = sorted(set(event or ()) - set(webhooks.EVENT_TYPES))
    if unknown:
        fail(f"--event: unknown event type(s) {', '.join(unknown)}; known: {', '.join(webhooks.EVENT_TYPES)}")
    if format not in webhooks.FORMATS:
        fail(f"--format: one of {', '.join(webhooks.FORMATS)}")
    try:
        asyncio.run(webhooks.check_url(url, allow_private=settings.webhook_allow_private))
    except webhooks.UnsafeUrl as e:
        fail(f"--url: {e}")

    async def go() -> tuple[str, str, list[str]] | None:
        engine = make_engine(settings.resolved_database_url())
        try:
            async with transaction(session_factory(engine)) as s:
                if await keys.get_tenant(s, tenant) is None:
                    return None
                row = await webhooks.create_endpoint(
                    s, tenant_id=tenant, url=url, events=event, description=description, format=format
                )
                return row.id, row.secret, row.events
        finally:
            await engine.dispose()

    made = asyncio.run(go())
    if made is None:
        fail(f"--tenant: no tenant {tenant!r} (create one with `countersign keys create --tenant`)", 1)
        return
    endpoint_id, secret, events = made
    typer.echo(f"webhook id: {endpoint_id}\ntenant:     {tenant}\nevents:     {', '.join(events)}")
    typer.echo("Signing secret (store it now; it is not shown again):")
    typer.echo(secret)


@webhooks_app.command("list")
def webhooks_list(tenant: Annotated[str, typer.Option(help="Tenant id")]) -> None:
    """List a tenant's active endpoints (never their secrets)."""
    from approvals.models import WebhookEndpoint
    from approvals.repositories import webhooks
    from approvals.webhooks import EVENT_TYPES
    from countersign.db import make_engine, session_factory

    settings = Settings()

    async def go() -> list[WebhookEndpoint]:
        engine = make_engine(settings.resolved_database_url())
        async with session_factory(engine)() as s:
            rows = await webhooks.active_endpoints(s, tenant)
        await engine.dispose()
        return rows

    typer.echo(f"{'id':<36} {'events':<24} url")
    for w in asyncio.run(go()):
        events = "all" if set(w.events) >= set(EVENT_TYPES) else ",".join(w.events)
        typer.echo(f"{w.id:<36} {events:<24} {w.url}")


@webhooks_app.command("remove")
def webhooks_remove(
    endpoint_id: Annotated[str, typer.Argument(help="The endpoint id (from `webhooks list`)")],
    tenant: Annotated[str, typer.Option(help="Tenant id the endpoint belongs to")],
) -> None:
    """Remove an endpoint: nothing more is sent to it, pending retries stop; past deliveries stay."""
    from approvals.repositories.webhooks import remove_endpoint
    from countersign.db import make_engine, session_factory, transaction

    settings = Settings()

    async def go() -> bool:
        engine = make_engine(settings.resolved_database_url())
        async with transaction(session_factory(engine)) as s:
            done = await remove_endpoint(s, tenant, endpoint_id)
        await engine.dispose()
        return done

    if not asyncio.run(go()):
        fail(f"endpoint: tenant {tenant!r} has no endpoint {endpoint_id!r}", 1)
    typer.echo(f"removed {endpoint_id}")


@audit_app.command("keygen")
def audit_keygen() -> None:
    """Print a new Ed25519 checkpoint signing key (keep it secret) and its public key (for auditors)."""
    from approvals.checkpoints import load_private_key, new_private_key, public_key_text

    private = new_private_key()
    typer.echo(f"COUNTERSIGN_AUDIT_SIGNING_KEY={private}")
    typer.echo(f"COUNTERSIGN_AUDIT_PUBLIC_KEY={public_key_text(load_private_key(private))}")


@audit_app.command("checkpoint")
def audit_checkpoint() -> None:
    """Sign the ledger's current head now (workers also do it every COUNTERSIGN_AUDIT_CHECKPOINT_SECONDS)."""
    from approvals.checkpoints import write_checkpoint
    from countersign.db import make_engine, session_factory
    from workers.worker import signing_key

    settings = Settings()
    try:
        key = signing_key(settings)
    except ValueError as e:
        fail(str(e))
        raise
    if key is None:
        fail("COUNTERSIGN_AUDIT_SIGNING_KEY: not set (make one with `countersign audit keygen`)")
        raise typer.Exit(2)

    async def go() -> dict[str, Any] | None:
        engine = make_engine(settings.resolved_database_url())
        async with session_factory(engine)() as s, s.begin():
            written = await write_checkpoint(s, key, settings.resolved_checkpoint_file())
        await engine.dispose()
        return written

    written = asyncio.run(go())
    if written is None:
        typer.echo("the ledger's head is already checkpointed (or the ledger is empty)")
        return
    typer.echo(f"checkpoint: seq {written['seq']} hash {written['hash']} signed at {written['signed_at']}")


def _public_key(settings: Settings, option: str | None) -> Any:
    """The verifier's public key: --public-key (a key or a file), the setting, or the signing key's."""
    from approvals.checkpoints import BadKey, load_public_key

    if option:
        text = Path(option).read_text() if Path(option).is_file() else option
        where = "--public-key"
    elif settings.audit_public_key:
        text, where = settings.audit_public_key, "COUNTERSIGN_AUDIT_PUBLIC_KEY"
    elif settings.audit_signing_key is not None:
        text, where = settings.audit_signing_key.get_secret_value(), "COUNTERSIGN_AUDIT_SIGNING_KEY"
    else:
        return None
    try:
        return load_public_key(text)
    except BadKey as e:
        fail(f"{where}: {e}")
        raise


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Option(help="Folder to write events.jsonl and manifest.json into")],
    run: Annotated[str | None, typer.Option("--run", help="Only this run's events")] = None,
    since: Annotated[str | None, typer.Option(help="Only events at or after this ISO time")] = None,
) -> None:
    """Write ledger events as JSONL, the signed checkpoints, and a manifest (counts, sha256 of each file, the
    ledger's head hash)."""
    from approvals import checkpoints, export
    from countersign.db import make_engine, session_factory

    settings = Settings()
    start: dt.datetime | None = None
    if since:
        try:
            parsed = dt.datetime.fromisoformat(since)
        except ValueError:
            fail(f"--since: not an ISO time: {since!r}")
            raise
        start = parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)

    async def go() -> export.Export:
        engine = make_engine(settings.resolved_database_url())
        outside = await asyncio.to_thread(checkpoints.read_file, settings.resolved_checkpoint_file())
        async with session_factory(engine)() as s:
            result = await export.build(s, outside_checkpoints=outside, run=run, since=start)
        await engine.dispose()
        return result

    result = asyncio.run(go())
    result.write(out)
    m = result.manifest
    typer.echo(
        f"exported {m['count']} events and {m['checkpoints']} checkpoints to {out} "
        f"(ledger head {m['ledger_head']})"
    )


@audit_app.command("verify")
def audit_verify(
    export: Annotated[
        Path | None, typer.Option(help="Verify an export folder instead of the database")
    ] = None,
    public_key: Annotated[
        str | None,
        typer.Option(
            help="Checkpoint public key, or a file holding it (default: COUNTERSIGN_AUDIT_PUBLIC_KEY)"
        ),
    ] = None,
    since_checkpoint: Annotated[
        bool,
        typer.Option(
            "--since-checkpoint",
            help="Trust the newest valid checkpoint for the events it covers; recompute only the rest",
        ),
    ] = False,
) -> None:
    """Recompute the ledger's hash chain and check its signed checkpoints; print OK or the first problem
    (exit 1)."""
    from approvals import checkpoints
    from countersign.db import make_engine, session_factory

    settings = Settings()
    public = _public_key(settings, public_key)
    if since_checkpoint and public is None:
        fail(
            "--since-checkpoint: needs the checkpoints' public key "
            "(--public-key or COUNTERSIGN_AUDIT_PUBLIC_KEY)"
        )
    if export is not None:
        _verify_export(export, public)
        return

    async def go() -> checkpoints.LedgerCheck:
        engine = make_engine(settings.resolved_database_url())
        outside = await asyncio.to_thread(checkpoints.read_file, settings.resolved_checkpoint_file())
        async with session_factory(engine)() as s:
            result = await checkpoints.verify_ledger(s, public, outside, since_checkpoint=since_checkpoint)
        await engine.dispose()
        return result

    result = asyncio.run(go())
    chain, anchors = result.chain, result.anchors
    if anchors is not None and not anchors.ok:
        typer.echo(f"BROKEN: {anchors.problem}")
        raise typer.Exit(1)
    if not chain.ok:
        typer.echo(f"BROKEN at event seq {chain.broken_at}: {chain.problem} ({chain.checked} events read)")
        raise typer.Exit(1)
    typer.echo(f"OK: {chain.checked} events, head {chain.head_hash}")
    typer.echo(_anchor_line(anchors, since_checkpoint))


def _anchor_line(anchors: Any, since_checkpoint: bool = False) -> str:
    if anchors is None:
        return "checkpoints: not checked (no public key: --public-key or COUNTERSIGN_AUDIT_PUBLIC_KEY)"
    if not anchors.checkpoints:
        return f"checkpoints: none yet; removal of any of the {anchors.head_seq} events would not be proven"
    trusted = " (trusted, not recomputed)" if since_checkpoint else ""
    return (
        f"checkpoints: {anchors.checkpoints} valid; nothing up to seq {anchors.anchored_seq} was removed or "
        f"changed (signed at {anchors.anchored_at}){trusted}; {anchors.unanchored} later events are not yet "
        "covered by a checkpoint"
    )


def _verify_export(folder: Path, public: Any) -> None:
    import hashlib

    from approvals import checkpoints
    from approvals.audit import check_exported

    try:
        manifest = json.loads((folder / "manifest.json").read_text())
        body = (folder / "events.jsonl").read_text()
        cp_file = folder / "checkpoints.jsonl"
        cp_body = cp_file.read_text() if cp_file.exists() else ""
    except (OSError, ValueError) as e:
        fail(f"--export: cannot read the export: {e}", 1)
    if hashlib.sha256(body.encode()).hexdigest() != manifest.get("events_sha256"):
        typer.echo("BROKEN: events.jsonl does not match the manifest's sha256")
        raise typer.Exit(1)
    if (
        "checkpoints_sha256" in manifest
        and hashlib.sha256(cp_body.encode()).hexdigest() != manifest["checkpoints_sha256"]
    ):
        typer.echo("BROKEN: checkpoints.jsonl does not match the manifest's sha256")
        raise typer.Exit(1)
    lines = [json.loads(line) for line in body.splitlines() if line.strip()]
    result = check_exported(lines)
    if not result.ok:
        typer.echo(f"BROKEN at event seq {result.broken_at}: {result.problem}")
        raise typer.Exit(1)
    typer.echo(f"OK: {result.checked} exported events, manifest and hashes match")
    cps = [json.loads(line) for line in cp_body.splitlines() if line.strip()]
    if public is None or not cps:
        typer.echo(_anchor_line(None) if public is None else "checkpoints: none in the export")
        return
    full = not any((manifest.get("filter") or {}).values())
    if not full:
        bad = [c["seq"] for c in cps if not checkpoints.signature_ok(c, public)]
        if bad:
            typer.echo(f"BROKEN: checkpoint at seq {bad[0]} has an invalid signature")
            raise typer.Exit(1)
        typer.echo(f"checkpoints: {len(cps)} validly signed (a filtered export: not matched against events)")
        return
    anchors = checkpoints.check_against(
        cps, public, {int(e["seq"]): str(e["hash"]) for e in lines}, int(lines[-1]["seq"]) if lines else 0
    )
    if not anchors.ok:
        typer.echo(f"BROKEN: {anchors.problem}")
        raise typer.Exit(1)
    typer.echo(_anchor_line(anchors))


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
    sys.exit(0)
