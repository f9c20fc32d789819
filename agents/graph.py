"""The loop every agent runs: model → policy → gate → tools → model, as a LangGraph ``StateGraph``.

The model and the tools run in Temporal activities (through the ``temporalio-langgraph`` plugin); the gate
runs in the workflow and interrupts when a person must decide. The policy's verdicts are computed in the
model's activity, so they are recorded in workflow history and a replay never re-decides with a newer
policy. A turn's tool calls run in the activity that then asks the model (``act``): one round trip per turn.
The gate has its own node before them because LangGraph re-runs a whole node on resume.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Annotated, Any, Literal, NotRequired, Protocol, TypedDict, cast

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AnyMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
    convert_to_messages,
)
from langchain_core.runnables import RunnableConfig
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import interrupt
from opentelemetry import metrics
from opentelemetry.trace import SpanKind, StatusCode
from pydantic import ValidationError
from temporalio import activity
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

from agents.playbook import run_input, tool_results
from agents.provenance import Record
from agents.spec import FINAL_ANSWER, AgentSpec, Facts
from approvals.policy import PolicyStore, Verdict, evaluate_with_facts, evaluate_without_facts
from countersign.hashing import canonical_hash
from countersign.telemetry import RUN_ID, tracer
from tools.business import BusinessStore
from tools.registry import BusinessTool, ToolContext, fact_lookup, load_all

log = logging.getLogger("countersign.agents")


class RunContext(TypedDict):
    """Who and what the run is for; reaches every node through LangGraph's runtime context."""

    run_id: str
    tenant_id: str
    caller: str
    agent: str
    budget: dict[str, float]
    # The run as the workflow started it, when the turn that ends the run is to record its end (the workflow
    # then writes none): runs from the workflow's RECORD_IN_ACT on.
    run: NotRequired[dict[str, Any]]


def add_usage(left: dict[str, float] | None, right: dict[str, float] | None) -> dict[str, float]:
    """Reducer summing tokens, model calls and cost across model turns."""
    out = dict(left or {})
    for k, v in (right or {}).items():
        out[k] = out.get(k, 0) + v
    return out


def over_budget(usage: dict[str, float], budget: dict[str, float]) -> str | None:
    """Which limit the run's usage has reached, if any."""
    tokens = usage.get("input_tokens", 0) + usage.get("output_tokens", 0)
    if usage.get("model_calls", 0) >= budget.get("max_model_calls", float("inf")):
        return "max_model_calls"
    if tokens >= budget.get("max_tokens", float("inf")):
        return "max_tokens"
    if usage.get("cost_usd", 0) >= budget.get("max_cost_usd", float("inf")):
        return "max_cost_usd"
    return None


class AgentState(TypedDict, total=False):
    """The graph state. ``verdicts`` and ``decisions`` are per model turn, keyed by tool call id."""

    messages: Annotated[list[AnyMessage], add_messages]
    verdicts: dict[str, dict[str, Any]]
    decisions: dict[str, dict[str, Any]]
    output: dict[str, Any] | None
    stopped: dict[str, Any] | None
    invalid_outputs: int
    escalation: dict[str, Any] | None
    usage: Annotated[dict[str, float], add_usage]
    ended: bool  # the turn that gave the answer recorded the run's end


@dataclass(frozen=True)
class LedgerEntry:
    """One event a node reports; its ``id`` makes a retried report a no-op."""

    id: str
    type: str
    data: dict[str, Any]
    # A judged tool call, kept (outside the ledger) so `countersign policy diff` can judge it again.
    replay: dict[str, Any] | None = None


class EventSink(Protocol):
    """Where nodes report what happened (the audit ledger): a node's events are written in one transaction.

    ``end``, from the turn that ends the run with an answer (its ``output``, the run's total ``usage``): the
    run's end, recorded in the same transaction.
    """

    async def __call__(
        self, ctx: RunContext, events: Sequence[LedgerEntry], end: dict[str, Any] | None = None
    ) -> None: ...


class RecordSink(Protocol):
    """Where a resumed turn writes the records it runs on (people's decisions, as the workflow made them),
    before any of its calls runs: idempotent, so a record another step wrote already is left as it is."""

    async def __call__(self, ctx: RunContext, records: Sequence[dict[str, Any]]) -> None: ...


FACT_CACHE_RUNS = 256


