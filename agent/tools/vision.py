"""The vision-language model: its answer or description, cited as the model's observation.

Its text is never a count or a measurement: the answer marks it as what the model reports, and
puts measured facts beside it, each marked as measured.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from pydantic import Field

from agent.tools.base import AnswerContext, Tool, cap, num, quote
from agent.tools.toolbox import normalise
from litevlm.errors import LiteVLMError
from litevlm.types import Fact, Source, VisionResult
from tools.slides.tiles import TileChoice


class TileObservation(TileChoice):
    """What the model said about one tile of a slide, with where the tile is."""

    text: str = ""


class VisionOutput(VisionResult):
    heatmap_path: str | None = None
    heatmap_error: str | None = None
    tiles: list[TileObservation] = Field(
        default_factory=list, description="a whole-slide image: one observation per tile seen"
    )
    region: str | None = None


def vision_label(out: VisionResult) -> str:
    return f"{out.model_id or 'vision model'} ({out.adapter or 'no adapter'})"


class Vision(Tool):
    name = "vision"
    call_name = "vision"
    description = (
        "Ask the vision-language model about an image. Without a question it describes the "
        "image. Its text is an observation, not a measurement."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {
            "image": {"type": "string", "description": "image name; default: latest"},
            "question": {"type": "string", "description": "question; omit to describe"},
        },
    }
    output_type = VisionOutput

    def prepare(self, args: dict[str, Any], ctx: Any) -> dict[str, Any]:
        tb = ctx.toolbox
        out = {
            **args,
            "model": tb.vision_model_id(ctx.vision_model),
            "adapter": ctx.adapter or tb.settings.vision.adapter,
            "quantization": ctx.quantization or tb.settings.vision.quantization,
        }
        if ctx.heatmap:
            out["heatmap"] = True
        if ctx.region:
            out["region"] = ctx.region
        return out

    def key(self, image: str | None, args: dict[str, Any], ctx: Any) -> str:
        q = normalise(args.get("question") or "") or "describe"
        key = f"vision|{image}|{args['model']}|{args['adapter']}|{args['quantization']}|{q}"
        key += f"|region {args['region']}" if args.get("region") else ""
        return key + ("|heatmap" if args.get("heatmap") else "")

    def from_call(self, args: dict[str, Any], image: str | None, question: str, ctx: Any):
        return self.item(image, {"question": args.get("question")}, ctx)

    def run(self, payload: Any, ctx: Any) -> tuple[VisionOutput, list[str]]:
        item, rec = payload["item"], payload["image"]
        tb, args = ctx.toolbox, item["args"]
        loaded = tb.load(rec["path"])
        if "slide" in loaded.metadata and loaded.source_path:
            no_map = ["vision: no attention heat-map for a slide's tiles"]
            return _slide(tb, loaded, args), no_map if args.get("heatmap") else []
        res = tb.vision(
            loaded,
            args.get("question"),
            model=args.get("model"),
            adapter=args.get("adapter"),
            quantization=args.get("quantization"),
        )
        out = VisionOutput(**res.model_dump())
        warnings: list[str] = []
        if args.get("heatmap"):
            out.heatmap_path, out.heatmap_error = _heatmap(tb, loaded, rec, item)
            if out.heatmap_error:
                warnings.append(f"vision:{rec['name']}: {out.heatmap_error}")
        return out, warnings

    def facts(self, output: VisionOutput, actx: AnswerContext) -> list[Fact]:
        if output.tiles:
            return [f for t in output.tiles for f in _tile_facts(output, t)]
        return [
            Fact(
                name="observation",
                label="the vision model's observation",
                value=output.text,
                provenance=f"vision model {vision_label(output)}",
                text=quote(output.text),
            )
        ]

    def sources(self, record: Any, actx: AnswerContext) -> list[Source]:
        out = self.read(record)
        if out is None:
            return []
        q = record["args"].get("question")
        where = f" of {actx.image_name}" if actx.image_name else ""
        title = f"Vision model {vision_label(out)}: " + (f"answer to '{q}'" if q else "description")
        if out.tiles:
            return [
                Source(
                    kind="vision",
                    id=f"{record['key']}|tile {t.x},{t.y},{t.w},{t.h}",
                    title=f"{title} of the tile at {t.where()}{where}, {t.reason()}",
                    snippet=t.text,
                    facts=_tile_facts(out, t),
                )
                for t in out.tiles
            ]
        return [
            Source(
                kind="vision",
                id=record["key"],
                title=title + where,
                snippet=out.text,
                facts=self.facts(out, actx),
            )
        ]

    def sentences(self, record: Any, numbers: list[int], actx: AnswerContext) -> list[str]:
        out = self.read(record)
        if out is None or not numbers:
            return []
        if out.tiles:
            return _tile_sentences(out, record, numbers, actx)
        text = quote(out.text) or "(no text)"
        q = record["args"].get("question")
        verb = f"answers “{quote(q)}” with" if q else "describes the image as"
        line = f'{actx.prefix}the vision model {vision_label(out)} {verb} "{text}"'
        if actx.describe or actx.asked:
            line += " (the model's observation, not a measurement)"
        return [cap(line + f" [{numbers[0]}].")]

    def figures(self, output: VisionOutput) -> dict[str, str]:
        return {"attention": output.heatmap_path} if output.heatmap_path else {}

    def models(self, output: VisionOutput) -> dict[str, str]:
        return {"vision": output.model_id, "adapter": output.adapter or "none"}

    def summary(self, output: VisionOutput) -> dict[str, Any]:
        return {"text": output.text, "model": output.model_id}


def _heatmap(tb: Any, loaded: Any, rec: Any, item: Any) -> tuple[str | None, str | None]:
    """Where the vision model looked for this call; a failure is a warning, not an error."""
    args = item["args"]
    question = args.get("question") or "What is shown in this image?"
    digest = hashlib.sha256(item["key"].encode()).hexdigest()[:12]
    path = tb.settings.data_dir / "heatmaps" / f"{rec['id']}_{digest}.png"
    try:
        tb.heatmap(
            loaded,
            question,
            path,
            model=args.get("model"),
            adapter=args.get("adapter"),
            quantization=args.get("quantization"),
        )
    except Exception as e:
        return None, f"attention heat-map unavailable: {type(e).__name__}: {e}"
    return str(path), None


def _slide(tb: Any, loaded: Any, args: dict[str, Any]) -> VisionOutput:
    """A whole-slide image: the model looks at chosen tiles, not at the thumbnail."""
    region = args.get("region")
    tb.vision_backend(args.get("model"), args.get("quantization"))  # no model: fail before tiling
    choices, images = tb.slide_tiles(loaded, region)
    if not choices:
        raise LiteVLMError(
            f"{loaded.source_path}: no tissue tile to show the vision model"
            + (f" in region {region}" if region else ""),
            "give a --region that holds tissue",
        )
    results = tb.vision_batch(
        images, args.get("question"), model=args.get("model"), adapter=args.get("adapter"),
        quantization=args.get("quantization"),
    )  # fmt: skip
    pairs = zip(choices, results, strict=True)
    tiles = [TileObservation(**c.model_dump(), text=r.text) for c, r in pairs]
    first = results[0]
    return VisionOutput(
        text=" ".join(f"Tile at x={t.x}, y={t.y}: {t.text}" for t in tiles),
        model_id=first.model_id,
        adapter=first.adapter,
        prompt=first.prompt,
        tokens=sum(r.tokens for r in results),
        latency_s=max(r.latency_s for r in results),
        tokens_per_s=first.tokens_per_s,
        tiles=tiles,
        region=region,
    )


def _tile_facts(out: VisionOutput, t: TileObservation) -> list[Fact]:
    prov = f"vision model {vision_label(out)}"
    facts = [
        Fact(
            name="observation",
            label="the vision model's observation of a slide tile",
            value=t.text,
            provenance=prov,
            text=quote(t.text),
        ),
        Fact(
            name="tile",
            label="tile the model saw (level-0 x, y, w, h)",
            value=[float(t.x), float(t.y), float(t.w), float(t.h)],
            unit="px",
            provenance="tile choice",
            text=f"tile at {t.where()}, {t.reason()}",
        ),
    ]
    if t.mpp:
        facts.append(
            Fact(name="tile_mpp", label="resolution the model saw", value=round(t.mpp, 4),
                 unit="um", provenance="tile choice", text=f"{num(t.mpp)} um per pixel")
        )  # fmt: skip
    if t.density_per_mm2:
        facts.append(
            Fact(name="tile_density", label="nuclear density of the measured tile",
                 value=t.density_per_mm2, unit="per mm^2", provenance="measurement",
                 text=f"{num(t.density_per_mm2)} nuclei per mm² in the measured tile")
        )  # fmt: skip
    return facts


def _tile_sentences(
    out: VisionOutput, record: Any, numbers: list[int], actx: AnswerContext
) -> list[str]:
    q = record["args"].get("question")
    verb = f"answers “{quote(q)}” for" if q else "describes"
    lines = []
    for t, n in zip(out.tiles, numbers, strict=False):
        text = quote(t.text) or "(no text)"
        line = (
            f"{actx.prefix}the vision model {vision_label(out)} {verb} the tile at {t.where()} "
            f'({t.reason()}) as "{text}"'
        )
        if actx.describe or actx.asked:
            line += " (the model's observation, not a measurement)"
        lines.append(cap(line + f" [{n}]."))
    return lines


TOOL = Vision()
