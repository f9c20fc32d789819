"""``make bench``: Countersign's default stack against a bare Temporal workflow, measured in the same run.

Starts ``countersign dev`` (Temporal dev server, SQLite, one worker process, the API) in a temporary data
directory and, beside it, a baseline worker process (``bench.bare``) on the same Temporal server. The baseline
does, for each measured run, one no-op activity per model call and per tool execution of that run: the fewest
round trips the same work can take. Every figure is a ratio against the baseline measured a moment before or
after it (interleaved A/B repetitions; medians and p90), so the machine's speed and load cancel out; the
absolute figures are printed too and vary from machine to machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from bench.bare import BareInput, BareWorkflow

console = Console()
BARE_QUEUE = "bench-bare"
# The run worker's line (the webhook worker's says "webhook worker polling").
RUN_WORKER_POLLING = "countersign.worker worker polling"


@dataclass
class Row:
    """One line of the report: what, ours, baseline, ratio and its target."""

    name: str
    ours: str
    bare: str
    ratio: float | None
    target: str
    ok: bool | None


@dataclass
class Bench:
    """The stack under test and the baseline beside it."""

    root: Path
    api: str
    keys: dict[str, Any]
    client: Client
    dev: subprocess.Popen[bytes]
    bare: subprocess.Popen[bytes]
    bare_argv: list[str]
    http: httpx.AsyncClient
    rows: list[Row] = field(default_factory=list)
    bare_n: int = 0

    def key(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[name]['key']}"}

    # -- ours ---------------------------------------------------------------------------------------------
    async def post_run(self, ticket: str) -> str:
        # A careful client: a 503 (the database or Temporal busy) is retried with the same idempotency key.
        # A dropped connection (the server closed an idle keep-alive one as it was reused) is retried too.
        key = str(uuid.uuid4())
        for _ in range(50):
            try:
                r = await self.http.post(
                    f"{self.api}/v1/runs",
                    json={"agent": "support_drafting", "input": {"ticket_id": ticket}},
                    headers={**self.key("trigger"), "Idempotency-Key": key},
                )
            except httpx.TransportError:
                await asyncio.sleep(0.1)
                continue
            if r.status_code != 503:
                break
            await asyncio.sleep(float(r.headers.get("retry-after", "1")))
        if r.status_code not in (200, 201):
            raise RuntimeError(f"POST /v1/runs -> {r.status_code}: {r.text[:200]}")
        return str(r.json()["id"])

    async def finish(self, run_id: str) -> None:
        await self.client.get_workflow_handle(f"run-{run_id}").result()

    async def run_once(self, ticket: str = "T-1001") -> str:
        run_id = await self.post_run(ticket)
        await self.finish(run_id)
        return run_id

    async def paused(self, run_id: str, timeout: float = 600, poll: float = 0.02) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = await self.http.get(
                    f"{self.api}/v1/approvals?status=pending&run_id={run_id}",
                    headers=self.key("approver-alice"),
                )
            except httpx.TransportError:
                await asyncio.sleep(0.1)
                continue
            items = r.json().get("items", []) if r.status_code == 200 else []
            if items:
                return dict(items[0])
            await asyncio.sleep(poll)
        raise RuntimeError(f"run {run_id} never paused")

    async def approve(self, req: dict[str, Any]) -> int:
        r = await self.http.post(
            f"{self.api}/v1/approvals/{req['id']}/decisions",
            json={"action": "approve", "arguments_hash": req["arguments_hash"]},
            headers=self.key("approver-alice"),
        )
        return r.status_code

    async def ledger_counts(self, run_id: str) -> dict[str, int]:
        r = await self.http.get(
            f"{self.api}/v1/audit/events?run_id={run_id}&limit=100", headers=self.key("auditor")
        )
        counts: dict[str, int] = {}
        for e in r.json()["items"]:
            counts[e["type"]] = counts.get(e["type"], 0) + 1
        return counts

    # -- baseline -----------------------------------------------------------------------------------------
    async def bare_start(self, inp: BareInput) -> Any:
        self.bare_n += 1
        return await self.client.start_workflow(
            BareWorkflow.run, inp, id=f"bare-{uuid.uuid4().hex}", task_queue=BARE_QUEUE
        )

    async def bare_once(self, steps: int) -> None:
        await (await self.bare_start(BareInput(steps=steps))).result()


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def worker_pid(dev: subprocess.Popen[bytes]) -> int | None:
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    for line in out.splitlines():
        pid, ppid, args = line.split(None, 2)
        if int(ppid) == dev.pid and "cli worker" in args and "--no-webhooks" not in args:
            return int(pid)
    return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stack_cpu(b: Bench) -> dict[str, float]:
    """CPU seconds used so far by each part of the stack: Countersign's workers and API, the Temporal server,
    and the baseline's worker."""
    out = subprocess.run(["ps", "-eo", "pid=,ppid=,args="], capture_output=True, text=True).stdout
    used = {"countersign": 0.0, "server": 0.0, "bare": cpu_seconds(b.bare.pid)}
    for line in out.splitlines():
        pid, ppid, args = line.split(None, 2)
        if int(ppid) != b.dev.pid:
            continue
        if "cli worker" in args or "uvicorn" in args:
            used["countersign"] += cpu_seconds(int(pid))
        elif "temporal" in args and "server" in args:
            used["server"] += cpu_seconds(int(pid))
    return used