@dataclass
class AgentServices:
    """The worker-process resources the activity nodes use; built once in the worker's main."""

    store: BusinessStore
    policy: PolicyStore
    model_for: Callable[[AgentSpec], BaseChatModel]
    events: EventSink
    records: RecordSink
    task_queue: str = "countersign"
    model_label: str = "scripted"
    agent_models: dict[str, str] = field(default_factory=dict)
    fallback_for: Callable[[AgentSpec], BaseChatModel] | None = None
    prices: dict[str, dict[str, float]] = field(default_factory=dict)
    capture_content: bool = False
    seen_policies: set[str] = field(default_factory=set)
    # Per run, the facts its policy checks looked up: a run sees one answer per fact (bounded: recent runs).
    fact_caches: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)
    model_timeout: timedelta = timedelta(seconds=60)
    model_attempts: int = 3
    tool_timeout: timedelta = timedelta(seconds=30)
    heartbeat: timedelta = timedelta(seconds=10)
    step_deadline: timedelta = timedelta(minutes=30)

    def facts_of(self, run_id: str) -> dict[str, Any]:
        """The fact cache of one run (the least recently used run's is dropped past ``FACT_CACHE_RUNS``)."""
        cache = self.fact_caches.pop(run_id, None)
        if cache is None:
            cache = {}
            while len(self.fact_caches) >= FACT_CACHE_RUNS:
                self.fact_caches.popitem(last=False)
        self.fact_caches[run_id] = cache
        return cache

    def label(self, agent: str) -> str:
        """The provider string of the agent's model."""
        return self.agent_models.get(agent, self.model_label)

    def cost(self, label: str, input_tokens: int, output_tokens: int) -> float | None:
        """Cost in USD of one model call by the price table, or None when the model has no price."""
        price = self.prices.get(label)
        if price is None:
            return None
        return (
            input_tokens * price.get("input_per_million", 0.0)
            + output_tokens * price.get("output_per_million", 0.0)
        ) / 1_000_000


def model_failures() -> int:
    """How many attempts of this model step failed in the model itself (not by a worker crash or timeout):
    the count travels in the activity's heartbeat details from one attempt to the next."""
    if not activity.in_activity():
        return 0
    details = activity.info().heartbeat_details
    return int(details[0]) if details and isinstance(details[0], int) else 0


@asynccontextmanager
async def heartbeats(*details: Any) -> AsyncIterator[None]:
    """While an activity node runs, tell Temporal that its worker is alive. A worker that dies is noticed
    within the heartbeat timeout, and the attempt it lost is retried without counting against the model's
    retry budget (that budget counts model errors only: see ``model_failures``)."""
    timeout = activity.info().heartbeat_timeout if activity.in_activity() else None
    if timeout is None:
        yield
        return

    async def beat() -> None:
        # The first beat after a third of the timeout: a step that ends sooner sends none (no extra RPC).
        while True:
            await asyncio.sleep(timeout.total_seconds() / 3)
            activity.heartbeat(*details)

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()


async def ask_model(model: Any, messages: list[BaseMessage], services: AgentServices) -> AIMessage:
    """One model call, bounded by the model timeout. A failure counts against the step's model retry budget;
    the last one the budget allows fails the step for good (``ModelUnavailable``)."""
    try:
        async with asyncio.timeout(services.model_timeout.total_seconds()):
            ai: AIMessage = await model.ainvoke(messages)
            return ai
    except Exception as e:
        failed = model_failures() + 1
        if activity.in_activity():
            activity.heartbeat(failed)  # the next attempt reads it back
        if failed >= services.model_attempts:
            raise ApplicationError(
                f"the model failed {failed} times; last: {type(e).__name__}: {e}",
                type="ModelUnavailable",
                non_retryable=True,
            ) from e
        raise


def _last_ai(messages: Sequence[BaseMessage]) -> AIMessage | None:
    for m in reversed(messages):
        if isinstance(m, AIMessage):
            return m
    return None


# The GenAI semantic conventions' client metrics (a no-op unless the process installed a meter provider).
_METER = metrics.get_meter("countersign.agents")
_DURATION = _METER.create_histogram(
    "gen_ai.client.operation.duration", unit="s", description="Duration of GenAI client operations."
)
_FALLBACKS = _METER.create_counter(
    "countersign.model.fallbacks", unit="{call}", description="Model calls the fallback model answered for."
)
_TOKENS = _METER.create_histogram(
    "gen_ai.client.token.usage", unit="{token}", description="Number of input and output tokens used."
)

_SERVICES: dict[str, tuple[AgentServices, AgentSpec]] = {}
_META_KEY = "countersign_graph"


def _bound(config: RunnableConfig) -> tuple[AgentServices, AgentSpec]:
    """The services and spec this graph was built with (the plugin needs module-level node functions, so
    the binding travels as node metadata rather than as a closure)."""
    return _SERVICES[str((config.get("metadata") or {})[_META_KEY])]


async def call_model(
    state: AgentState, runtime: Runtime[RunContext], config: RunnableConfig
) -> dict[str, Any]:
    """Ask the model for its next message; a message with no tool calls finishes the run."""
    services, spec = _bound(config)
    async with heartbeats(model_failures()):
        update, events = await _model_turn(services, spec, state, runtime.context)
        await services.events(runtime.context, events)
    return update


async def think(state: AgentState, runtime: Runtime[RunContext], config: RunnableConfig) -> dict[str, Any]:
    """The model's next message and, for the tool calls it proposes, the policy's verdicts: one activity.

    The verdicts are part of this activity's result, so they are recorded in workflow history as before
    (replay never re-decides), without a round trip of their own.
    """
    services, spec = _bound(config)
    async with heartbeats(model_failures()):
        update, events = await _think(services, spec, state, runtime.context)
        end = _end(runtime.context, state, update)
        await services.events(runtime.context, events, end)
    return update | ({"ended": True} if end else {})


