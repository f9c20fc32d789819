"""What an agent declares: its input, prompt, granted scopes, output, owner, and its offline playbook.

The protocol every model speaks, real or scripted: tool calls, then one call of ``final_answer`` whose
arguments are the agent's output (its JSON schema is offered like a tool's). The run's output is that answer,
validated against ``output_model`` and checked against what the workflow knows for sure (``Facts``): the
run's input, the tools it used, and whatever the agent's ``derive`` computes from the record (resolved
citations, sources the run read). A fact the answer contradicts fails validation; the model's judgement is
never replaced.
"""

from __future__ import annotations

import copy
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, ValidationError

from tools.registry import BusinessTool, load_all

FINAL_ANSWER = "final_answer"
Playbook = Callable[[Sequence[BaseMessage]], AIMessage]


@dataclass(frozen=True)
class Facts:
    """What the workflow knows for sure about a run, to check its answer against."""

    input: dict[str, Any]
    results: dict[str, list[tuple[str, Any]]]  # tool name -> (status, parsed content), in order

    @property
    def tools_used(self) -> list[str]:
        """The tools whose results the model received (feedback on an answer is not a tool)."""
        return sorted(name for name in self.results if name != FINAL_ANSWER)


Derive = Callable[[dict[str, Any], Facts], dict[str, Any]]


@cache
def _answer_tool(output_model: type[BaseModel], derived_fields: tuple[str, ...]) -> dict[str, Any]:
    schema = output_model.model_json_schema()
    for name in derived_fields:
        schema.get("properties", {}).pop(name, None)
    if "required" in schema:
        schema["required"] = [r for r in schema["required"] if r not in derived_fields]
    return {
        "type": "function",
        "function": {
            "name": FINAL_ANSWER,
            "description": "Finish the run with your answer. Call it alone, once you are done with every "
            "other tool; its arguments are the result the caller receives.",
            "parameters": schema,
        },
    }


@cache
def _load(path: str) -> Playbook:
    module, _, name = path.partition(":")
    found: Playbook = getattr(importlib.import_module(module), name)
    return found


@dataclass(frozen=True)
class AgentSpec:
    """An agent's contract. ``scopes`` are all it may touch: the model is offered only those tools."""

    name: str
    description: str
    input_model: type[BaseModel]
    example_input: dict[str, Any]
    prompt: str
    scopes: frozenset[str]
    output_model: type[BaseModel]
    # "module:function" of the scripted offline playbook: imported only when the scripted model runs.
    offline: str = ""
    # Output fields the workflow fills from the record (never asked of the model; checked if it gives them).
    derive: Derive | None = None
    derived_fields: tuple[str, ...] = ("tools_used",)
    max_steps: int = 12
    tags: tuple[str, ...] = field(default=())
    # Who answers for the agent in production: a team, the role that decides its escalations, and
    # optionally a webhook URL for its alerts.
    owner: dict[str, str] = field(default_factory=dict)
    # When the model keeps failing (after its retries and fallbacks) or the run spends its budget: hand the
    # run to a person (an escalate_to_person request for the owner's role), or let it fail.
    on_model_failure: Literal["person", "fail"] = "person"

    @property
    def owner_role(self) -> str:
        """The role that decides the agent's escalations (approver:support unless the owner names one)."""
        return self.owner.get("role") or "approver:support"

    @property
    def playbook(self) -> Playbook:
        """The offline model's playbook (imported on first use)."""
        if not self.offline:
            raise LookupError(f"agent {self.name} has no offline playbook")
        return _load(self.offline)

    def answer_tool(self) -> dict[str, Any]:
        """The ``final_answer`` tool offered to the model: its parameters are the output's schema, less the
        fields the workflow fills itself (built once: it is offered every turn)."""
        return copy.deepcopy(_answer_tool(self.output_model, self.derived_fields))

    def check_answer(self, answer: dict[str, Any], facts: Facts) -> tuple[dict[str, Any], str | None]:
        """The run's output from the model's answer, and why it is not acceptable (None when it is)."""
        derived = {"tools_used": facts.tools_used} | (self.derive(answer, facts) if self.derive else {})
        problems = [
            f"{key}: the run's record says {derived[key]!r}, not {answer[key]!r}"
            for key in derived
            if key in answer and answer[key] != derived[key]
        ]
        problems += [
            f"{key}: the run was asked about {value!r}, not {answer[key]!r}"
            for key, value in facts.input.items()
            if key in answer and answer[key] != value
        ]
        output = {**answer, **derived}
        invalid = self.check_output(output)
        if invalid:
            problems.append(invalid)
        return output, "; ".join(problems) or None

    def check_output(self, output: dict[str, Any]) -> str | None:
        """Why ``output`` does not fit ``output_model`` (None when it fits)."""
        try:
            self.output_model.model_validate(output)
        except ValidationError as e:
            return "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors(include_url=False)
            )
        return None

    def tools(self) -> dict[str, BusinessTool]:
        """The registered tools whose scope this agent was granted."""
        return {name: t for name, t in load_all().items() if t.scope in self.scopes}