async def idle(b: Bench, timeout: float = 120, window: float = 0.5, busy: float = 0.1) -> None:
    """Until Countersign's processes and the server together use less than ``busy`` of one core over a
    ``window`` (or ``timeout`` passed)."""
    deadline = time.monotonic() + timeout
    before = await asyncio.to_thread(stack_cpu, b)
    while time.monotonic() < deadline:
        await asyncio.sleep(window)
        after = await asyncio.to_thread(stack_cpu, b)
        used = sum(after[k] - before[k] for k in ("countersign", "server"))
        if used < busy * window:
            return
        before = after


async def interleaved(
    n: int,
    a: Callable[[], Awaitable[float]],
    b: Callable[[], Awaitable[float]],
    progress: Progress,
    what: str,
) -> tuple[list[float], list[float]]:
    """``n`` A/B pairs, alternating which goes first, so drift in the machine's load hits both sides."""
    task = progress.add_task(what, total=n)
    xs: list[float] = []
    ys: list[float] = []
    for i in range(n):
        if i % 2 == 0:
            xs.append(await a())
            ys.append(await b())
        else:
            ys.append(await b())
            xs.append(await a())
        progress.advance(task)
    return xs, ys


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    t = time.perf_counter()
    await fn()
    return time.perf_counter() - t


def add(
    b: Bench,
    name: str,
    ours: float,
    bare: float,
    unit: str,
    target: str,
    ok: bool | None,
    ratio: float | None = None,
) -> None:
    r = ratio if ratio is not None else (ours / bare if bare else None)
    b.rows.append(Row(name, f"{ours:.3f} {unit}", f"{bare:.3f} {unit}", r, target, ok))


async def bench_latency(b: Bench, progress: Progress, reps: int) -> None:
    # The baseline's steps: one per model call and per tool execution of the measured run.
    run_id = await b.run_once()
    counts = await b.ledger_counts(run_id)
    steps = counts.get("model.called", 0) + counts.get("tool.executed", 0)
    ours, bare = await interleaved(
        reps, lambda: timed(b.run_once), lambda: timed(lambda: b.bare_once(steps)), progress, "run latency"
    )
    m, mb = statistics.median(ours), statistics.median(bare)
    add(b, f"run latency, median (T-1001, {steps} steps)", m, mb, "s", "≤ 1.15×", m / mb <= 1.15)
    add(b, "run latency, p90", pct(ours, 90), pct(bare, 90), "s", "", None)
    # Not a target: how long the server took to hand each workflow task to its worker. It varies from day to
    # day on the same machine (5 to 40 ms seen), and the side with more workflow tasks (the bare one) pays
    # it more often: read the ratios above with it.
    h = await b.bare_start(BareInput(steps=steps))
    await h.result()
    ours_wait = await task_dispatch(b.client.get_workflow_handle(f"run-{await b.run_once()}"))
    add(b, "workflow task dispatch, median (server)", ours_wait, await task_dispatch(h), "s", "", None)


async def task_dispatch(h: Any) -> float:
    """The median time from a workflow task's scheduling to its start, over the workflow's history."""
    waits: list[float] = []
    scheduled = None
    async for e in h.fetch_history_events():
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED:
            scheduled = e.event_time.ToDatetime()
        elif e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED and scheduled is not None:
            waits.append((e.event_time.ToDatetime() - scheduled).total_seconds())
    return statistics.median(waits)


