"""The public index of agents: what the API lists and the worker builds graphs for.

Agents are discovered, not registered by hand: every subpackage of ``agents`` that exports a ``SPEC`` is
an agent, and so is every ``countersign.agents`` entry point of an installed distribution (an agent shipped
in its own package). Adding an agent is adding its folder.
"""

from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

import agents
from agents.spec import AgentSpec


def discover() -> dict[str, AgentSpec]:
    """Every agent: the subpackages of ``agents`` with a ``SPEC``, then ``countersign.agents`` entries."""
    found: list[AgentSpec] = []
    for module in sorted(pkgutil.iter_modules(agents.__path__), key=lambda m: m.name):
        if module.ispkg:
            spec = getattr(importlib.import_module(f"agents.{module.name}"), "SPEC", None)
            if isinstance(spec, AgentSpec):
                found.append(spec)
    for point in entry_points(group="countersign.agents"):
        spec = point.load()
        if not isinstance(spec, AgentSpec):
            raise TypeError(f"entry point {point.name} ({point.value}) is not an AgentSpec")
        found.append(spec)
    by_name: dict[str, AgentSpec] = {}
    for spec in found:
        if not (spec.owner.get("team") and spec.owner.get("role", "").startswith("approver:")):
            raise ValueError(f"agent {spec.name!r} names no owner (a team and an approver:<group> role)")
        if spec.name in by_name and by_name[spec.name] is not spec:
            raise ValueError(f"two agents are named {spec.name!r}")
        by_name[spec.name] = spec
    return by_name


AGENTS: dict[str, AgentSpec] = discover()


def get_agent(name: str) -> AgentSpec | None:
    """The agent of that name, if there is one."""
    return AGENTS.get(name)
