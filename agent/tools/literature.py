"""Literature (PubMed, arXiv, Wikipedia, web): what the papers report, cited by paper.

The query leaves the machine only after the identifiers of every image of the thread were
removed from it (``tools.privacy.redact`` inside ``search_literature``).
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, ClassVar

from agent.tools.base import AnswerContext, Tool, quote
from agent.tools.toolbox import normalise
from litevlm.types import Fact, Source
from tools.literature.base import LiteratureResult


class Literature(Tool):
    name = "literature"
    call_name = "search_literature"
    description = "Search PubMed, arXiv, Wikipedia and the web for what is known."
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"query": {"type": "string", "description": "medical terms, no identifiers"}},
        "required": ["query"],
    }
    per_image = False
    output_type = LiteratureResult

    def prepare(self, args: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {
            "query": str(args["query"])[:200],
            "sources": args.get("sources", ctx.literature_sources),
            "max_results": args.get("max_results", ctx.literature_max),
        }

    def key(self, image: str | None, args: dict[str, Any], ctx: Any) -> str:
        srcs = ",".join(sorted(args.get("sources") or []))
        return f"literature|{normalise(args['query'])}|{srcs}|{args.get('max_results')}"

    def from_call(self, args: dict[str, Any], image: str | None, question: str, ctx: Any):
        return self.item(None, {"query": str(args.get("query") or question)}, ctx)

    def run(self, payload: Any, ctx: Any) -> tuple[LiteratureResult, list[str]]:
        args, tb = payload["item"]["args"], ctx.toolbox
        # Identifiers of the thread's images are removed from the query before it leaves.
        identifiers: dict[str, str] = {}
        for img in payload.get("thread_images") or []:
            with contextlib.suppress(Exception):
                identifiers.update(tb.load(img["path"]).identifiers)
        res = tb.literature(
            args["query"],
            sources=args.get("sources"),
            max_results=int(args.get("max_results") or 3),
            identifiers=identifiers or None,
        )
        return res, [f"literature {k}: {v}" for k, v in res.unavailable.items()]

    def facts(self, output: LiteratureResult, actx: AnswerContext) -> list[Fact]:
        return [
            Fact(
                name="paper",
                label=s.kind,
                value=s.id,
                provenance=s.kind,
                text=quote(s.title or s.id),
            )
            for s in output.sources
        ]

    def sources(self, record: Any, actx: AnswerContext) -> list[Source]:
        out = self.read(record)
        if out is None:
            return []
        return [s.model_copy(update={"n": None}) for s in out.sources]

    def sentences(self, record: Any, numbers: list[int], actx: AnswerContext) -> list[str]:
        out = self.read(record)
        if out is None:
            return []
        lines = []
        for s, n in zip(out.sources, numbers, strict=False):
            quote_ = evidence(actx.question or out.query, s)
            if not quote_:
                continue  # a paper that says nothing about the question is left out
            who = (s.authors[0] + (" et al." if len(s.authors) > 1 else "")) if s.authors else ""
            who = f"{who} ({s.year})" if who and s.year else who or f"The {s.kind} source"
            lines.append(f'{who} report: "{quote(quote_)}" [{n}].')
        if out.sources and not lines:
            lines.append(
                f"Note: the literature search for “{out.query}” found {len(out.sources)} "
                "paper(s), none of whose abstracts addresses the question."
            )
        return lines

    def summary(self, output: LiteratureResult) -> dict[str, Any]:
        return {"papers": [s.title for s in output.sources], "unavailable": output.unavailable}

    def label(self, record: Any) -> str:
        return "literature"


TOOL = Literature()


_STOP = set(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "can",
        "do",
        "does",
        "for",
        "from",
        "has",
        "have",
        "how",
        "in",
        "is",
        "it",
        "its",
        "known",
        "of",
        "on",
        "or",
        "that",
        "the",
        "their",
        "there",
        "these",
        "this",
        "to",
        "was",
        "were",
        "what",
        "which",
        "who",
        "why",
        "with",
        "about",
        "literature",
        "papers",
        "paper",
        "studies",
        "study",
        "say",
        "says",
        "tell",
        "me",
        "find",
        "search",
        "evidence",
        "research",
    ]
)


def _terms(text: str) -> set[str]:
    # A crude stem (first 6 letters) so that "prioritisation" meets "prioritising".
    return {w[:6] for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOP and len(w) > 2}


def evidence(question: str, source: Source) -> str:
    """The abstract sentence most relevant to the question ("" when none shares two terms)."""
    from agent.citations import split_sentences

    wanted = _terms(question)
    best, best_score = "", 0
    for sent in split_sentences(" ".join(source.snippet.split())):
        score = len(wanted & _terms(sent))
        if score > best_score:
            best, best_score = sent, score
    return best if best_score >= min(2, len(wanted)) else ""
