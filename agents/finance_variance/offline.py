"""The offline (scripted) model's playbook for ``finance_variance``: what a careful controller's assistant
does on the demo data, ending with a ``final_answer`` call like any model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from agents.finance_variance.agent import SPEC, THRESHOLD_ABS, THRESHOLD_PCT
from agents.playbook import answering, last_text, run_input, tool_results


class _Read:
    """What the run has read so far, by account."""

    def __init__(self, messages: Sequence[BaseMessage]) -> None:
        inp = run_input(messages)
        self.period, self.cost_center = str(inp.get("period", "")), str(inp.get("cost_center", ""))
        self.results = tool_results(messages)
        reports = [c for s, c in self.results.get("get_variance_report", []) if isinstance(c, dict)]
        self.report = reports[-1] if reports else None
        self.lines: dict[str, list[dict[str, Any]]] = {
            str(c["account"]): list(c["lines"])
            for s, c in self.results.get("get_ledger_lines", [])
            if isinstance(c, dict) and "account" in c
        }
        self.invoices: dict[str, dict[str, Any]] = {}
        for name in ("get_vendor_invoice", "list_vendor_invoices"):
            for _, c in self.results.get(name, []):
                if not isinstance(c, dict):
                    continue
                for inv in c.get("invoices", [c] if c.get("found") else []):
                    self.invoices[str(inv["invoice_id"])] = inv

    @property
    def material(self) -> list[dict[str, Any]]:
        rows = (self.report or {}).get("accounts", [])
        return [
            a
            for a in rows
            if abs(a["variance"]) >= THRESHOLD_ABS
            and (a["variance_pct"] is None or abs(a["variance_pct"]) >= THRESHOLD_PCT)
        ]

    def explain(self, account: dict[str, Any]) -> dict[str, Any]:
        """The cause of one material variance, from what was read (the same answer every time)."""
        acct, variance = str(account["account"]), float(account["variance"])
        lines = self.lines.get(acct, [])
        base = {k: account[k] for k in ("account", "account_name", "budget", "actual", "variance")}
        for line in lines:
            inv = self.invoices.get(str(line.get("invoice_id")))
            if variance > 0 and inv and inv["cost_center"] != self.cost_center:
                return base | {
                    "cause": "misposting",
                    "explanation": (
                        f"{line['line_id']} ({line['amount']:,.2f}, {line['vendor']}) is invoice "
                        f"{inv['invoice_id']}, which is for {inv['cost_center']}: it was posted to "
                        f"{self.cost_center} by mistake."
                    ),
                    "sources": [line["line_id"], inv["invoice_id"]],
                    "fix": {
                        "ledger_line_id": line["line_id"],
                        "to_cost_center": inv["cost_center"],
                        "to_account": inv["account"],
                        "amount": min(float(line["amount"]), float(inv["amount"])),
                        "reason": f"Invoice {inv['invoice_id']} is for {inv['cost_center']}, posted to "
                        f"{self.cost_center} in error",
                    },
                }
        if variance < 0:
            late = [
                inv
                for inv in self.invoices.values()
                if inv["account"] == acct
                and inv["service_period"] == self.period
                and inv.get("posted_period") != self.period
            ]
            if late and abs(sum(float(i["amount"]) for i in late) + variance) < 0.01:
                ids = [i["invoice_id"] for i in late]
                return base | {
                    "cause": "timing",
                    "explanation": (
                        f"Invoice {', '.join(ids)} for {self.period} services "
                        f"({sum(float(i['amount']) for i in late):,.2f}) reached the ledger in "
                        f"{late[0].get('posted_period') or 'no month yet'}: the cost belongs to "
                        f"{self.period}."
                    ),
                    "sources": [*(ln["line_id"] for ln in lines), *ids],
                    "fix": None,
                }
        checked = [ln["line_id"] for ln in lines]
        invoices = [str(ln["invoice_id"]) for ln in lines if ln.get("invoice_id")]
        also = f" and invoices {', '.join(invoices)}" if invoices else ""
        what = ", ".join(checked) or "no lines"
        return base | {
            "cause": "unexplained",
            "explanation": f"Nothing on file explains {variance:+,.2f}: checked {what}{also}.",
            "sources": checked,
            "fix": None,
        }


def _calls(messages: Sequence[BaseMessage], calls: list[tuple[str, dict[str, Any]]], say: str) -> AIMessage:
    turn = sum(1 for m in messages if isinstance(m, AIMessage))
    return AIMessage(
        content=say,
        tool_calls=[{"name": n, "args": a, "id": f"call_{turn}_{i}_{n}"} for i, (n, a) in enumerate(calls)],
    )


def steps(messages: Sequence[BaseMessage]) -> AIMessage:
    """The next step on the demo data: tool calls, or the closing summary."""
    r = _Read(messages)
    where = {"period": r.period, "cost_center": r.cost_center}
    if "get_variance_report" not in r.results:
        return _calls(messages, [("get_variance_report", where)], "Reading the variance report.")
    if not (r.report or {}).get("found"):
        return AIMessage(content=f"There is no budget or ledger data for {r.cost_center} in {r.period}.")
    todo = [
        ("get_ledger_lines", where | {"account": a["account"]})
        for a in r.material
        if a["account"] not in r.lines
    ]
    if todo:
        return _calls(messages, todo, "Reading the ledger lines behind each material variance.")
    if "list_vendor_invoices" not in r.results and "get_vendor_invoice" not in r.results:
        reads: list[tuple[str, dict[str, Any]]] = []
        for a in r.material:
            if a["variance"] < 0:
                args = {"cost_center": r.cost_center, "service_period": r.period, "account": a["account"]}
                reads.append(("list_vendor_invoices", args))
            for line in r.lines.get(a["account"], []):
                if line.get("invoice_id") and a["variance"] > 0:
                    reads.append(("get_vendor_invoice", {"invoice_id": line["invoice_id"]}))
        if reads:
            return _calls(messages, reads, "Reading the invoices behind the lines.")
    if "propose_reclassification" not in r.results and "flag_variance" not in r.results:
        writes: list[tuple[str, dict[str, Any]]] = []
        for a in r.material:
            e = r.explain(a)
            if e["cause"] == "misposting":
                writes.append(("propose_reclassification", e["fix"]))
            elif e["cause"] == "unexplained":
                reason = e["explanation"]
                writes.append(
                    (
                        "flag_variance",
                        where | {"account": a["account"], "variance": a["variance"], "reason": reason},
                    )
                )
        if writes:
            return _calls(messages, writes, "Proposing the corrections and handing over what is unexplained.")
    return AIMessage(content=_summary(r))


def _summary(r: _Read) -> str:
    if not r.material:
        return f"No material variance on {r.cost_center} in {r.period}."
    parts = [f"{r.cost_center}, {r.period}: {len(r.material)} material variance(s)."]
    for a in r.material:
        e = r.explain(a)
        parts.append(
            f"{a['account']} {a['account_name']} {a['variance']:+,.2f} ({e['cause']}): {e['explanation']}"
        )
    return "\n".join(parts)


def _action(r: _Read, cause: str) -> str | None:
    name = {"misposting": "propose_reclassification", "unexplained": "flag_variance"}.get(cause)
    if name is None or name not in r.results:
        return None
    status, content = r.results[name][-1]
    if (
        status == "success"
        and isinstance(content, dict)
        and (content.get("posted") or content.get("flagged"))
    ):
        return "reclassification posted" if name == "propose_reclassification" else "flagged to a controller"
    # A tool's refusal carries "error"; a call people did not let run carries "message" (and "not_run").
    why = (content.get("error") or content.get("message")) if isinstance(content, dict) else str(content)
    return f"not done: {why}"


def finish(messages: Sequence[BaseMessage]) -> dict[str, Any]:
    """The run's output: each material variance with its cause, explanation, cited sources and the action
    taken; whether a controller must look (anything unexplained), and the summary."""
    r = _Read(messages)
    read_ids = {ln["line_id"] for lines in r.lines.values() for ln in lines} | set(r.invoices)
    variances = []
    for a in r.material:
        e = r.explain(a)
        e.pop("fix", None)
        variances.append(e | {"action": _action(r, e["cause"])})
    cited = {s for v in variances for s in v["sources"]}
    return {
        "period": r.period,
        "cost_center": r.cost_center,
        "variances": variances,
        "escalated": any(v["cause"] == "unexplained" for v in variances),
        "summary": last_text(messages),
        "unread_sources": sorted(cited - read_ids),
        "tools_used": sorted(r.results),
    }


playbook = answering(steps, finish, SPEC.derived_fields)
