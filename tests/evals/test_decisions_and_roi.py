"""Decisions become golden cases (with provenance, personal data redacted), and the ROI report reads the
recorded runs: the worked example of the issue, and a measurement over real runs and decisions."""

from __future__ import annotations

import datetime as dt

from evals.export import decided_cases, redact
from evals.roi import gross_saving, measure
from tests.conftest import Stack
from tests.e2e.test_gates import decide


def test_the_worked_example() -> None:
    # 2,000 tickets a month, 40 % automated, 4 minutes each at $45 an hour: $2,400 a month, gross.
    assert gross_saving(2000, 0.40, 4, 45) == 2400.0


def test_redaction_rule() -> None:
    text = "Please call me at +1 (555) 123-4567 or mail anna.smith@example.com, as agreed with Anna Smith."
    assert redact(text) == "Please call me at [phone] or mail [email], as agreed with [name]."
    # Record ids, amounts and sentence starts stay: the case must replay against the same records.
    assert redact({"order_id": "O-5002", "amount": 250.0, "r": "Refund 250 on T-1002"}) == {
        "order_id": "O-5002",
        "amount": 250.0,
        "r": "Refund 250 on T-1002",
    }


async def test_decisions_become_cases_and_runs_measure_the_return(stack: Stack) -> None:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    rejected = await stack.start("support_drafting", {"ticket_id": "T-1002"})
    edited = await stack.start("support_drafting", {"ticket_id": "T-1004"})
    plain = await stack.start("support_drafting", {"ticket_id": "T-1001"})
    [r1] = await stack.pending(rejected["id"])
    [r2] = await stack.pending(edited["id"])
    why = "Customer called, mail anna@example.com or +44 20 7946 0958; handled by Bob Jones instead."
    assert (await decide(stack, r1, "alice", action="reject", reason=why)).status_code == 201
    new_args = r2["arguments"] | {"amount": 1500.0}
    first = await decide(stack, r2, "alice", action="edit", arguments=new_args)
    assert first.status_code == 201, first.text
    [again] = await stack.pending(edited["id"])
    assert (await decide(stack, again, "bob")).status_code == 201
    for run in (rejected, edited, plain):
        assert (await stack.result(run["id"]))["status"] == "completed"

    async with stack.sessions() as s:
        cases = {c["metadata"]["provenance"]["approval_id"]: c for c in await decided_cases(s, since=since)}
        rois = await measure(s, since=since, volume=2000, minutes_saved=4, hourly_cost=45)
    no = cases[r1["id"]]
    assert no["inputs"] == {
        "input": {"ticket_id": "T-1002"},
        "decisions": {
            "issue_refund": {
                "action": "reject",
                "reason": "Customer called, mail [email] or [phone]; handled by [name] instead.",
            }
        },
    }
    assert no["metadata"]["not_executed"] == ["issue_refund"]
    assert no["metadata"]["provenance"]["decided_by"] == [stack.principals["alice"]]
    assert len(no["metadata"]["provenance"]["ledger_event_hash"]) == 64
    yes = cases[r2["id"]]
    assert yes["inputs"]["decisions"]["issue_refund"]["action"] == "edit"
    assert yes["metadata"]["executed"] == {"issue_refund": new_args}
    assert yes["metadata"]["provenance"]["decided_by"] == [stack.principals["alice"], stack.principals["bob"]]

    [roi] = rois
    assert (
        roi.agent == "support_drafting" and roi.runs == 3 and roi.automated == 2
    )  # the rejected run: a person
    assert roi.gross == gross_saving(2000, 2 / 3, 4, 45)
    assert roi.review_minutes_per_run > 0 and roi.net < roi.gross
