"""Approved policy documents: BM25 search over their passages, and citations that resolve to them.

The documents are markdown files shipped with the package (``tools/knowledge/docs/<doc-id>.md``): a ``#``
title, then ``##`` sections. Each section is one passage, cited as ``[<doc-id>#<section-slug>]``, e.g.
``[refund-policy#damaged-items]``. The index is built once per process, on first use, with ``bm25s``.
"""

from __future__ import annotations

import asyncio
import re
import threading
from functools import cache
from importlib.resources import files
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tools.registry import ToolContext, business_tool

MIN_SCORE = 1.5
"""A passage scoring below this is not relevant. BM25 gives 0 to a passage sharing no word with the query; one
shared word that many passages use ("order", "refund") scores under 1, one distinctive shared word 1.5 to 3,
and a passage that answers a ticket 4 or more. Measured on the shipped documents: see tests/tools."""

_SEARCH_LOCK = threading.Lock()  # searches run in worker threads; the stemmer is not thread-safe
_CITATION = re.compile(r"\[([a-z0-9][a-z0-9-]*#[a-z0-9][a-z0-9-]*)\]")


class Passage(BaseModel):
    """One section of a policy document: what a reply cites."""

    model_config = ConfigDict(frozen=True)
    id: str = Field(description="Citation id, <doc-id>#<section-slug>, e.g. refund-policy#damaged-items")
    doc: str = Field(description="The document's id (its file stem), e.g. refund-policy")
    title: str = Field(description="The document's title, e.g. Refunds and returns")
    section: str = Field(description="The section's heading, e.g. Damaged items")
    text: str = Field(description="The section's text")


class Hit(BaseModel):
    """A passage found by a search, with its BM25 score (higher is more relevant)."""

    passage: Passage
    score: float


def slug(heading: str) -> str:
    """A heading as an id: lowercase words joined by hyphens (``Dead on arrival``, ``dead-on-arrival``)."""
    return "-".join(re.findall(r"[a-z0-9]+", heading.lower()))


def parse_document(doc: str, markdown: str) -> list[Passage]:
    """The passages of one markdown document: one per ``##`` section (text before the first is its overview).

    Raises ``ValueError`` for a document without a ``#`` title or with two sections of the same slug.
    """
    title = ""
    sections: list[tuple[str, list[str]]] = []
    for line in markdown.splitlines():
        if line.startswith("# ") and not title:
            title = line[2:].strip()
        elif line.startswith("## "):
            sections.append((line[3:].strip(), []))
        elif line.strip():
            if not sections:
                sections.append(("Overview", []))
            sections[-1][1].append(line.strip())
    if not title:
        raise ValueError(f"policy document {doc} has no '# ' title")
    out: list[Passage] = []
    for heading, lines in sections:
        pid = f"{doc}#{slug(heading)}"
        if any(p.id == pid for p in out):
            raise ValueError(f"policy document {doc} has two sections with the id {pid}")
        out.append(Passage(id=pid, doc=doc, title=title, section=heading, text=" ".join(lines)))
    return out


@cache
def passages() -> dict[str, Passage]:
    """Every passage of the packaged policy documents, by id (read once per process)."""
    docs = files(__name__).joinpath("docs")
    out: dict[str, Passage] = {}
    for entry in sorted(docs.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".md"):
            for p in parse_document(entry.name.removesuffix(".md"), entry.read_text(encoding="utf-8")):
                out[p.id] = p
    return out


@cache
def _stemmer() -> Any:
    import Stemmer  # PyStemmer (bm25s's ``stem`` extra): Snowball's English stemmer, "refunds" → "refund"

    return Stemmer.Stemmer("english")


def _tokens(texts: list[str]) -> list[list[str]]:
    """Lowercased, stemmed words without English stopwords: the same for passages and queries."""
    import bm25s  # imported on first search: numpy stays out of processes that never search

    tokens: list[list[str]] = bm25s.tokenize(
        texts, stopwords="en_plus", stemmer=_stemmer(), return_ids=False, show_progress=False
    )
    return tokens


@cache
def _index() -> tuple[Any, list[Passage]]:
    """The BM25 index over every passage (document title, heading and text), built once per process."""
    import bm25s

    corpus = list(passages().values())
    retriever = bm25s.BM25()
    retriever.index(_tokens([f"{p.title}. {p.section}. {p.text}" for p in corpus]), show_progress=False)
    return retriever, corpus


def search(query: str, k: int = 3, min_score: float = MIN_SCORE) -> list[Hit]:
    """The ``k`` passages most relevant to ``query``, best first; passages scoring under ``min_score`` are
    left out, so a query no policy covers finds nothing."""
    with _SEARCH_LOCK:
        retriever, corpus = _index()
        ids = retriever.get_tokens_ids([t for t in _tokens([query])[0] if t])
        if not ids or k < 1:
            return []
        scores = [float(s) for s in retriever.get_scores_from_ids(ids)]
    ranked = sorted(range(len(corpus)), key=lambda i: (-scores[i], corpus[i].id))
    return [
        Hit(passage=corpus[i], score=round(scores[i], 4))
        for i in ranked[:k]
        if scores[i] > 0 and scores[i] >= min_score
    ]


def get_passage(passage_id: str) -> Passage | None:
    """The passage with this id, if it exists."""
    return passages().get(passage_id)


def citation_ids(text: str) -> list[str]:
    """The ``[doc-id#section]`` markers in ``text``, in order of first appearance, without repeats."""
    return list(dict.fromkeys(_CITATION.findall(text)))


def resolve_citations(text: str) -> list[Passage]:
    """The passages that the ``[doc-id#section]`` markers in ``text`` cite, in order; unknown ids are left out
    (compare with ``citation_ids`` to find them)."""
    return [p for pid in citation_ids(text) if (p := get_passage(pid)) is not None]


# --- Tools -------------------------------------------------------------------------------------------------


class SearchPoliciesArgs(BaseModel):
    query: str = Field(
        description="What the customer needs, in a few words or sentences", min_length=1, max_length=2000
    )
    k: int = Field(default=3, description="How many passages to return at most", ge=1, le=10)


class GetPolicyPassageArgs(BaseModel):
    passage_id: str = Field(
        description="Passage id as cited, e.g. refund-policy#damaged-items", min_length=3, max_length=200
    )


@business_tool(scope="knowledge:read", kind="read")
async def search_policies(args: SearchPoliciesArgs, ctx: ToolContext) -> dict[str, Any]:
    """Search the approved policy documents (refunds and returns, shipping, warranty, order changes, payment,
    privacy, rewards, price adjustments, recalls, support) for passages relevant to a question.

    Returns up to k passages, best first, each with an id to cite in the reply as [id], e.g.
    [refund-policy#damaged-items]. Base every policy statement on a returned passage. An empty result means
    no approved policy covers the question: escalate to a person instead of guessing.
    """
    hits = await asyncio.to_thread(search, args.query, args.k)
    return {
        "results": [{**h.passage.model_dump(), "score": h.score} for h in hits],
        "note": "" if hits else "No approved policy covers this question; escalate to a person.",
    }


@business_tool(scope="knowledge:read", kind="read")
async def get_policy_passage(args: GetPolicyPassageArgs, ctx: ToolContext) -> dict[str, Any]:
    """Read one passage of the approved policy documents by the id it is cited with, e.g.
    refund-policy#damaged-items."""
    passage = await asyncio.to_thread(get_passage, args.passage_id)
    if passage is None:
        return {"found": False, "passage_id": args.passage_id}
    return {"found": True, **passage.model_dump()}
