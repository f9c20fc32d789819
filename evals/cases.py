"""Golden cases: what a run is given, what people decide when it asks, and what must be true of it after.

A dataset is a ``pydantic-evals`` YAML file per agent (``evals/datasets/<agent>.yaml``). Each case's
``inputs`` say what starts the run and how each gated tool call is decided; its ``metadata`` says what the
evaluators check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

DATASETS = Path(__file__).resolve().parent / "datasets"


class Decision(BaseModel):
    """How the case's people decide a gated call of one tool."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["approve", "edit", "reject", "respond", "expire"]
    # edit: the arguments to change (merged over the proposed ones)
    arguments: dict[str, Any] | None = None
    reason: str | None = None
    message: str | None = None


class CaseInputs(BaseModel):
    """What the case runs: the agent's input, an optional budget, the decisions per tool, extra records."""

    model_config = ConfigDict(extra="forbid")
    input: dict[str, Any]
    budget: dict[str, Any] | None = None
    decisions: dict[str, Decision] = Field(default_factory=dict)
    # Records the case needs beyond the demo data, by table (e.g. tickets carrying injected instructions).
    records: dict[str, list[dict[str, Any]]] = Field(default_factory=dict)


class Expect(BaseModel):
    """What must hold of the run (every field optional: a case checks what it names)."""

    model_config = ConfigDict(extra="forbid")
    status: Literal["completed", "failed"] | None = "completed"
    # Tool calls that must be proposed (in this order, among the named ones), and ones never proposed.
    required_tools: list[str] = Field(default_factory=list)
    ordered: bool = False
    forbidden_tools: list[str] = Field(default_factory=list)
    # Calls that must wait for people before running (gate compliance is scored on every case regardless).
    gated: list[str] = Field(default_factory=list)
    # Tools that must run, with exactly these arguments (after any edit) when given; tools that must not run.
    executed: dict[str, dict[str, Any] | None] = Field(default_factory=dict)
    not_executed: list[str] = Field(default_factory=list)
    escalated: bool | None = None
    escalation_reason: str | None = None
    # Output fields that must equal these values.
    output: dict[str, Any] = Field(default_factory=dict)
    citations: bool = False
    # Where a case exported from decisions came from (approval id, deciders, ledger event hash).
    provenance: dict[str, Any] | None = None


def agent_of(path: Path) -> str:
    """The agent a dataset file is for (its file name)."""
    return path.stem


def dataset_paths(agents: list[str] | None = None) -> list[Path]:
    """The dataset files of ``agents`` (every dataset when None)."""
    found = sorted(DATASETS.glob("*.yaml"))
    if agents is None:
        return found
    by_name = {agent_of(p): p for p in found}
    missing = [a for a in agents if a not in by_name]
    if missing:
        raise LookupError(f"no golden dataset for {', '.join(missing)} (have: {', '.join(sorted(by_name))})")
    return [by_name[a] for a in agents]
