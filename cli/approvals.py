"""``countersign approvals``: list, show and decide approval requests from a terminal, over the API (the same
checks as the console and ``POST /v1/approvals/{id}/decisions``)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer

from cli.common import fail
from countersign.settings import Settings

app = typer.Typer(help="List, show and decide approval requests (over the API).", no_args_is_help=True)

KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        envvar="COUNTERSIGN_API_KEY",
        help="API key of an approver or auditor (default under `countersign dev`: approver-alice's)",
    ),
]
ApiOption = Annotated[
    str | None, typer.Option("--api-url", envvar="COUNTERSIGN_API_URL", help="Default: the local API")
]


def _key(settings: Settings, given: str | None) -> str:
    if given:
        return given
    keys_file: Path = settings.data_dir / "dev-keys.json"
    if keys_file.exists():
        keys = json.loads(keys_file.read_text())
        if "approver-alice" in keys:
            return str(keys["approver-alice"]["key"])
    fail("--key: give an approver's API key (or set COUNTERSIGN_API_KEY)")
    raise AssertionError


def _client(key: str | None, api_url: str | None) -> httpx.Client:
    settings = Settings()
    base = api_url or f"http://127.0.0.1:{settings.api_port}"
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {_key(settings, key)}"}, timeout=60)


def _call(http: httpx.Client, method: str, path: str, **kw: Any) -> Any:
    try:
        r = http.request(method, path, **kw)
    except httpx.HTTPError as e:
        fail(f"cannot reach the API at {http.base_url}: {e}")
        raise
    if r.status_code >= 400:
        try:
            problem = r.json()
            fail(f"{problem.get('title')}: {problem.get('detail')}", 1)
        except ValueError:
            fail(f"the API answered {r.status_code}", 1)
    return r.json()


def _left(expires_at: str | None) -> str:
    if not expires_at:
        return "-"
    seconds = (dt.datetime.fromisoformat(expires_at) - dt.datetime.now(dt.UTC)).total_seconds()
    if seconds <= 0:
        return "overdue"
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60} min" if hours else f"{rest // 60} min"


def _summary(arguments: dict[str, Any], width: int = 60) -> str:
    text = ", ".join(f"{k}={v}" for k, v in arguments.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def _approvals(item: dict[str, Any]) -> int:
    count = 0
    for d in item.get("decisions") or []:
        count = 1 if d["action"] == "edit" else count + (d["action"] == "approve")
    return count


@app.command("list")
def list_requests(
    status: Annotated[
        str, typer.Option(help="pending, approved, rejected, expired, responded, cancelled")
    ] = ("pending"),
    agent: Annotated[str | None, typer.Option(help="Only this agent's requests")] = None,
    key: KeyOption = None,
    api_url: ApiOption = None,
) -> None:
    """The tenant's approval requests (pending by default), newest first."""
    with _client(key, api_url) as http:
        page = _call(http, "GET", "/v1/approvals", params={"status": status, "limit": 100})
    items = [i for i in page["items"] if not agent or i["agent"] == agent]
    if not items:
        typer.echo(f"no {status} approval requests")
        return
    typer.echo(f"{'ID':36}  {'AGENT':20}  {'TOOL':22}  {'APPROVALS':9}  {'TIME LEFT':12}  ARGUMENTS")
    for i in items:
        quorum = f"{_approvals(i)}/{i['quorum']}"
        typer.echo(
            f"{i['id']:36}  {i['agent']:20}  {i['tool']:22}  {quorum:9}  {_left(i['expires_at']):12}  "
            f"{_summary(i['arguments'])}"
        )


def _show(item: dict[str, Any]) -> None:
    typer.echo(
        f"request     {item['id']}  ({item['status']}, {_approvals(item)} of {item['quorum']} approvals)"
    )
    typer.echo(f"run         {item['run_id']}  agent {item['agent']}")
    typer.echo(f"tool        {item['tool']}")
    typer.echo(f"rule        {item['rule']} (policy {item['policy_version']})")
    typer.echo(f"deciders    {', '.join(item['required_roles'])}")
    typer.echo(f"expires     {item['expires_at'] or '-'} ({_left(item['expires_at'])} left)")
    typer.echo(f"reason      {item.get('reason') or '-'}")
    typer.echo("arguments")
    typer.echo("  " + json.dumps(item["arguments"], indent=2, sort_keys=True).replace("\n", "\n  "))
    typer.echo(f"arguments_hash  {item['arguments_hash']}")
    for d in item.get("decisions") or []:
        said = d.get("reason") or d.get("message") or ""
        typer.echo(f"decision    {d['created_at']}  {d['principal_id']}  {d['action']}  {said}")


@app.command("show")
def show(request_id: str, key: KeyOption = None, api_url: ApiOption = None) -> None:
    """One request: what would run, why, the policy that gated it, its arguments and their hash."""
    with _client(key, api_url) as http:
        _show(_call(http, "GET", f"/v1/approvals/{request_id}"))


@app.command("decide")
def decide(
    request_id: str,
    approve: Annotated[bool, typer.Option("--approve", help="Approve the arguments shown")] = False,
    reject: Annotated[
        str | None, typer.Option("--reject", metavar="REASON", help="Reject, saying why")
    ] = None,
    edit: Annotated[
        str | None, typer.Option("--edit", metavar="JSON", help="Approve these arguments instead")
    ] = None,
    respond: Annotated[
        str | None, typer.Option("--respond", metavar="TEXT", help="Answer the agent instead")
    ] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation")] = False,
    key: KeyOption = None,
    api_url: ApiOption = None,
) -> None:
    """Decide a request: it is shown first (arguments and their hash), and the decision is bound to that hash,
    so arguments changed in the meantime are refused rather than decided blind."""
    chosen = [
        name
        for name, v in (
            ("--approve", approve),
            ("--reject", reject),
            ("--edit", edit),
            ("--respond", respond),
        )
        if v
    ]
    if len(chosen) != 1:
        fail("give exactly one of --approve, --reject REASON, --edit JSON, --respond TEXT")
    body: dict[str, Any]
    if approve:
        body = {"action": "approve"}
    elif reject is not None:
        body = {"action": "reject", "reason": reject}
    elif respond is not None:
        body = {"action": "respond", "message": respond}
    else:
        try:
            arguments = json.loads(edit or "")
        except json.JSONDecodeError as e:
            fail(f"--edit: not valid JSON ({e.msg} at position {e.pos})")
            raise
        if not isinstance(arguments, dict):
            fail("--edit: must be a JSON object of the tool's arguments")
        body = {"action": "edit", "arguments": arguments}
    with _client(key, api_url) as http:
        item = _call(http, "GET", f"/v1/approvals/{request_id}")
        _show(item)
        if item["status"] != "pending":
            fail(f"the request is {item['status']}: nothing to decide", 1)
        if not yes and not typer.confirm(f"{body['action']} request {request_id}?"):
            fail("nothing decided", 1)
        body["arguments_hash"] = item["arguments_hash"]
        result = _call(http, "POST", f"/v1/approvals/{request_id}/decisions", json=body)
    typer.echo(
        f"decided: {result['action']}; the request is now {result['request_status']} "
        f"({result['approvals']} of {result['quorum']} approvals)"
    )