async def bench_throughput(b: Bench, progress: Progress, n: int) -> None:
    run_id = await b.run_once()
    counts = await b.ledger_counts(run_id)
    steps = counts.get("model.called", 0) + counts.get("tool.executed", 0)
    task = progress.add_task(f"throughput at {n} concurrent runs", total=2)
    gate = asyncio.Semaphore(50)  # clients rarely open more connections than this

    async def ours_one() -> None:
        async with gate:
            run_id = await b.post_run("T-1001")
        await b.finish(run_id)

    async def bare_one() -> None:
        async with gate:
            h = await b.bare_start(BareInput(steps=steps))
        await h.result()

    c0 = await asyncio.to_thread(stack_cpu, b)
    t = time.perf_counter()
    await asyncio.gather(*(bare_one() for _ in range(n)))
    bare_rate = n / (time.perf_counter() - t)
    c1 = await asyncio.to_thread(stack_cpu, b)
    progress.advance(task)
    t = time.perf_counter()
    await asyncio.gather(*(ours_one() for _ in range(n)))
    ours_rate = n / (time.perf_counter() - t)
    c2 = await asyncio.to_thread(stack_cpu, b)
    progress.advance(task)
    add(
        b,
        f"throughput at {n} concurrent runs",
        ours_rate,
        bare_rate,
        "runs/s",
        "≥ 0.85×",
        ours_rate / bare_rate >= 0.85,
    )
    # Not targets: where the machine's CPU went, per run. Both sides share the server's cores, so a side whose
    # own processes need more CPU per run leaves the server less (this is what bounds the starts ratio).
    parts = (
        ("workers + API vs the bare worker", "countersign", "bare"),
        ("the Temporal server", "server", "server"),
    )
    for label, ours_part, bare_part in parts:
        ours_ms = 1000 * (c2[ours_part] - c1[ours_part]) / n
        bare_ms = 1000 * (c1[bare_part] - c0[bare_part]) / n
        add(b, f"  CPU per run at {n}: {label}", ours_ms, bare_ms, "ms", "", None)


async def waiting(h: Any) -> None:
    """Until the workflow has run a task and has no task or activity pending: it waits for something."""
    while True:
        d = (await h.describe()).raw_description
        if d.workflow_execution_info.history_length > 3 and not (
            d.pending_activities or d.HasField("pending_workflow_task")
        ):
            return
        await asyncio.sleep(0.01)


async def bench_decision(b: Bench, progress: Progress, reps: int) -> None:
    # Steps after the decision in a T-1002 run: the approved tool and the model turns that follow.
    run_id = await b.post_run("T-1002")
    req = await b.paused(run_id)
    before = await b.ledger_counts(run_id)
    await b.approve(req)
    await b.finish(run_id)
    after_counts = await b.ledger_counts(run_id)
    after = sum(after_counts.get(k, 0) - before.get(k, 0) for k in ("model.called", "tool.executed"))

    async def ours() -> float:
        run_id = await b.post_run("T-1002")
        req = await b.paused(run_id)
        # As the bare side: timed from when the workflow waits (the request shows in the inbox as soon as its
        # row commits, while the workflow task that opened it may still be finishing).
        await waiting(b.client.get_workflow_handle(f"run-{run_id}"))
        t = time.perf_counter()
        status = await b.approve(req)
        if status not in (200, 201):
            raise RuntimeError(f"decision -> {status}")
        await b.finish(run_id)
        return time.perf_counter() - t

    async def bare() -> float:
        h = await b.bare_start(BareInput(steps=0, wait=True, after=after))
        # Timed from when it waits: an update sent before the first workflow task completes would also time
        # the start.
        await waiting(h)
        t = time.perf_counter()
        await h.execute_update(BareWorkflow.decide)
        await h.result()
        return time.perf_counter() - t

    xs, ys = await interleaved(reps, ours, bare, progress, "decision → completion")
    m, mb = statistics.median(xs), statistics.median(ys)
    add(b, f"decision → completion, median ({after} steps)", m, mb, "s", "≤ 1.3×", m / mb <= 1.3)


