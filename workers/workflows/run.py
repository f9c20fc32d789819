"""``AgentRunWorkflow``: runs an agent's graph durably and holds its gated tool calls for people to decide."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, is_cancelled_exception

from workers.workflows.webhooks import Dispatch, emit, event, request_data, run_data, settle

with workflow.unsafe.imports_passed_through():
    from langchain_core.messages import HumanMessage, convert_to_messages
    from langgraph.checkpoint.memory import InMemorySaver
    from langgraph.types import Command
    from temporalio.langgraph import graph

    from agents.graph import compiled, evidence, graph_name
    from countersign.hashing import canonical_hash
    from workers.contracts import (
        DecisionIn,
        DecisionOutcome,
        GatedRequest,
        OpenRequests,
        RequestChange,
        RunInput,
        RunResult,
        StatusUpdate,
        Usage,
    )
    from workers.task_cache import without_task_cache
    from workers.webhook_contracts import WebhookEvent, WebhookEventType

# Failures a retry cannot mend (a bug, or data the database refuses): the step fails at once with its reason
# instead of retrying for ever. A database that is down or locked raises OperationalError: retried.
PERMANENT_ERRORS = [
    "AttributeError",
    "TypeError",
    "NameError",
    "KeyError",
    "ValidationError",
    "DataError",
    "IntegrityError",
    "ProgrammingError",
    "StatementError",
]
DB_ACTIVITY: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(
        maximum_interval=timedelta(seconds=10), non_retryable_error_types=PERMANENT_ERRORS
    ),
}
# Projection writes are short database transactions: run them as local activities, in the worker that runs
# the workflow, with no round trip through the server. They are idempotent upserts, so the at-least-once
# retry of a local activity (after a crash, on replay) writes nothing twice.
LOCAL_DB_ACTIVITY: dict[str, Any] = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(milliseconds=200),
        maximum_interval=timedelta(seconds=10),
        non_retryable_error_types=PERMANENT_ERRORS,
    ),
}
# Runs started from this patch on: the policy is evaluated in the model's activity (graph version 2),
# projection writes are local activities carrying their webhook events (an outbox, no child workflows), and
# a decision is recorded before it takes effect. Runs started earlier replay on the old path.
FAST_PATH = "countersign-fast-path-1"
# Runs started from this patch on run a turn's tool calls in the activity that then asks the model (graph
# version 3). Runs started earlier replay on the graph they started with.
ACT_THEN_THINK = "countersign-act-then-think-1"
# Runs started from this patch on (version 4, on graph version 3) resume on a decision as soon as it is taken:
# the turn that acts on it writes it first (idempotent), so the run does not wait for its own record to land.
RECORD_IN_ACT = "countersign-record-in-act-1"
# Runs started from this patch on (version 5) run without the LangGraph plugin's task-result cache, which
# serves only workflows that continue as new (see workers/task_cache.py).
NO_TASK_CACHE = "countersign-no-task-cache-1"


def _seconds(value: Any) -> timedelta | None:
    return None if value is None else timedelta(seconds=int(value))


@workflow.defn
class AgentRunWorkflow:
    """One agent run: think, gate, wait for people, act, finish; every step recorded in history."""

    def __init__(self) -> None:
        self._requests: dict[str, GatedRequest] = {}
        self._changed = False
        self._cancelled = False
        self._dispatches: list[Dispatch] = []
        self._fast = False
        self._deciding: set[str] = set()
        self._input: RunInput | None = None
        self._version = 1
        self._resumed = False  # the run's resumption was recorded with the change that settled its requests
        self._records: dict[str, list[dict[str, Any]]] = {}  # per request: its decisions, for the next turn

    @workflow.run
    async def run(self, inp: RunInput) -> RunResult:
        try:
            result = await self._run(inp)
        except (asyncio.CancelledError, ActivityError, ChildWorkflowError) as e:
            # A cancel can land in any await (an activity, the graph, a wait for people); depending on where,
            # it surfaces as asyncio's CancelledError or as an activity error caused by the cancel. Cleanup
            # runs once, here: the cancel was delivered once, so these new activities are not cancelled.
            if not is_cancelled_exception(e):
                raise
            await self._cancel_pending(inp)
            await workflow.wait_condition(workflow.all_handlers_finished)
            await self._status(StatusUpdate(run=inp, status="cancelled", error={"reason": "cancelled"}))
            await settle(self._dispatches)
            raise
        await settle(self._dispatches)
        return result

    async def _run(self, inp: RunInput) -> RunResult:
        self._input = inp
        # One patch check per new run (each records a marker and upserts a search attribute): a run that
        # started on an earlier path replays it, since its history holds only that path's marker.
        if workflow.patched(NO_TASK_CACHE):
            self._fast, self._version = True, 5
        elif workflow.patched(RECORD_IN_ACT):
            self._fast, self._version = True, 4
        elif workflow.patched(ACT_THEN_THINK):
            self._fast, self._version = True, 3
        else:
            self._fast = workflow.patched(FAST_PATH)
            self._version = 2 if self._fast else 1
        if not self._fast:
            # Runs from FAST_PATH on have their run.started recorded by the API, with the run row.
            await self._status(StatusUpdate(run=inp, status="running", event="run.started"))
        topology = min(self._version, 3)
        app = compiled(graph(graph_name(inp.agent, topology))).copy({"checkpointer": InMemorySaver()})
        if self._version >= 5:
            without_task_cache()
        config: dict[str, Any] = {"configurable": {"thread_id": inp.run_id}, "recursion_limit": 100}
        context = {
            "run_id": inp.run_id,
            "tenant_id": inp.tenant_id,
            "caller": inp.requested_by,
            "agent": inp.agent,
            "budget": inp.budget.model_dump(),
        }
        if self._version >= 4:
            context["run"] = inp.model_dump(mode="json")  # the turn that answers records the run's end
        payload: Any = {"messages": [HumanMessage(content=json.dumps(inp.input, sort_keys=True))]}
        try:
            while True:
                # Checkpoints only when the graph stops (an interrupt or the end): Temporal's history is what
                # makes the run durable, and the checkpointer only carries the state across an interrupt. Each
                # intermediate checkpoint serialised the whole state again.
                state = await app.ainvoke(  # type: ignore[call-overload]
                    payload, config, context=context, durability="exit"
                )
                self._records.clear()  # the turn that acted on them wrote them first
                interrupts = state.get("__interrupt__")
                if not interrupts:
                    break
                decisions = await self._hold(inp, interrupts[0].value["requests"], _usage(state))
                payload = Command(resume=decisions)
        except ActivityError as e:
            if is_cancelled_exception(e):
                raise  # a cancel, not a failure: run() records it
            # A step failed for good (retries exhausted or a non-retryable refusal): the run fails cleanly.
            error = {"reason": "step_failed", "message": str(e.cause or e)}
            await self._write_records()
            await self._status(StatusUpdate(run=inp, status="failed", error=error))
            return RunResult(status="failed", error=error)
        usage = _usage(state)
        stopped, escalation = state.get("stopped"), state.get("escalation")
        if stopped:
            result = RunResult(status="failed", error=dict(stopped), usage=usage)
        elif escalation:
            seen = evidence(convert_to_messages(state.get("messages", [])))
            result = await self._escalate(inp, escalation, seen, usage)
        else:
            result = RunResult(status="completed", output=state.get("output"), usage=usage)
        await workflow.wait_condition(workflow.all_handlers_finished)
        if not (state.get("ended") and result.status == "completed"):
            await self._status(
                StatusUpdate(
                    run=inp, status=result.status, output=result.output, error=result.error, usage=usage
                )
            )
        return result

    async def _escalate(
        self, inp: RunInput, escalation: dict[str, Any], seen: list[dict[str, Any]], usage: Usage
    ) -> RunResult:
        """Hand the run to a person through the approval inbox: they respond with the answer, or reject.

        A run the agent could not finish (the model is down, the budget is spent) is taken over by the
        person's answer, or ends ``failed`` as ``abandoned`` when they reject it or nobody answers in time.
        """
        reason = escalation["reason"]
        why = {
            "invalid_output": "The agent could not produce a valid answer; a person must finish this run.",
            "model_unavailable": "The model is unavailable after its retries; a person must finish this run.",
            "budget_exceeded": "The run spent its budget; a person must finish this run.",
        }
        proposal = {
            "tool_call_id": "escalation",
            "tool": "escalate_to_person",
            "arguments": {"reason": reason, "errors": escalation.get("errors")},
            "verdict": escalation["verdict"],
            "reason": why.get(reason, f"The run stopped ({reason}); a person must finish it."),
            "evidence": seen,
        }
        # The owner hears of a run that stopped for want of a model or of budget (not of a bad answer).
        alert = {"model_unavailable": "model_unavailable", "budget_exceeded": "budget_exhausted"}.get(reason)
        decided = (await self._hold(inp, [proposal], usage, alert=alert))["escalation"]
        await self._write_records()
        outcome = {
            "escalated": True,
            "reason": reason,
            "errors": escalation.get("errors"),
            "resolution": decided["status"],
            "answer": decided.get("message"),
        }
        if reason == "invalid_output":
            return RunResult(status="completed", output=outcome, usage=usage)
        if decided["status"] == "responded":
            return RunResult(status="completed", output={**outcome, "taken_over": True}, usage=usage)
        return RunResult(
            status="failed", error={**outcome, "reason": "abandoned", "stopped": reason}, usage=usage
        )

    async def _emit(self, event_type: WebhookEventType, **kw: Any) -> None:
        dispatch = await emit(event_type, **kw)
        if dispatch is not None:
            self._dispatches.append(dispatch)

    async def _db(self, name: str, arg: Any, *, local: bool = True) -> None:
        if self._fast and local:
            await workflow.execute_local_activity(name, arg, **LOCAL_DB_ACTIVITY)
        else:
            await workflow.execute_activity(name, arg, **DB_ACTIVITY)

    async def _status(self, update: StatusUpdate) -> None:
        hook: tuple[WebhookEventType, dict[str, Any]] | None = None
        if update.status in ("completed", "failed"):
            name: WebhookEventType = "run.completed" if update.status == "completed" else "run.failed"
            hook = (name, run_data(update))
        if self._fast and hook is not None:
            update.webhooks = self._events(hook[0], update.run.tenant_id, update.run.run_id, hook[1])
            if update.status == "failed":
                reason = str((update.error or {}).get("reason") or "failed")
                update.webhooks += self._alert(update.run, "run_failed", reason=reason)
        await self._db("runs.set_status", update)
        if not self._fast and hook is not None:
            await self._emit(hook[0], tenant_id=update.run.tenant_id, run_id=update.run.run_id, data=hook[1])

    def _events(
        self, event_type: WebhookEventType, tenant_id: str, run_id: str, data: dict[str, Any]
    ) -> list[WebhookEvent]:
        return [event(event_type, tenant_id=tenant_id, run_id=run_id, data=data)]

    def _alert(self, run: RunInput, alert: str, **data: Any) -> list[WebhookEvent]:
        """An ``agent.alert`` for the agent's owner (sent with the record it is about: no command of its
        own, so runs from before alerts existed replay unchanged)."""
        body = {
            "agent": run.agent,
            "alert": alert,
            "run_id": run.run_id,
            "links": {"run": f"/v1/runs/{run.run_id}"},
        }
        return self._events("agent.alert", run.tenant_id, run.run_id, body | data)

    def _change_of(
        self, req: GatedRequest, event_name: str, actor: str = "system", **kw: Any
    ) -> RequestChange:
        """The record of a change to ``req``: its webhooks and, when it settles the last pending request,
        the run's resumption."""
        change = RequestChange(request=req.model_copy(deep=True), event=event_name, actor=actor, **kw)
        hook: WebhookEventType | None = None
        if event_name in ("approval.decided", "approval.expired"):
            hook = "approval.decided" if event_name == "approval.decided" else "approval.expired"
        data = request_data(change.request, change.decision)
        if self._fast and hook is not None:
            change.webhooks = self._events(hook, req.tenant_id, req.run_id, data)
            if hook == "approval.expired" and self._input is not None:
                change.webhooks += self._alert(
                    self._input, "request_expired", request_id=req.id, tool=req.tool, rule=req.rule
                )
        settles = req.status != "pending" and not any(
            r.status == "pending" for r in self._requests.values() if r.id != req.id
        )
        if (
            self._version >= 3
            and settles
            and self._input
            and event_name in ("approval.decided", "approval.expired")
        ):
            change.resume = StatusUpdate(run=self._input, status="running", event="run.resumed")
            if self._version >= 4 and change.decision is not None:
                # Written by the API and by the next turn, whichever comes first: one event, not two.
                change.resume.key = f"{req.id}:{change.decision.decision_id}"
        return change

    async def _change(self, req: GatedRequest, event_name: str, actor: str = "system", **kw: Any) -> None:
        change = self._change_of(req, event_name, actor, **kw)
        # A person's decision is recorded by a regular activity: it is scheduled only once the update is
        # accepted in history. A local activity runs before that, and could record a decision that a lost
        # workflow task then never accepted. Timer-driven changes replay identically: local is safe there.
        await self._db("approvals.record", change, local=change.decision is None)
        if change.resume is not None:
            self._resumed = True
        if not self._fast and event_name in ("approval.decided", "approval.expired"):
            hook: WebhookEventType = (
                "approval.decided" if event_name == "approval.decided" else "approval.expired"
            )
            data = request_data(change.request, change.decision)
            await self._emit(hook, tenant_id=req.tenant_id, run_id=req.run_id, data=data)

    async def _hold(
        self,
        inp: RunInput,
        proposals: list[dict[str, Any]],
        usage: Usage | None = None,
        alert: str | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Open a request per gated call, wait until each is decided or expired, return the outcomes."""
        now = workflow.now()
        opened: list[GatedRequest] = []
        shown: dict[str, dict[str, Any]] = {}
        for p in proposals:
            v = p["verdict"]
            ttl, remind, escalate = (
                _seconds(v.get(k)) for k in ("ttl_seconds", "remind_after_seconds", "escalate_after_seconds")
            )
            req = GatedRequest(
                id=str(workflow.uuid4()),
                run_id=inp.run_id,
                tenant_id=inp.tenant_id,
                agent=inp.agent,
                tool=p["tool"],
                tool_call_id=p["tool_call_id"],
                arguments=p["arguments"],
                arguments_hash=canonical_hash(p["arguments"]),
                reason=p.get("reason") or "",
                rule=v["rule"],
                policy_version=v["policy_version"],
                roles=list(v.get("roles") or []),
                quorum=int(v.get("quorum") or 1),
                escalate_to=list(v.get("escalate_to") or []),
                requested_by=inp.requested_by,
                created_at=now,
                expires_at=now + ttl if ttl else None,
                remind_at=now + remind if remind else None,
                escalate_at=now + escalate if escalate else None,
            )
            self._requests[req.id] = req
            opened.append(req)
            # Shown to the deciders; kept out of the request the workflow holds (and sends with every change).
            shown[req.id] = {
                "gate_reason": v.get("reason"),
                "facts": v.get("facts") or {},  # what the policy looked up in the tenant's records
                "steps": p.get("evidence") or [],
            }
        opening = OpenRequests(
            run=inp, requests=[r.model_copy(deep=True) for r in opened], usage=usage, evidence=shown
        )
        if self._fast:
            for r in opening.requests:
                opening.webhooks += self._events("approval.requested", r.tenant_id, r.run_id, request_data(r))
                if alert is not None:
                    opening.webhooks += self._alert(inp, alert, request_id=r.id, reason=r.arguments["reason"])
        await self._db("approvals.open", opening)
        if not self._fast:
            for r in opening.requests:
                await self._emit(
                    "approval.requested", tenant_id=r.tenant_id, run_id=r.run_id, data=request_data(r)
                )
        while any(r.status == "pending" for r in opened):
            timeout = self._next_timer(opened)
            self._changed = False
            try:
                await workflow.wait_condition(
                    lambda: self._changed or all(r.status != "pending" for r in opened),
                    timeout=timeout,
                )
            except TimeoutError:
                pass
            if self._fast:
                # A decision being recorded was taken before any timer now due: let it land first.
                await workflow.wait_condition(lambda: not self._deciding)
            await self._fire_timers(opened)
        if not self._resumed:
            await self._status(StatusUpdate(run=inp, status="running", event="run.resumed"))
        self._resumed = False
        decided: dict[str, dict[str, Any]] = {
            r.tool_call_id: {
                "status": r.status,
                "request_id": r.id,
                "arguments": r.arguments,
                "message": r.message,
                "decision_events": [f"{r.id}:approval.decided:{d}" for d in r.decisions],
            }
            for r in opened
        }
        if self._version >= 4:
            for r in opened:
                decided[r.tool_call_id]["records"] = list(self._records.get(r.id, []))
        return decided

    async def _write_records(self) -> None:
        """Record the decisions no turn has written yet (the run goes on without acting on them: it is
        handed to a person, fails or is cancelled). The API wrote them too, unless it stopped first."""
        for records in self._records.values():
            for record in records:
                await self._db("approvals.record", RequestChange.model_validate(record), local=False)
        self._records.clear()

    def _next_timer(self, reqs: list[GatedRequest]) -> timedelta | None:
        now = workflow.now()
        due = [
            t
            for r in reqs
            if r.status == "pending"
            for t in (
                r.expires_at,
                None if r.reminded else r.remind_at,
                None if r.escalated else r.escalate_at,
            )
            if t
        ]
        return max(min(due) - now, timedelta(milliseconds=1)) if due else None

    async def _fire_timers(self, reqs: list[GatedRequest]) -> None:
        now = workflow.now()
        for r in reqs:
            if r.status != "pending":
                continue
            if r.expires_at and now >= r.expires_at:
                r.status, r.message = "expired", "no decision before the request expired"
                await self._change(r, "approval.expired")
                continue
            if r.remind_at and not r.reminded and now >= r.remind_at:
                r.reminded = True
                await self._change(r, "approval.reminded")
            if r.escalate_at and not r.escalated and now >= r.escalate_at:
                r.escalated = True
                r.roles = sorted(set(r.roles) | set(r.escalate_to))
                await self._change(r, "approval.escalated")

    async def _cancel_pending(self, inp: RunInput) -> None:
        await self._write_records()
        for r in self._requests.values():
            if r.status == "pending":
                r.status = "cancelled"
                await self._change(r, "approval.cancelled")

    @workflow.update
    async def decide(self, d: DecisionIn) -> DecisionOutcome:
        """Apply one person's decision. Decisions on one request are taken one at a time: each is checked
        against the state the previous one left, so only one can complete a request, and nothing can act on
        a decision that is not on record (row, ledger event, webhook): before version 4 it takes effect once
        recorded; from version 4 the turn that acts on it records it first (see ``_decide_v4``)."""
        if not self._fast:
            return await self._decide_v1(d)
        # Checked before waiting, and again after each wake-up: wait_condition yields even when its condition
        # already holds, and several waiters wake together; only the one that finds the request free goes on.
        while d.request_id in self._deciding:
            await workflow.wait_condition(lambda: d.request_id not in self._deciding)
        req = self._check(d)
        after = req.model_copy(deep=True)
        outcome = _apply(after, d)
        if self._version >= 4:
            return self._decide_v4(req, after, d, outcome)
        self._deciding.add(req.id)
        try:
            await self._change(after, "approval.decided", actor=d.principal_id, decision=d, outcome=outcome)
        finally:
            self._deciding.discard(req.id)
        _take(req, after)
        self._changed = True
        return outcome

    def _decide_v4(
        self, req: GatedRequest, after: GatedRequest, d: DecisionIn, outcome: DecisionOutcome
    ) -> DecisionOutcome:
        """Runs from RECORD_IN_ACT on: the decision takes effect in this workflow task, with no round trip.
        Its record goes back with the outcome and the API writes it before it answers; the turn that acts
        on it writes it first too (idempotent), so nothing runs on a decision that is not on record."""
        change = self._change_of(after, "approval.decided", actor=d.principal_id, decision=d, outcome=outcome)
        _take(req, after)
        self._changed = True
        if change.resume is not None:
            self._resumed = True
        record = change.model_dump(mode="json")
        self._records.setdefault(req.id, []).append(record)
        return outcome.model_copy(update={"record": record})

    async def _decide_v1(self, d: DecisionIn) -> DecisionOutcome:
        """Runs started before FAST_PATH: the state changed before the record (kept so they replay)."""
        req = self._check(d)
        outcome = _apply(req, d)
        self._changed = True
        await self._change(req, "approval.decided", actor=d.principal_id, decision=d, outcome=outcome)
        return outcome

    def _check(self, d: DecisionIn) -> GatedRequest:
        req = self._requests.get(d.request_id)
        if req is None or req.status != "pending":
            raise ApplicationError(
                "the request is no longer pending", type="already_decided", non_retryable=True
            )
        if d.arguments_hash != req.arguments_hash:
            raise ApplicationError(
                "the arguments changed since you saw them", type="stale_arguments", non_retryable=True
            )
        if not set(d.principal_roles) & set(req.roles):
            raise ApplicationError(
                "you hold none of the roles this request needs", type="forbidden", non_retryable=True
            )
        if d.principal_id == req.requested_by:
            raise ApplicationError(
                "the run's requester may not decide its approvals", type="forbidden", non_retryable=True
            )
        if d.action in ("approve", "edit") and d.principal_id in req.approvals:
            raise ApplicationError(
                "you already approved this request", type="already_decided", non_retryable=True
            )
        return req

    @decide.validator
    def _validate(self, d: DecisionIn) -> None:
        req = self._requests.get(d.request_id)
        if req is None or req.status != "pending":
            raise ApplicationError("the request is no longer pending", type="already_decided")


def _take(req: GatedRequest, after: GatedRequest) -> None:
    """``req`` as a decision left it (``after``)."""
    req.arguments, req.arguments_hash = after.arguments, after.arguments_hash
    req.approvals, req.status, req.message = after.approvals, after.status, after.message
    req.decisions = after.decisions


def _apply(req: GatedRequest, d: DecisionIn) -> DecisionOutcome:
    """Change ``req`` as the decision says; the outcome reports the request's status after it."""
    req.decisions.append(d.decision_id)
    if d.action == "edit":
        assert d.arguments is not None
        # An edit is an approval of new arguments: earlier approvals were of other arguments.
        req.arguments, req.arguments_hash, req.approvals = d.arguments, canonical_hash(d.arguments), []
    if d.action in ("approve", "edit"):
        req.approvals.append(d.principal_id)
        if len(req.approvals) >= req.quorum:
            req.status = "approved"
    elif d.action == "reject":
        req.status, req.message = "rejected", d.reason
    else:
        req.status, req.message = "responded", d.message
    return DecisionOutcome(
        decision_id=d.decision_id,
        request_id=req.id,
        action=d.action,
        request_status=req.status,
        approvals=len(req.approvals),
        quorum=req.quorum,
    )


def _usage(state: dict[str, Any]) -> Usage:
    return Usage.model_validate(state.get("usage") or {})
