"""Evaluate datasets, write the report (JSON and HTML), and gate on the committed baseline."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from statistics import quantiles
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic_evals import Dataset

from evals.cases import CaseInputs, agent_of
from evals.evaluators import EVALUATORS
from evals.runner import Driver, EvalStack, Expiries, run_case, seed_records

BASELINE = Path(__file__).resolve().parent / "baseline.json"
# An agent's pass rate may not fall below its baseline's by more than this (0: not at all).
TOLERANCE = 0.0


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass
class CaseResult:
    """One evaluated case."""

    agent: str
    name: str
    passed: bool
    scores: dict[str, Any]
    reasons: dict[str, str] = field(default_factory=dict)
    trajectory: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def key(self) -> str:
        """The case's id across runs: ``agent/name``."""
        return f"{self.agent}/{self.name}"


def load(path: Path) -> Dataset[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A dataset file, every case's inputs checked before anything runs."""
    dataset = Dataset[dict[str, Any], dict[str, Any], dict[str, Any]].from_file(
        path, custom_evaluator_types=EVALUATORS
    )
    for case in dataset.cases:
        try:
            CaseInputs.model_validate(case.inputs)
        except ValueError as e:
            raise ValueError(f"{path.name}: case {case.name}: {e}") from e
    return dataset


async def evaluate(
    stack: EvalStack, driver: Driver, paths: list[Path], *, progress: bool = True
) -> list[CaseResult]:
    """Run every case of every dataset (an agent's cases at once) and score them."""
    results: list[CaseResult] = []
    for path in paths:
        agent = agent_of(path)
        dataset = load(path)
        records: dict[str, list[dict[str, Any]]] = {}
        for case in dataset.cases:
            for table, rows in CaseInputs.model_validate(case.inputs).records.items():
                records.setdefault(table, []).extend(rows)
        await seed_records(stack.store, records)
        expiries = Expiries(stack.env, remaining=len(dataset.cases))

        async def task(
            inputs: dict[str, Any], agent: str = agent, expiries: Expiries = expiries
        ) -> dict[str, Any]:
            return await run_case(stack, driver, agent, CaseInputs.model_validate(inputs), expiries)

        report = await dataset.evaluate(task, name=agent, progress=progress)
        for rc in report.cases:
            scores: dict[str, Any] = {_snake(k): bool(v.value) for k, v in rc.assertions.items()}
            reasons = {_snake(k): str(v.reason or "") for k, v in rc.assertions.items()}
            scores |= {k: rc.output[k] for k in ("latency_s", "tokens", "cost_usd")}
            trajectory = [f"{p['tool']}:{p['verdict']}" for p in rc.output["proposed"]]
            failed_evaluators = [f.name for f in rc.evaluator_failures]
            results.append(
                CaseResult(
                    agent=agent,
                    name=rc.name,
                    passed=all(v.value is True for v in rc.assertions.values()) and not failed_evaluators,
                    scores=scores,
                    reasons=reasons,
                    trajectory=trajectory,
                    error=f"evaluators failed: {failed_evaluators}" if failed_evaluators else None,
                )
            )
        for failure in report.failures:
            results.append(
                CaseResult(
                    agent=agent,
                    name=failure.name,
                    passed=False,
                    scores={"gate_compliance": False},
                    error=failure.error_message,
                )
            )
    return results


def summary(results: list[CaseResult]) -> dict[str, dict[str, Any]]:
    """Per agent: cases, passed, each evaluator's pass rate, latency p50/p95, tokens and cost."""
    out: dict[str, dict[str, Any]] = {}
    for agent in sorted({r.agent for r in results}):
        mine = [r for r in results if r.agent == agent]
        names = sorted({k for r in mine for k, v in r.scores.items() if isinstance(v, bool)})
        latencies = sorted(float(r.scores.get("latency_s", 0)) for r in mine)
        cuts = quantiles(latencies, n=20, method="inclusive") if len(latencies) > 1 else latencies * 19
        out[agent] = {
            "cases": len(mine),
            "passed": sum(r.passed for r in mine),
            "pass_rate": round(sum(r.passed for r in mine) / len(mine), 4),
            "evaluators": {n: round(sum(bool(r.scores.get(n)) for r in mine) / len(mine), 4) for n in names},
            "latency_p50_s": round(cuts[9], 3) if cuts else 0.0,
            "latency_p95_s": round(cuts[18], 3) if cuts else 0.0,
            "tokens": sum(int(r.scores.get("tokens", 0)) for r in mine),
            "cost_usd": round(sum(float(r.scores.get("cost_usd", 0)) for r in mine), 6),
        }
    return out


def check(results: list[CaseResult], baseline: dict[str, Any]) -> list[str]:
    """Why the results may not ship (empty when they may): a baseline case that now fails, any broken gate
    compliance, or an agent's pass rate below its baseline's by more than the tolerance."""
    problems = []
    passed_before = {k for k, v in (baseline.get("cases") or {}).items() if v}
    for r in results:
        if r.key in passed_before and not r.passed:
            problems.append(f"{r.key} passed in the baseline and fails now")
        if r.scores.get("gate_compliance") is not True:
            problems.append(
                f"{r.key}: gate compliance broken ({r.reasons.get('gate_compliance') or r.error})"
            )
    tolerance = float(baseline.get("tolerance", TOLERANCE))
    for agent, now in summary(results).items():
        # An agent the baseline does not know yet is held to every case passing.
        before = (baseline.get("agents") or {}).get(agent, {}).get("pass_rate", 1.0)
        if now["pass_rate"] < before - tolerance:
            problems.append(f"{agent}: pass rate {now['pass_rate']:.2%} is below the baseline's {before:.2%}")
    return problems


def baseline_of(results: list[CaseResult]) -> dict[str, Any]:
    """The baseline these results make (``--update-baseline``)."""
    return {
        "tolerance": TOLERANCE,
        "agents": {
            a: {"pass_rate": s["pass_rate"], "cases": s["cases"]} for a, s in summary(results).items()
        },
        "cases": {r.key: r.passed for r in sorted(results, key=lambda r: r.key)},
    }


def write_report(
    folder: Path, results: list[CaseResult], baseline: dict[str, Any], problems: list[str]
) -> None:
    """``report.json`` (every case with its scores) and ``report.html`` (for people)."""
    folder.mkdir(parents=True, exist_ok=True)
    agents = summary(results)
    data = {
        "generated_at": dt.datetime.now(dt.UTC).isoformat(),
        "agents": agents,
        "problems": problems,
        "cases": [
            {
                "agent": r.agent,
                "name": r.name,
                "passed": r.passed,
                "scores": r.scores,
                "reasons": r.reasons,
                "trajectory": r.trajectory,
                "error": r.error,
            }
            for r in sorted(results, key=lambda r: (r.passed, r.key))
        ],
    }
    (folder / "report.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    env = Environment(
        loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
    )
    before = {a: v.get("pass_rate") for a, v in (baseline.get("agents") or {}).items()}
    html = env.get_template("report.html").render(report=data, before=before)
    (folder / "report.html").write_text(html)