async def bench_starts(b: Bench, progress: Progress, n: int, rounds: int) -> None:
    # The started workflows do the work of a run on both sides, so the server is as busy during both; each
    # batch's workflows finish before the next batch starts. Rounds alternate which side goes first.
    run_id = await b.run_once()
    counts = await b.ledger_counts(run_id)
    steps = counts.get("model.called", 0) + counts.get("tool.executed", 0)
    gate = asyncio.Semaphore(10)

    async def ours_one() -> str:
        async with gate:
            return await b.post_run("T-1001")

    async def bare_one() -> Any:
        async with gate:
            return await b.bare_start(BareInput(steps=steps))

    async def ours() -> float:
        t = time.perf_counter()
        ids = await asyncio.gather(*(ours_one() for _ in range(n)))
        rate = n / (time.perf_counter() - t)
        await asyncio.gather(*(b.finish(i) for i in ids))
        return rate

    async def bare() -> float:
        t = time.perf_counter()
        handles = await asyncio.gather(*(bare_one() for _ in range(n)))
        rate = n / (time.perf_counter() - t)
        await asyncio.gather(*(h.result() for h in handles))
        return rate

    xs, ys = await interleaved(rounds, ours, bare, progress, "POST /v1/runs vs start_workflow")
    m, mb = statistics.median(xs), statistics.median(ys)
    each = ", ".join(f"{x / y:.2f}" for x, y in zip(xs, ys, strict=True))
    add(
        b,
        f"starts/s, median of {rounds} rounds of {n}, 10 at a time (rounds: {each})",
        m,
        mb,
        "starts/s",
        "≥ 0.7×",
        m / mb >= 0.7,
    )


async def bench_restart(b: Bench, progress: Progress, log: Path) -> None:
    task = progress.add_task("worker restart → decidable", total=2)
    run_id = await b.post_run("T-1002")
    req = await b.paused(run_id)
    pid = worker_pid(b.dev)
    assert pid is not None, "no worker process under countersign dev"
    polls = log.read_text(errors="replace").count(RUN_WORKER_POLLING)
    os.kill(pid, signal.SIGKILL)
    spawned = time.perf_counter()
    while log.read_text(errors="replace").count(RUN_WORKER_POLLING) <= polls:
        await asyncio.sleep(0.02)
    polling = time.perf_counter()
    while (status := await b.approve(req)) not in (200, 201):
        if status != 503:
            raise RuntimeError(f"decision after restart -> {status}")
        await asyncio.sleep(0.05)
    decided = time.perf_counter()
    await b.finish(run_id)
    progress.advance(task)

    # The baseline: the same kill and restart of the bare worker with a workflow waiting for its update.
    h = await b.bare_start(BareInput(steps=1, wait=True))
    await asyncio.sleep(0.5)
    b.bare.kill()
    b.bare.wait()
    ready = b.root / "bare.ready"
    ready.unlink(missing_ok=True)
    bare_spawned = time.perf_counter()
    b.bare = subprocess.Popen(b.bare_argv, stdin=subprocess.DEVNULL)
    while not ready.exists():
        await asyncio.sleep(0.02)
    bare_polling = time.perf_counter()
    await h.execute_update(BareWorkflow.decide)
    bare_decided = time.perf_counter()
    await h.result()
    progress.advance(task)
    add(
        b,
        "restart → decidable, from polling",
        decided - polling,
        bare_decided - bare_polling,
        "s",
        "≤ 2 s",
        decided - polling <= 2.0,
        ratio=None,
    )
    add(
        b,
        "worker start → polling",
        polling - spawned,
        bare_polling - bare_spawned,
        "s",
        "≤ 3 s",
        polling - spawned <= 3.0,
    )


async def bench_paused(b: Bench, progress: Progress, n: int) -> None:
    task = progress.add_task(f"{n} paused runs", total=n)
    gate = asyncio.Semaphore(40)

    async def one() -> None:
        async with gate:
            run_id = await b.post_run("T-1002")
            # Polled gently: 40 clients asking every 20 ms would keep the API busier than the runs.
            await b.paused(run_id, timeout=3600, poll=0.25)
        progress.advance(task)

    await asyncio.gather(*(one() for _ in range(n)))
    # Measured once the runs are paused, not while the last ones still finish their workflow tasks and writes:
    # the inbox's tail would then time the build's last seconds.
    await idle(b)
    pid = worker_pid(b.dev)
    rss = rss_mib(pid) if pid else 0.0

    async def get(path: str, key: dict[str, str]) -> float:
        t = time.perf_counter()
        r = await b.http.get(f"{b.api}{path}", headers=key)
        assert r.status_code == 200, r.text[:200]
        return time.perf_counter() - t

    # 200 pairs: a p95 of fewer samples is decided by two or three of them.
    inbox, health = await interleaved(
        200,
        lambda: get("/v1/approvals?status=pending&limit=50", b.key("approver-alice")),
        lambda: get("/v1/healthz", {}),
        progress,
        "inbox page vs healthz",
    )
    b.rows.append(Row(f"worker RSS at {n} paused runs", f"{rss:.0f} MiB", "", None, "≤ 400 MiB", rss <= 400))
    add(
        b,
        f"inbox page p95 at {n} paused",
        pct(inbox, 95),
        pct(health, 95),
        "s",
        "≤ 3× healthz",
        pct(inbox, 95) / pct(health, 95) <= 3,
    )


