"""What an agent declares: its input, prompt, granted scopes, playbook and how it shapes its output."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from pydantic import BaseModel, ValidationError

from tools.registry import BusinessTool, load_all

Finish = Callable[[Sequence[BaseMessage]], dict[str, Any]]


@dataclass(frozen=True)
class AgentSpec:
    """An agent's contract. ``scopes`` are all it may touch: the model is offered only those tools."""

    name: str
    description: str
    input_model: type[BaseModel]
    example_input: dict[str, Any]
    prompt: str
    scopes: frozenset[str]
    playbook: Callable[[Sequence[BaseMessage]], AIMessage]
    finish: Finish
    max_steps: int = 12
    output_model: type[BaseModel] | None = None
    tags: tuple[str, ...] = field(default=())
    # Who answers for the agent in production: a team, the role that decides its escalations, and
    # optionally a webhook URL for its alerts.
    owner: dict[str, str] = field(default_factory=dict)

    def check_output(self, output: dict[str, Any]) -> str | None:
        """Why ``output`` does not fit ``output_model`` (None when it fits, or when there is no model)."""
        if self.output_model is None:
            return None
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

    def describe(self) -> dict[str, Any]:
        """The public description served by ``GET /v1/agents``."""
        return {
            "name": self.name,
            "description": self.description,
            "owner": dict(self.owner),
            "input_schema": self.input_model.model_json_schema(),
            "example_input": self.example_input,
            "scopes": sorted(self.scopes),
            "tools": [
                {"name": t.name, "scope": t.scope, "kind": t.kind, "description": t.description}
                for t in sorted(self.tools().values(), key=lambda t: t.name)
            ],
        }