async def act(state: AgentState, runtime: Runtime[RunContext], config: RunnableConfig) -> dict[str, Any]:
    """This turn's allowed and approved calls, then the model's next turn on their results: one activity.

    The calls' ledger events and the turn's are written in one transaction, calls first. When the model
    fails, the calls' events are written before the error goes on, so an effect is on record even if the
    model then fails for good. A retry (after a crash, too) runs the calls again with the same idempotency
    keys (their ids come from the recorded model message): the effects ledger keeps each side effect to one,
    and their events, with the same ids, are recorded once.
    """
    services, spec = _bound(config)
    ctx = runtime.context
    # The messages arrive as dicts: converted once here, both steps read the converted history.
    history = convert_to_messages(state.get("messages", []))
    async with heartbeats(model_failures()):
        await _on_record(services, state, ctx)
        done, ran = await _run_tools(services, spec, cast(AgentState, {**state, "messages": history}), ctx)
        after = cast(AgentState, {**state, "messages": [*history, *done["messages"]]})
        try:
            update, events = await _think(services, spec, after, ctx)
        except BaseException:
            await services.events(ctx, ran)
            raise
        # One transaction, not two: on SQLite every write transaction holds the one write lock.
        end = _end(ctx, state, update)
        await services.events(ctx, [*ran, *events], end)
    return {
        **update,
        "messages": [*done["messages"], *update.get("messages", [])],
        **({"ended": True} if end else {}),
    }


def _end(ctx: RunContext, state: AgentState, update: dict[str, Any]) -> dict[str, Any] | None:
    """The run's end when this turn answers (its output, the run's usage in all), if the run asks its turns to
    record it: the answer ends the graph, and the run completes with it."""
    if "run" not in ctx or update.get("output") is None or update.get("stopped") or update.get("escalation"):
        return None
    return {"output": update["output"], "usage": add_usage(state.get("usage"), update.get("usage"))}


async def _think(
    services: AgentServices, spec: AgentSpec, state: AgentState, ctx: RunContext
) -> tuple[dict[str, Any], list[LedgerEntry]]:
    """One model turn with the policy's verdicts on the calls it proposes."""
    history = convert_to_messages(state.get("messages", []))  # once: a no-op on messages already converted
    update, events = await _model_turn(services, spec, cast(AgentState, {**state, "messages": history}), ctx)
    ai = update["messages"][-1] if update.get("messages") else None
    answered = isinstance(ai, AIMessage) and any(c["name"] == FINAL_ANSWER for c in ai.tool_calls)
    if isinstance(ai, AIMessage) and ai.tool_calls and not update.get("stopped") and not answered:
        verdicts, more = await _verdicts(services, spec, ctx, ai, history)
        update |= {"verdicts": verdicts, "decisions": {}}
        events += more
    return update, events


async def _model_turn(
    services: AgentServices, spec: AgentSpec, state: AgentState, ctx: RunContext
) -> tuple[dict[str, Any], list[LedgerEntry]]:
    """One model call: the state update and the ledger events that record it."""
    messages = convert_to_messages(state.get("messages", []))
    limit = over_budget(state.get("usage") or {}, ctx.get("budget") or {})
    if limit is not None:
        stop = AIMessage(content=f"Stopped: the run reached its budget ({limit}).")
        if spec.on_model_failure == "person":
            handover = escalate(services, spec, ctx, "budget_exceeded", {"limit": limit})
            return {"messages": [stop], **handover}, [_escalation_entry(ctx, handover, "budget")]
        return {"messages": [stop], "stopped": {"reason": "budget_exceeded", "limit": limit}}, []
    schemas = [t.schema() for t in spec.tools().values()] + [spec.answer_tool()]
    model: Any = services.model_for(spec).bind_tools(schemas)
    label = services.label(spec.name)
    if services.fallback_for is not None:
        fallback = services.fallback_for(spec).bind_tools(schemas)
        counted = {"gen_ai.agent.name": spec.name, "gen_ai.request.model": label}
        fallback = fallback.with_listeners(on_start=lambda _run: _FALLBACKS.add(1, counted))
        model = model.with_fallbacks([fallback])
    provider, _, name = label.rpartition(":")
    attributes = {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": provider or label,
        "gen_ai.request.model": name,
        "gen_ai.agent.name": spec.name,
        RUN_ID: ctx["run_id"],
    }
    # Metric attributes stay bounded: no run id.
    measured = {k: v for k, v in attributes.items() if k != RUN_ID}
    with tracer().start_as_current_span(f"chat {name}", kind=SpanKind.CLIENT, attributes=attributes) as span:
        started = time.monotonic()
        try:
            ai = await ask_model(model, [SystemMessage(spec.prompt), *messages], services)
        except Exception as e:
            _DURATION.record(time.monotonic() - started, measured | {"error.type": type(e).__name__})
            if not isinstance(e, ApplicationError):
                raise
            if e.type != "ModelUnavailable" or spec.on_model_failure != "person":
                raise
            span.set_status(StatusCode.ERROR, "model unavailable: handed to a person")
            turn = sum(1 for m in messages if isinstance(m, AIMessage))
            handover = escalate(services, spec, ctx, "model_unavailable", str(e))
            note = AIMessage(content="Stopped: the model is unavailable; a person must finish this run.")
            return {"messages": [note], **handover}, [_escalation_entry(ctx, handover, f"model:{turn}")]
        meta: dict[str, Any] = dict(ai.usage_metadata or {})
        tokens_in, tokens_out = int(meta.get("input_tokens", 0)), int(meta.get("output_tokens", 0))
        _DURATION.record(time.monotonic() - started, measured)
        _TOKENS.record(tokens_in, measured | {"gen_ai.token.type": "input"})
        _TOKENS.record(tokens_out, measured | {"gen_ai.token.type": "output"})
        cost = services.cost(label, tokens_in, tokens_out)
        span.set_attributes(
            {
                "gen_ai.usage.input_tokens": tokens_in,
                "gen_ai.usage.output_tokens": tokens_out,
                "gen_ai.response.model": str(ai.response_metadata.get("model_name") or name),
                "gen_ai.response.finish_reasons": ["tool_calls" if ai.tool_calls else "stop"],
                "countersign.cost_usd": cost or 0.0,
                "countersign.output.hash": canonical_hash(
                    {"content": ai.content, "tool_calls": ai.tool_calls}
                ),
            }
        )
        if services.capture_content:
            span.set_attribute("gen_ai.output.text", str(ai.content))
    usage = {
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "model_calls": 1,
        "cost_usd": cost or 0.0,
    }
    turn = sum(1 for m in messages if isinstance(m, AIMessage))
    event = LedgerEntry(
        id=f"{ctx['run_id']}:model:{turn}",
        type="model.called",
        data={
            "model": label,
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "cost_usd": cost,
            "priced": cost is not None,
            "tool_calls": len(ai.tool_calls),
        },
    )
    update: dict[str, Any] = {"messages": [ai], "usage": usage}
    finals = [c for c in ai.tool_calls if c["name"] == FINAL_ANSWER]
    if finals or not ai.tool_calls:
        update |= _finish(services, spec, ctx, [*messages, ai], state.get("invalid_outputs", 0))
    return update, [event]


