"""The image header as a source: modality, acquisition, geometry, microscopy facts.

Cheap (the header is already read), so the rules run it for any question about an image's
acquisition or geometry and for descriptions. Cited as ``(image header)``; identifiers are
never among its facts (``tools.header_facts`` reads an allow-list only).
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, Field

from agent.tools.base import AnswerContext, Tool, cap, pick
from litevlm.types import Fact, Source


class HeaderOutput(BaseModel):
    modality: str = "unknown"
    format: str = ""
    facts: list[Fact] = Field(default_factory=list)


class Header(Tool):
    name = "header"
    call_name = "image_header"
    description = (
        "Read an image's de-identified header: modality, body part, acquisition (kVp, mAs, "
        "slice thickness, TR/TE, field strength), geometry (pixel spacing, voxel size, field "
        "of view, frames, slices), microscopy (pixel size, objective, channels, bit depth)."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"image": {"type": "string", "description": "image name"}},
    }
    output_type = HeaderOutput

    def key(self, image: str | None, args: dict[str, Any], ctx: Any) -> str:
        return f"header|{image}"

    def run(self, payload: Any, ctx: Any) -> tuple[HeaderOutput, list[str]]:
        rec = payload["image"]
        loaded = ctx.toolbox.load(rec["path"])
        facts = ctx.toolbox.header(loaded)
        fmt = str(loaded.metadata.get("format", ""))
        return HeaderOutput(modality=loaded.modality, format=fmt, facts=facts), []

    def facts(self, output: HeaderOutput, actx: AnswerContext) -> list[Fact]:
        return list(output.facts)

    def sources(self, record: Any, actx: AnswerContext) -> list[Source]:
        out = self.read(record)
        if out is None:
            return []
        where = f" of {actx.image_name}" if actx.image_name else ""
        facts = self.facts(out, actx)
        return [
            Source(
                kind="header",
                id=record["key"],
                title=f"Image header{where}",
                snippet="; ".join(f.text for f in facts),
                facts=facts,
            )
        ]

    def sentences(self, record: Any, numbers: list[int], actx: AnswerContext) -> list[str]:
        out = self.read(record)
        if out is None or not numbers:
            return []
        facts = self.facts(out, actx)
        n = numbers[0]
        chosen = pick(facts, actx.asked)
        if chosen:
            return [cap(f"{actx.prefix}the image header gives " + _join(chosen) + f" [{n}].")]
        if actx.describe:
            return [describe_line(facts, n, actx)]
        return []

    def summary(self, output: HeaderOutput) -> dict[str, Any]:
        return {"facts": [f.text for f in output.facts]}


def _join(facts: list[Fact]) -> str:
    texts = [f.text for f in facts]
    return texts[0] if len(texts) == 1 else "; ".join(texts[:-1]) + " and " + texts[-1]


_WHAT = ("modality", "body_part", "stain")
_GEOMETRY = (
    "matrix", "pixel_spacing", "field_of_view", "voxel_size", "slices", "pixel_size", "channels",
    "bit_depth",
)  # fmt: skip
_ACQ = (
    "kvp", "exposure", "tube_current", "slice_thickness", "repetition_time", "echo_time",
    "field_strength", "scanning_sequence", "view_position",
)  # fmt: skip


def describe_line(facts: list[Fact], n: int, actx: AnswerContext) -> str:
    """What the image is, as a radiologist's or microscopist's first line."""
    by = {f.name: f for f in facts}
    what = f"a {by['format'].value.upper()} image" if "format" in by else "an image"
    if "modality" in by:
        kind = by["modality"].text
        what = kind if kind == "photograph" else f"{kind} image"
        what = ("an " if what[0] in "aeiou" else "a ") + what
    if "body_part" in by:
        what += f" of the {by['body_part'].value}"
    if "stain" in by:
        what += f", {by['stain'].value}"
    parts = [f.text for name in _ACQ if (f := by.get(name))]
    geom = [f.text for name in _GEOMETRY if (f := by.get(name))]
    line = f"{actx.prefix}this is {what}"
    if geom:
        line += "; " + ", ".join(geom)
    if parts:
        line += "; acquired with " + ", ".join(parts)
    return cap(line + f" [{n}].")


TOOL = Header()
