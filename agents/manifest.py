"""What the API may know of an agent: a small, frozen description of each, read from the discovered specs.

The API lists agents, validates a run's input and checks who may trigger what; it never needs the agent's
prompt, graph, playbook or output checks. Importing only this module keeps it that way (an import contract
in pyproject.toml holds the API to it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel

from agents.catalog import AGENTS
from agents.spec import AgentSpec


@dataclass(frozen=True)
class ToolManifest:
    """A tool the agent may be offered: what it is called, the scope it needs, whether it reads or writes."""

    name: str
    scope: str
    kind: str
    description: str


@dataclass(frozen=True)
class AgentManifest:
    """An agent as its callers see it: name, purpose, owner, input contract, scopes and tools."""

    name: str
    description: str
    owner: dict[str, str]
    input_model: type[BaseModel]
    example_input: dict[str, Any]
    scopes: tuple[str, ...]
    tools: tuple[ToolManifest, ...]

    @property
    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema of the agent's input."""
        return self.input_model.model_json_schema()

    def validate_input(self, data: dict[str, Any]) -> BaseModel:
        """The input parsed against the agent's input model; raises ``pydantic.ValidationError``."""
        return self.input_model.model_validate(data)

    def describe(self) -> dict[str, Any]:
        """The public description served by ``GET /v1/agents``."""
        return {
            "name": self.name,
            "description": self.description,
            "owner": dict(self.owner),
            "input_schema": self.input_schema,
            "example_input": self.example_input,
            "scopes": list(self.scopes),
            "tools": [
                {"name": t.name, "scope": t.scope, "kind": t.kind, "description": t.description}
                for t in self.tools
            ],
        }


def _of(spec: AgentSpec) -> AgentManifest:
    return AgentManifest(
        name=spec.name,
        description=spec.description,
        owner=dict(spec.owner),
        input_model=spec.input_model,
        example_input=spec.example_input,
        scopes=tuple(sorted(spec.scopes)),
        tools=tuple(
            ToolManifest(name=t.name, scope=t.scope, kind=t.kind, description=t.description)
            for t in sorted(spec.tools().values(), key=lambda t: t.name)
        ),
    )


@cache
def _all() -> dict[str, AgentManifest]:
    # Built on first use, not at import: the tools' registry is complete only once every tool package loaded.
    return {name: _of(spec) for name, spec in AGENTS.items()}


def manifests() -> list[AgentManifest]:
    """Every agent's manifest, in discovery order."""
    return list(_all().values())


def manifest(name: str) -> AgentManifest | None:
    """The manifest of the agent of that name, if there is one."""
    return _all().get(name)