def _answer(spec: AgentSpec, messages: list[BaseMessage]) -> tuple[dict[str, Any], str | None]:
    """The model's final answer as the run's output, and why it is not acceptable (None if it is)."""
    ai = messages[-1]
    assert isinstance(ai, AIMessage)
    finals = [c for c in ai.tool_calls if c["name"] == FINAL_ANSWER]
    if not finals:
        return {}, f"finish by calling {FINAL_ANSWER} with your answer as its arguments"
    if len(ai.tool_calls) > 1:
        return {}, f"call {FINAL_ANSWER} alone, once every other tool has answered"
    facts = Facts(input=run_input(messages), results=tool_results(messages))
    return spec.check_answer(dict(finals[0]["args"]), facts)


def _finish(
    services: AgentServices,
    spec: AgentSpec,
    ctx: RunContext,
    messages: list[BaseMessage],
    invalid_before: int,
) -> dict[str, Any]:
    """The run's output; an invalid one is sent back to the model once, then escalated to a person."""
    output, problem = _answer(spec, messages)
    if problem is None:
        return {"output": output}
    if invalid_before == 0:
        text = f"Your final answer is not valid ({problem}). Answer again with a complete, valid answer."
        ai = messages[-1]
        assert isinstance(ai, AIMessage)
        # Every tool call of the message gets its answer (providers require it), all saying what to fix.
        feedback: list[BaseMessage] = [
            ToolMessage(content=text, tool_call_id=str(c["id"]), name=c["name"], status="error")
            for c in ai.tool_calls
        ] or [HumanMessage(content=text)]
        return {"messages": feedback, "invalid_outputs": 1}
    return {"invalid_outputs": invalid_before + 1, **escalate(services, spec, ctx, "invalid_output", problem)}


def _escalation_entry(ctx: RunContext, update: dict[str, Any], key: str) -> LedgerEntry:
    """The ledger's record that the run stopped and went to a person (and why)."""
    escalation = update["escalation"]
    return LedgerEntry(
        id=f"{ctx['run_id']}:{key}:escalated",
        type="run.escalated",
        data={"reason": escalation["reason"], "rule": escalation["verdict"]["rule"]},
    )


def escalate(
    services: AgentServices, spec: AgentSpec, ctx: RunContext, reason: str, errors: Any
) -> dict[str, Any]:
    """The state update that hands the run to a person: an ``escalate_to_person`` request, gated as the
    policy says or, whatever it says, for the agent owner's role."""
    policy = services.policy.current
    verdict = evaluate_without_facts(
        policy,
        "an escalation does not wait for look-ups",
        tool="escalate_to_person",
        kind="write",
        args={"reason": reason},
        agent=spec.name,
        tenant=ctx["tenant_id"],
        caller=ctx["caller"],
    )
    if verdict.outcome != "require_approval":
        # Whatever the policy says of the tool, an escalation always reaches a person.
        verdict = Verdict(
            outcome="require_approval",
            rule="escalation",
            policy_version=policy.version,
            roles=(spec.owner_role,),
            ttl_seconds=86_400,
        )
    return {"escalation": {"reason": reason, "errors": errors, "verdict": verdict.to_dict()}}


