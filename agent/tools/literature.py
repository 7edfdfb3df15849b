"""Literature (PubMed, arXiv, Wikipedia, web): what the papers report, cited by paper.

The query leaves the machine only after the identifiers of every image of the thread were
removed from it (``tools.privacy.redact`` inside ``search_literature``).
"""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar

from pydantic import Field

from agent.tools.base import AnswerContext, Tool, quote
from agent.tools.toolbox import normalise
from litevlm.types import Fact, Source
from tools.literature.base import LiteratureResult
from tools.literature.evidence import Evidence
from tools.literature.evidence import quote as evidence_quote


class LiteratureOutput(LiteratureResult):
    """The search result and, per paper, the abstract sentence that bears on the question."""

    question: str = ""
    evidence: list[Evidence] = Field(default_factory=list)


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
    output_type = LiteratureOutput

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

    def run(self, payload: Any, ctx: Any) -> tuple[LiteratureOutput, list[str]]:
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
        # Ranked here, on this machine, against the question without the identifiers (which
        # are not what the papers are about).
        from tools.privacy import redact

        question = redact(payload.get("question") or args["query"], identifiers)[0]
        found = tb.evidence.rank(question, res.sources) if res.sources else []
        # A paper whose abstract gives no evidence may still be on the question by its title
        # (an abstract can be missing, or be text that is not an abstract at all).
        rest = [s.model_copy(update={"snippet": ""}) for s in res.sources]
        rest = [s for s in rest if s.id not in {e.source_id for e in found}]
        found += tb.evidence.rank(question, rest) if rest else []
        out = LiteratureOutput(**res.model_dump(), question=question, evidence=found)
        return out, [f"literature {k}: {v}" for k, v in res.unavailable.items()]

    def facts(self, output: LiteratureOutput, actx: AnswerContext) -> list[Fact]:
        kinds = {s.id: s.kind for s in output.sources}
        return [
            Fact(
                name="evidence",
                label=f"what the paper's {ev.part} says",
                value=ev.source_id,
                provenance=kinds.get(ev.source_id, "literature"),
                text=quote(ev.sentence),
            )
            for ev in output.evidence
        ]

    def sources(self, record: Any, actx: AnswerContext) -> list[Source]:
        out = self.read(record)
        if out is None:
            return []
        facts = self.facts(out, actx)
        return [
            s.model_copy(update={"n": None, "facts": [f for f in facts if f.value == s.id]})
            for s in out.sources
        ]

    def sentences(self, record: Any, numbers: list[int], actx: AnswerContext) -> list[str]:
        out = self.read(record)
        if out is None:
            return []
        number = {s.id: n for s, n in zip(out.sources, numbers, strict=False)}
        by_id = {s.id: s for s in out.sources}
        lines = []
        # Papers whose abstract says nothing about the question have no evidence: left out.
        for ev in out.evidence:
            src, n = by_id.get(ev.source_id), number.get(ev.source_id)
            if src is None or n is None:
                continue
            # Quoted verbatim, its own double quotes made single: the quote stays one sentence.
            clean = ev.model_copy(update={"sentence": quote(ev.sentence)})
            lines.append(f"{evidence_quote(clean, src)} [{n}].")
        if out.sources and not lines:
            lines.append(
                f"Note: the literature search for “{out.query}” found {len(out.sources)} "
                "paper(s), none of whose abstracts addresses the question."
            )
        return lines

    def summary(self, output: LiteratureOutput) -> dict[str, Any]:
        return {"papers": [s.title for s in output.sources], "unavailable": output.unavailable}

    def label(self, record: Any) -> str:
        return "literature"


TOOL = Literature()
