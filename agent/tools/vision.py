"""The vision-language model: its answer or description, cited as the model's observation.

Its text is never a count or a measurement: the answer marks it as what the model reports, and
puts measured facts beside it, each marked as measured.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from agent.tools.base import AnswerContext, Tool, cap, quote
from agent.tools.toolbox import normalise
from litevlm.types import Fact, Source, VisionResult


class VisionOutput(VisionResult):
    heatmap_path: str | None = None
    heatmap_error: str | None = None


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
        return out

    def key(self, image: str | None, args: dict[str, Any], ctx: Any) -> str:
        q = normalise(args.get("question") or "") or "describe"
        key = f"vision|{image}|{args['model']}|{args['adapter']}|{args['quantization']}|{q}"
        return key + ("|heatmap" if args.get("heatmap") else "")

    def from_call(self, args: dict[str, Any], image: str | None, question: str, ctx: Any):
        return self.item(image, {"question": args.get("question")}, ctx)

    def run(self, payload: Any, ctx: Any) -> tuple[VisionOutput, list[str]]:
        item, rec = payload["item"], payload["image"]
        tb, args = ctx.toolbox, item["args"]
        loaded = tb.load(rec["path"])
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


TOOL = Vision()