async def evaluate_policy(
    state: AgentState, runtime: Runtime[RunContext], config: RunnableConfig
) -> dict[str, Any]:
    """A verdict for every proposed tool call: out of scope or invalid → deny, else what the policy says."""
    services, spec = _bound(config)
    ctx = runtime.context
    messages = convert_to_messages(state.get("messages", []))
    ai = _last_ai(messages)
    verdicts, events = await _verdicts(services, spec, ctx, ai, messages[:-1])
    await services.events(ctx, events)
    return {"verdicts": verdicts, "decisions": {}}


def earlier_calls(history: Sequence[BaseMessage]) -> dict[str, dict[str, float]]:
    """Per tool, the calls of the run so far that ran (their result came back as a success): how many, and
    the sum of their ``amount`` arguments. What a policy rule sees as ``run.calls``."""
    ran = {m.tool_call_id for m in history if isinstance(m, ToolMessage) and m.status == "success"}
    calls: dict[str, dict[str, float]] = {}
    for m in history:
        if isinstance(m, AIMessage):
            for c in m.tool_calls:
                if c["id"] in ran:
                    _count(calls, c["name"], c["args"])
    return calls


def _count(calls: dict[str, dict[str, float]], name: str, args: dict[str, Any]) -> None:
    entry = calls.setdefault(name, {"count": 0, "sum_amount": 0.0})
    entry["count"] += 1
    amount = args.get("amount")
    if isinstance(amount, int | float) and not isinstance(amount, bool):
        entry["sum_amount"] += float(amount)


async def _verdicts(
    services: AgentServices,
    spec: AgentSpec,
    ctx: RunContext,
    ai: AIMessage | None,
    history: Sequence[BaseMessage] = (),
) -> tuple[dict[str, dict[str, Any]], list[LedgerEntry]]:
    """The verdict of each tool call of ``ai``, and the ledger events that record them. Rules see the run's
    input and its earlier calls, counting the calls of this turn that go ahead as they are judged."""
    calls = {name: {"count": 0, "sum_amount": 0.0} for name in spec.tools()} | earlier_calls(history)
    given = run_input(history)
    granted, all_tools = spec.tools(), load_all()
    events: list[LedgerEntry] = []
    # A stat per turn and, when the file changed, a CEL compile: both off the event loop.
    await asyncio.to_thread(services.policy.maybe_reload)
    policy = services.policy.current
    if policy.version not in services.seen_policies:
        services.seen_policies.add(policy.version)
        events.append(
            LedgerEntry(
                id=f"policy:{policy.version}:loaded",
                type="policy.loaded",
                data={"version": policy.version, "rules": len(policy.rules)},
            )
        )
    verdicts: dict[str, dict[str, Any]] = {}
    record = Record(history, {name: t.untrusted for name, t in all_tools.items() if t.untrusted})
    lookup = fact_lookup(services.store, ctx["tenant_id"], services.facts_of(ctx["run_id"]))
    for call in ai.tool_calls if ai else []:
        origins = record.of(call["args"]) if isinstance(call["args"], dict) else {}
        call_id = str(call["id"])
        replay: dict[str, Any] | None = None
        tool = granted.get(call["name"])
        if tool is None:
            reason = (
                f"tool {call['name']!r} is not granted to agent {spec.name!r}"
                if call["name"] in all_tools
                else f"no tool named {call['name']!r} exists"
            )
            verdict = Verdict(outcome="deny", rule="scope", policy_version=policy.version, reason=reason)
        else:
            try:
                tool.args_model.model_validate(call["args"])
            except ValidationError as e:
                reason = f"invalid arguments: {e.errors(include_url=False, include_input=False)}"
                verdict = Verdict(outcome="deny", rule="schema", policy_version=policy.version, reason=reason)
            else:
                seen_run = {"input": given, "calls": {k: dict(v) for k, v in calls.items()}}
                verdict = await evaluate_with_facts(
                    policy,
                    lookup,
                    tool=tool.name,
                    kind=tool.kind,
                    args=dict(call["args"]),
                    agent=spec.name,
                    tenant=ctx["tenant_id"],
                    caller=ctx["caller"],
                    run=seen_run,
                    provenance=origins,
                )
                replay = {
                    "id": f"{ctx['run_id']}:{call_id}",
                    "tenant_id": ctx["tenant_id"],
                    "run_id": ctx["run_id"],
                    "agent": spec.name,
                    "caller": ctx["caller"],
                    "tool": tool.name,
                    "kind": tool.kind,
                    "arguments": dict(call["args"]),
                    "context": {"run": seen_run, "provenance": origins, "facts": verdict.facts},
                    "outcome": verdict.outcome,
                    "rule": verdict.rule,
                    "policy_version": verdict.policy_version,
                }
                if verdict.outcome != "deny":
                    _count(calls, tool.name, dict(call["args"]))
        verdicts[call_id] = verdict.to_dict()
        with tracer().start_as_current_span(
            f"approval.evaluate {call['name']}",
            attributes={
                "gen_ai.tool.name": call["name"],
                "gen_ai.tool.call.id": call_id,
                RUN_ID: ctx["run_id"],
                "approval.verdict": verdict.outcome,
                "approval.rule": verdict.rule,
                "approval.policy_version": verdict.policy_version,
            },
        ) as span:
            if verdict.error:
                # The policy failed closed: say why, so the rule can be fixed.
                span.set_attribute("approval.error", verdict.error)
                span.set_status(StatusCode.ERROR, "policy condition could not be evaluated")
        data = {
            "tool": call["name"],
            "tool_call_id": call_id,
            "arguments_hash": canonical_hash(call["args"]),
            "verdict": verdict.outcome,
            "rule": verdict.rule,
            "policy_version": verdict.policy_version,
            "provenance": origins,
            **({"facts": verdict.facts} if verdict.facts else {}),
            **({"policy_error": verdict.error} if verdict.error else {}),
        }
        events.append(
            LedgerEntry(
                id=f"{ctx['run_id']}:{call_id}:proposed", type="tool.proposed", data=data, replay=replay
            )
        )
        if verdict.outcome == "deny":
            events.append(
                LedgerEntry(
                    id=f"{ctx['run_id']}:{call_id}:blocked",
                    type="tool.blocked",
                    data={**data, "reason": verdict.reason},
                )
            )
    return verdicts, events


