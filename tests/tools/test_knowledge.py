"""The policy knowledge base: packaged documents, BM25 search and its relevance threshold, citations."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import AsyncIterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import pytest

from approvals.policy import load_policy
from countersign.settings import Settings
from tools.business import BusinessStore
from tools.knowledge import (
    MIN_SCORE,
    citation_ids,
    get_passage,
    parse_document,
    passages,
    resolve_citations,
    search,
    slug,
)
from tools.registry import ToolContext, get_tool

# --- Documents and passages ---------------------------------------------------------------------------------


def test_documents_ship_with_the_package_and_every_section_is_a_passage() -> None:
    docs = sorted(
        e.name for e in files("tools.knowledge").joinpath("docs").iterdir() if e.name.endswith(".md")
    )
    assert 8 <= len(docs) <= 12
    all_passages = passages()
    assert {p.doc for p in all_passages.values()} == {d.removesuffix(".md") for d in docs}
    for pid, p in all_passages.items():
        assert pid == p.id == f"{p.doc}#{slug(p.section)}"
        assert re.fullmatch(r"[a-z0-9-]+#[a-z0-9-]+", pid)
        assert p.title and p.section and len(p.text) > 40, pid
        assert "#" not in p.text, f"{pid}: a heading leaked into the text"
    damaged = all_passages["refund-policy#damaged-items"]
    assert (damaged.title, damaged.section) == ("Refunds and returns", "Damaged items")
    assert damaged.text.startswith("If an item arrives damaged")


def test_parse_document_splits_on_sections_and_refuses_bad_documents() -> None:
    parsed = parse_document(
        "faq", "# FAQ\nWhat this is.\n\n## First, Question?\nLine one\nline two.\n## Last\nEnd."
    )
    assert [(p.id, p.section, p.text) for p in parsed] == [
        ("faq#overview", "Overview", "What this is."),
        ("faq#first-question", "First, Question?", "Line one line two."),
        ("faq#last", "Last", "End."),
    ]
    with pytest.raises(ValueError, match="no '# ' title"):
        parse_document("x", "## Only a section\ntext")
    with pytest.raises(ValueError, match="two sections with the id x#same"):
        parse_document("x", "# X\n## Same\na\n## same!\nb")


# --- Search and the relevance threshold ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (
            "When will my keyboard arrive? Hi, I ordered a keyboard last week (O-5001).",
            "shipping-policy#delivery-times",
        ),
        (
            "Chair arrived damaged - refund please. The chair arrived with a cracked base; I will keep it.",
            "refund-policy#damaged-items",
        ),
        (
            "Cables wrong colour. I received white cables instead of black.",
            "refund-policy#wrong-or-missing-items",
        ),
        ("Laptop dead on arrival. It does not power on.", "refund-policy#dead-on-arrival"),
        ("My parcel is lost, it was never delivered", "shipping-policy#late-or-lost-parcels"),
        ("I want to cancel my order", "order-changes#cancelling-before-dispatch"),
        ("please delete my personal data", "privacy-policy#access-and-deletion-requests"),
        ("when do my reward points expire", "loyalty-program#points-expiry"),
        ("can I pay with PayPal?", "payment-methods#accepted-payment-methods"),
        ("the price dropped a week after I bought it", "price-adjustments#price-drop-protection"),
        ("how do I change the delivery address", "order-changes#changing-the-delivery-address"),
    ],
)
def test_search_finds_the_passage_that_answers(query: str, expected: str) -> None:
    hits = search(query)
    assert hits, query
    assert hits[0].passage.id == expected, [(h.passage.id, h.score) for h in hits]


def test_results_are_ranked_bounded_and_above_the_threshold() -> None:
    query = "refund for a damaged item that arrived broken"
    hits = search(query, k=5)
    assert 1 < len(hits) <= 5
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(s >= MIN_SCORE for s in scores)
    assert len(search(query, k=1)) == 1
    assert search(query, k=0) == []
    assert search(query, k=500)  # more than there are passages is fine


@pytest.mark.parametrize(
    "query",
    [
        "quantum chromodynamics lattice",
        "Sponsoring our school robotics club. Hello! Our school's robotics club is raising money for the "
        "regional competition in spring. Could your company sponsor our club with a donation?",
        "order",  # one word that many passages share is not a topic
        "refund",
        "the and of to",  # stopwords only
        "!!! ??? ---",
        "",
    ],
)
def test_unrelated_queries_find_nothing(query: str) -> None:
    assert search(query) == []


def test_the_threshold_is_what_drops_weak_matches() -> None:
    weak = search("order", k=3, min_score=0.0)
    assert weak and all(0 < h.score < MIN_SCORE for h in weak)
    assert search("quantum chromodynamics lattice", min_score=0.0) == []  # no shared word: nothing at all


def test_importing_the_tools_does_not_load_bm25s_and_searching_loads_no_heavy_optional_dependency() -> None:
    code = (
        "import sys\n"
        "import tools.knowledge as k\n"
        "assert 'bm25s' not in sys.modules and 'numpy' not in sys.modules\n"
        "assert k.search('refund for a damaged chair')\n"
        "heavy = {'scipy', 'numba', 'jax', 'torch', 'huggingface_hub', 'transformers'}\n"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))\n"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --- Citations ----------------------------------------------------------------------------------------------


def test_citations_resolve_to_real_passages_in_order_once() -> None:
    text = (
        "We refunded you [refund-policy#damaged-items]. It arrives in days [shipping-policy#delivery-times], "
        "see [refund-policy#damaged-items] again and [refund-policy#no-such-section] and [not a citation]."
    )
    assert citation_ids(text) == [
        "refund-policy#damaged-items",
        "shipping-policy#delivery-times",
        "refund-policy#no-such-section",
    ]
    resolved = resolve_citations(text)
    assert [p.id for p in resolved] == ["refund-policy#damaged-items", "shipping-policy#delivery-times"]
    assert resolved[0] == get_passage("refund-policy#damaged-items")
    assert resolve_citations("no markers here") == []
    assert get_passage("refund-policy#no-such-section") is None


# --- The tools ----------------------------------------------------------------------------------------------


@pytest.fixture
async def ctx(tmp_path: Path) -> AsyncIterator[ToolContext]:
    store = BusinessStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'business.db'}")
    yield ToolContext(
        tenant_id="acme",
        caller="test",
        run_id="run-1",
        agent="support_drafting",
        idempotency_key="k",
        store=store,
    )
    await store.engine.dispose()


async def _run(name: str, args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    tool = get_tool(name)
    assert tool is not None
    return await tool.run(args, ctx)


async def test_search_policies_tool(ctx: ToolContext) -> None:
    found = await _run("search_policies", {"query": "my chair arrived damaged", "k": 2}, ctx)
    assert 1 <= len(found["results"]) <= 2 and found["note"] == ""
    first = found["results"][0]
    assert set(first) == {"id", "doc", "title", "section", "text", "score"}
    assert first["id"] == "refund-policy#damaged-items" and first["score"] >= MIN_SCORE
    nothing = await _run("search_policies", {"query": "quantum chromodynamics lattice"}, ctx)
    assert nothing["results"] == [] and "escalate to a person" in nothing["note"]
    with pytest.raises(ValueError, match="k"):
        await _run("search_policies", {"query": "refund", "k": 0}, ctx)


async def test_get_policy_passage_tool(ctx: ToolContext) -> None:
    found = await _run("get_policy_passage", {"passage_id": "warranty-policy#standard-warranty"}, ctx)
    passage = get_passage("warranty-policy#standard-warranty")
    assert passage is not None and found == {"found": True, **passage.model_dump()}
    missing = await _run("get_policy_passage", {"passage_id": "warranty-policy#forever"}, ctx)
    assert missing == {"found": False, "passage_id": "warranty-policy#forever"}


def test_tools_are_reads_in_the_knowledge_scope_and_the_demo_policy_allows_them() -> None:
    settings = Settings()
    policy = load_policy(settings.policy_path, settings.known_roles())
    for name in ("search_policies", "get_policy_passage"):
        tool = get_tool(name)
        assert tool is not None and (tool.scope, tool.kind) == ("knowledge:read", "read")
        assert "passage" in tool.description
        verdict = policy.evaluate(
            tool=name, kind="read", args={}, agent="support_drafting", tenant="acme", caller="test"
        )
        assert verdict.outcome == "allow"