async def start_stack(root: Path, workers: int = 1) -> Bench:
    api_port, t_port, ui_port = free_ports(3)
    env = {
        **os.environ,
        "COUNTERSIGN_DATA_DIR": str(root / "data"),
        "COUNTERSIGN_API_PORT": str(api_port),
        "COUNTERSIGN_TEMPORAL_PORT": str(t_port),
        "COUNTERSIGN_TEMPORAL_UI_PORT": str(ui_port),
        "COUNTERSIGN_RUNS_PER_MINUTE": "0",
        "COUNTERSIGN_MAX_ACTIVE_RUNS_PER_TENANT": "0",
    }
    log = root / "dev.log"
    countersign = shutil.which("countersign") or str(Path(sys.executable).parent / "countersign")
    dev = subprocess.Popen(
        [countersign, "dev", "--workers", str(workers)],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while "Ready." not in log.read_text(errors="replace"):
        if dev.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"countersign dev did not start: {log.read_text()[-800:]}")
        await asyncio.sleep(0.2)
    keys = json.loads((root / "data" / "dev-keys.json").read_text())
    address = f"127.0.0.1:{t_port}"
    client = await Client.connect(address, data_converter=pydantic_data_converter)
    ready = root / "bare.ready"
    argv = [
        sys.executable,
        "-m",
        "bench.bare",
        "--address",
        address,
        "--task-queue",
        BARE_QUEUE,
        "--ready",
        str(ready),
    ]
    bare = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    while not ready.exists():
        await asyncio.sleep(0.05)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    http = httpx.AsyncClient(timeout=60, limits=limits)
    return Bench(root, f"http://127.0.0.1:{api_port}", keys, client, dev, bare, argv, http)


def report(b: Bench) -> None:
    table = Table(title="Countersign vs a bare Temporal workflow (same server, same run)")
    for col in ("measure", "countersign", "bare Temporal", "ratio", "target", ""):
        table.add_column(col)
    for r in b.rows:
        mark = "" if r.ok is None else ("[green]ok[/]" if r.ok else "[red]MISSED[/]")
        ratio = f"{r.ratio:.2f}×" if r.ratio is not None else ""
        table.add_row(r.name, r.ours, r.bare, ratio, r.target, mark)
    console.print(table)
    load = os.getloadavg()
    console.print(
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; {os.cpu_count()} CPUs; "
        "absolute figures vary with the machine, the ratios much less"
    )


PARTS = ("latency", "decision", "starts", "throughput", "restart", "paused")


async def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--reps", type=int, default=15, help="A/B pairs for latencies")
    p.add_argument("--concurrency", type=int, nargs="*", default=[50, 200])
    p.add_argument("--starts", type=int, default=200, help="starts per round")
    p.add_argument("--start-rounds", type=int, default=3, help="A/B rounds of starts")
    p.add_argument(
        "--paused", type=int, default=10_000, help="paused runs for the memory/inbox measure (0: skip)"
    )
    p.add_argument("--json", type=Path, help="also write the figures here")
    p.add_argument(
        "--workers", type=int, default=1, help="worker processes of countersign dev (its default: 1)"
    )
    p.add_argument(
        "--only", nargs="+", choices=PARTS, default=list(PARTS), help="measure only these, in order"
    )
    a = p.parse_args()
    root = Path(tempfile.mkdtemp(prefix="countersign-bench-"))
    b = await start_stack(root, a.workers)
    try:
        with Progress(console=console) as progress:
            await b.run_once()  # warm-up: imports, the knowledge index, connections
            await b.bare_once(1)
            for part in a.only:
                if part == "latency":
                    await bench_latency(b, progress, a.reps)
                elif part == "decision":
                    await bench_decision(b, progress, a.reps)
                elif part == "starts":
                    await bench_starts(b, progress, a.starts, a.start_rounds)
                elif part == "throughput":
                    for n in a.concurrency:
                        await bench_throughput(b, progress, n)
                elif part == "restart":
                    await bench_restart(b, progress, root / "dev.log")
                elif part == "paused" and a.paused:
                    await bench_paused(b, progress, a.paused)
        report(b)
        if a.json:
            a.json.write_text(json.dumps([r.__dict__ for r in b.rows], indent=2))
        return 0 if all(r.ok is not False for r in b.rows) else 1
    finally:
        await b.http.aclose()
        for proc in (b.bare, b.dev):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in (b.bare, b.dev):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