EVIDENCE_STEPS = 20
EVIDENCE_CHARS = 4000


def evidence(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """What the agent had seen when it proposed a gated call: its tool calls so far with their results (the
    last ``EVIDENCE_STEPS``, each result cut at ``EVIDENCE_CHARS``), for the person who decides."""
    calls: dict[str, tuple[str, Any]] = {}
    for m in messages:
        if isinstance(m, AIMessage):
            for c in m.tool_calls:
                calls[str(c["id"])] = (c["name"], c["args"])
    steps: list[dict[str, Any]] = []
    for m in messages:
        if not isinstance(m, ToolMessage) or m.tool_call_id not in calls:
            continue
        name, args = calls[m.tool_call_id]
        text = str(m.content)
        result: Any = text
        if len(text) <= EVIDENCE_CHARS:
            try:
                result = json.loads(text)
            except ValueError:
                pass
        else:
            result = text[:EVIDENCE_CHARS] + " [...]"
        steps.append({"tool": name, "arguments": args, "status": m.status, "result": result})
    return steps[-EVIDENCE_STEPS:]


async def gate(state: AgentState) -> dict[str, Any]:
    """Runs in the workflow: interrupt once for every call of this turn that needs a person's decision."""
    messages = convert_to_messages(state.get("messages", []))
    ai = _last_ai(messages)
    verdicts = state.get("verdicts", {})
    seen = evidence(messages)
    pending = [
        {
            "tool_call_id": str(c["id"]),
            "tool": c["name"],
            "arguments": c["args"],
            "verdict": verdicts[str(c["id"])],
            "reason": str(ai.content) if ai else "",
            "evidence": seen,
        }
        for c in (ai.tool_calls if ai else [])
        if verdicts.get(str(c["id"]), {}).get("outcome") == "require_approval"
    ]
    if not pending:
        return {"decisions": {}}
    decisions = interrupt({"requests": pending})
    return {"decisions": decisions}


async def run_tools(
    state: AgentState, runtime: Runtime[RunContext], config: RunnableConfig
) -> dict[str, Any]:
    """Run allowed and approved calls with exactly the approved arguments; explain every call not run."""
    services, spec = _bound(config)
    async with heartbeats():
        update, events = await _run_tools(services, spec, state, runtime.context)
        await services.events(runtime.context, events)
    return update


async def _on_record(services: AgentServices, state: AgentState, ctx: RunContext) -> None:
    """The decisions this turn runs on are on record before any call runs (the workflow may pass them here
    rather than wait for their own write to finish)."""
    records = [r for d in state.get("decisions", {}).values() for r in d.get("records") or []]
    if records:
        await services.records(ctx, records)


async def _run_tools(
    services: AgentServices, spec: AgentSpec, state: AgentState, ctx: RunContext
) -> tuple[dict[str, Any], list[LedgerEntry]]:
    """The tool messages of this turn's calls and the ledger events of those that ran. The caller writes the
    events in one transaction; a crash before it re-runs the calls, and the effects ledger keeps every write
    tool's side effect to one."""
    granted = spec.tools()
    ai = _last_ai(convert_to_messages(state.get("messages", [])))
    verdicts = state.get("verdicts", {})
    decisions = state.get("decisions", {})
    out: list[ToolMessage] = []
    events: list[LedgerEntry] = []
    for call in ai.tool_calls if ai else []:
        call_id = str(call["id"])
        decision = decisions.get(call_id)
        content, status, key, args = _resolve(verdicts.get(call_id, {}), decision, ctx, call_id, call["args"])
        if key is not None:
            tool = granted[call["name"]]
            result, status = await _execute(
                services, spec.name, tool, args, key, call_id, ctx, verdicts.get(call_id, {})
            )
            events.append(
                LedgerEntry(
                    id=f"{key}:executed",
                    type="tool.executed",
                    data={
                        "tool": tool.name,
                        "tool_call_id": call_id,
                        "idempotency_key": key,
                        "arguments_hash": canonical_hash(args),
                        "result_hash": canonical_hash(result),
                        "status": status,
                        # The recorded decisions this effect ran on (none for an allowed call).
                        "approval_events": list((decision or {}).get("decision_events") or []),
                    },
                )
            )
            verdict = verdicts.get(call_id, {})
            if verdict.get("notify") and verdict.get("outcome") == "allow":
                # The policy allowed it and asked that these roles be told: a ledger event, no one waits.
                events.append(
                    LedgerEntry(
                        id=f"{key}:notified",
                        type="policy.notified",
                        data={
                            "tool": tool.name,
                            "rule": verdict.get("rule"),
                            "roles": list(verdict["notify"]),
                            "idempotency_key": key,
                            "arguments_hash": canonical_hash(args),
                        },
                    )
                )
            content = json.dumps(result, default=str)
        out.append(ToolMessage(content=content, tool_call_id=call_id, name=call["name"], status=status))
    return {"messages": out}, events


async def _execute(
    services: AgentServices,
    agent: str,
    tool: BusinessTool,
    args: dict[str, Any],
    key: str,
    call_id: str,
    ctx: RunContext,
    verdict: dict[str, Any],
) -> tuple[dict[str, Any], Literal["success", "error"]]:
    """Run one tool inside its ``execute_tool`` span; business refusals come back as an error result."""
    attributes = {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": tool.name,
        "gen_ai.tool.call.id": call_id,
        "gen_ai.tool.type": "function",
        RUN_ID: ctx["run_id"],
        "countersign.tool.kind": tool.kind,
        "countersign.idempotency_key": key,
        "countersign.arguments.hash": canonical_hash(args),
    }
    if verdict.get("outcome") == "require_approval":
        attributes["approval.request_id"] = key
    status: Literal["success", "error"] = "success"
    with tracer().start_as_current_span(f"execute_tool {tool.name}", attributes=attributes) as span:
        tool_ctx = ToolContext(
            tenant_id=ctx["tenant_id"],
            caller=ctx["caller"],
            run_id=ctx["run_id"],
            agent=agent,
            idempotency_key=key,
            store=services.store,
        )
        try:
            result = await tool.run(args, tool_ctx)
        except ValueError as e:  # pydantic's ValidationError included: the model gets the reason back
            result, status = {"error": str(e)}, "error"
        if result.get("error"):
            status = "error"
            span.set_status(StatusCode.ERROR, "tool returned an error")
        span.set_attribute("countersign.result.hash", canonical_hash(result))
        if services.capture_content:
            span.set_attribute("gen_ai.tool.call.arguments", json.dumps(args, default=str))
            span.set_attribute("gen_ai.tool.call.result", json.dumps(result, default=str))
    return result, status


async def after_model(state: AgentState) -> Literal["policy", "model", "__end__"]:
    """Route: tool calls go to the policy, feedback on an invalid answer back to the model, an answer ends
    the run (async: the workflow's event loop cannot run a sync router)."""
    if state.get("output") is not None or state.get("escalation"):
        return "__end__"
    messages = convert_to_messages(state.get("messages", []))
    if messages and isinstance(messages[-1], HumanMessage | ToolMessage):
        return "model"  # feedback on an invalid answer
    ai = _last_ai(messages)
    return "policy" if ai is not None and ai.tool_calls else "__end__"


async def after_think(state: AgentState) -> Literal["gate", "model", "__end__"]:
    """Route of the current graph: tool calls (already given verdicts) go to the gate, feedback on an invalid
    answer back to the model, an answer ends the run."""
    route = await after_model(state)
    return "gate" if route == "policy" else route


# Graph topologies by version. A run keeps the topology it started with (the workflow picks it behind a
# patch marker), so in-flight runs replay after an upgrade. Version 2 evaluates the policy in the model's
# activity: one round trip per model turn instead of two. Version 3 runs a turn's tool calls in the same
# activity as the model turn that reads their results (``act``): one round trip per model turn in all.
GRAPH_VERSIONS = (1, 2, 3)


def graph_name(agent: str, version: int) -> str:
    """The name a graph topology of an agent is registered under."""
    return agent if version == 1 else f"{agent}@{version}"


_COMPILED: dict[int, tuple[StateGraph[Any, Any, Any, Any], CompiledStateGraph[Any, Any, Any, Any]]] = {}


def compiled(g: StateGraph[Any, Any, Any, Any]) -> CompiledStateGraph[Any, Any, Any, Any]:
    """``g`` compiled once per process (compiling costs more than a model turn of the scripted model).

    A compiled graph holds no run's state: each run takes a copy with a checkpointer of its own
    (``compiled(g).copy({"checkpointer": ...})``), so a run replayed after its eviction starts clean.
    """
    hit = _COMPILED.get(id(g))
    if hit is None or hit[0] is not g:
        hit = _COMPILED[id(g)] = (g, g.compile())
    return hit[1]


def build_graph(spec: AgentSpec, services: AgentServices, version: int = 3) -> StateGraph[Any, Any, Any, Any]:
    """The agent's graph, its activity nodes bound to this worker's services."""
    # Every worker on a task queue serves the same graphs, so (task queue, agent) names the binding the same
    # way in every process: an activity retried on another worker finds its services there too.
    sid = f"{services.task_queue}:{spec.name}"
    _SERVICES[sid] = (services, spec)
    bind = {_META_KEY: sid}
    # Attempts are unlimited within the step deadline: a worker crash costs an attempt but no model retry;
    # model errors are counted by the step itself (``ask_model``) and stop it after ``model_attempts``.
    retry = RetryPolicy(maximum_interval=timedelta(seconds=10))
    g: StateGraph[Any, Any, Any, Any] = StateGraph(AgentState, context_schema=RunContext)
    # LangGraph's stubs lack an overload for (state, runtime, config) nodes, which it runs fine.
    g.add_node(  # type: ignore[call-overload]
        "model",
        call_model if version == 1 else think,
        metadata={
            **bind,
            "execute_in": "activity",
            "start_to_close_timeout": services.model_timeout + timedelta(seconds=30),
            "heartbeat_timeout": services.heartbeat,
            "schedule_to_close_timeout": services.step_deadline,
            "retry_policy": retry,
            "summary": f"{spec.name}: model",
        },
    )
    if version == 1:
        g.add_node(  # type: ignore[call-overload]
            "policy",
            evaluate_policy,
            metadata={
                **bind,
                "execute_in": "activity",
                "start_to_close_timeout": timedelta(seconds=30),
                "summary": "policy verdicts",
            },
        )
    g.add_node("gate", gate, metadata={"execute_in": "workflow"})
    if version < 3:
        g.add_node(
            "tools",
            run_tools,  # type: ignore[arg-type]
            metadata={
                **bind,
                "execute_in": "activity",
                "start_to_close_timeout": services.tool_timeout,
                "heartbeat_timeout": services.heartbeat,
                "summary": "run tools",
            },
        )
    else:
        act_timeout = services.tool_timeout + services.model_timeout + timedelta(seconds=30)
        g.add_node(
            "act",
            act,  # type: ignore[arg-type]
            metadata={
                **bind,
                "execute_in": "activity",
                "start_to_close_timeout": act_timeout,
                "heartbeat_timeout": services.heartbeat,
                "schedule_to_close_timeout": services.step_deadline,
                "retry_policy": retry,
                "summary": f"{spec.name}: tools, then model",
            },
        )
    g.add_edge(START, "model")
    if version == 1:
        g.add_conditional_edges("model", after_model, ["policy", "model", END])
        g.add_edge("policy", "gate")
    else:
        g.add_conditional_edges("model", after_think, ["gate", "model", END])
    if version < 3:
        g.add_edge("gate", "tools")
        g.add_edge("tools", "model")
    else:
        g.add_edge("gate", "act")
        g.add_conditional_edges("act", after_think, ["gate", "model", END])
    return g


def _resolve(
    verdict: dict[str, Any],
    decision: dict[str, Any] | None,
    ctx: RunContext,
    call_id: str,
    args: dict[str, Any],
) -> tuple[str, Literal["success", "error"], str | None, dict[str, Any]]:
    """What the tools node does with one call: (result if not run, status, idempotency key if run, args).

    A call that does not run gets a typed result, ``{"not_run": <why>, "message": ...}`` with ``why`` one of
    ``blocked``, ``no_decision``, ``rejected``, ``expired``, ``responded`` (or the request's status), plus
    ``reason``: the policy's reason or what the person wrote. Nobody has to read the message to know why.
    """
    outcome = verdict.get("outcome")
    if outcome == "allow":
        return "", "success", f"{ctx['run_id']}:{call_id}", args
    if outcome == "deny":
        reason = verdict.get("reason")
        message = f"Blocked by policy ({verdict.get('rule')}): {reason}"
        return _not_run("blocked", message, reason), "error", None, args
    if decision is None:
        return (
            _not_run("no_decision", "Not run: no decision was recorded for this call."),
            "error",
            None,
            args,
        )
    status = decision.get("status")
    if status == "approved":
        return "", "success", str(decision["request_id"]), dict(decision["arguments"])
    said = decision.get("message")
    messages = {
        "rejected": f"Rejected by a person: {said}. The action was not taken.",
        "expired": "The approval request expired with no decision; the action was not taken.",
        "responded": f"A person answered instead of running the tool: {said}",
    }
    message = messages.get(str(status), f"Not run: the approval request was {status}.")
    return _not_run(str(status), message, said), "error", None, args


def _not_run(why: str, message: str, reason: Any = None) -> str:
    return json.dumps({"not_run": why, "message": message, "reason": reason})
