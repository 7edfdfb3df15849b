"""Similar annotated cases from the retrieval index (LanceDB / Weaviate)."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field

from agent.tools.base import AnswerContext, Tool, cap, quote
from litevlm.types import Fact, SimilarCase, Source
from tools.retrieval.tiles import tile_where


class SimilarOutput(BaseModel):
    cases: list[SimilarCase] = Field(default_factory=list)


class Similar(Tool):
    name = "similar"
    call_name = "similar_cases"
    description = "Find annotated cases that look like an image."
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "image": {"type": "string", "description": "image name"},
            "k": {"type": "integer", "description": "how many cases"},
        },
    }
    output_type = SimilarOutput

    def key(self, image: str | None, args: dict[str, Any], ctx: Any) -> str:
        return f"similar|{image}|{args.get('k')}"

    def from_call(self, args: dict[str, Any], image: str | None, question: str, ctx: Any):
        k = int(args.get("k") or ctx.similar_k or 3)
        return self.item(image, {"k": max(1, min(k, 50))}, ctx)

    def run(self, payload: Any, ctx: Any) -> tuple[SimilarOutput, list[str]]:
        rec, args = payload["image"], payload["item"]["args"]
        tb = ctx.toolbox
        text = (rec or {}).get("metadata", {}).get("caption")
        cases = tb.similar(tb.load(rec["path"]), text, int(args.get("k") or 3))
        return SimilarOutput(cases=cases), []

    def facts(self, output: SimilarOutput, actx: AnswerContext) -> list[Fact]:
        return [
            Fact(
                name="similar_case",
                label="similar case",
                value=c.id,
                provenance="retrieval index",
                text=f"case {c.id} (similarity {c.score:.2f}): {quote(_what(c))}",
            )
            for c in output.cases
        ]

    def sources(self, record: Any, actx: AnswerContext) -> list[Source]:
        out = self.read(record)
        if out is None:
            return []
        facts = self.facts(out, actx)
        return [
            Source(
                kind="case",
                id=str(c.id),
                title=_what(c),
                snippet=f"similarity {c.score:.3f}"
                + (f" ({c.embedder})" if c.embedder else "")
                + "; "
                + ", ".join(f"{k}: {v}" for k, v in (c.metadata or {}).items() if v)[:300],
                url=c.image_uri if str(c.image_uri or "").startswith("http") else None,
                facts=[f],
            )
            for c, f in zip(out.cases, facts, strict=True)
        ]

    def sentences(self, record: Any, numbers: list[int], actx: AnswerContext) -> list[str]:
        out = self.read(record)
        if out is None:
            return []
        return [
            cap(
                f"{actx.prefix}a similar annotated case is {c.id} (similarity {c.score:.2f}): "
                f'"{quote(_what(c))}" [{n}].'
            )
            for c, n in zip(out.cases, numbers, strict=False)
        ]

    def summary(self, output: SimilarOutput) -> dict[str, Any]:
        return {"cases": [c.id for c in output.cases]}


def _what(c: SimilarCase) -> str:
    where = tile_where(c.metadata or {})
    if where:
        return f"{where}: {c.caption}" if c.caption else where
    return c.caption or str(c.id)


TOOL = Similar()
