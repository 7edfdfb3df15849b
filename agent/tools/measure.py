"""Measurement (scikit-image): counts, DAB scores, sizes, densities, focus, stored values.

Its facts carry physical units whenever a pixel size is known: from the header (the
measurement used it), or stated by the user (question or ``--pixel-size``), in which case the
pixel-based values are converted here, exactly (segmentation does not depend on the pixel
size), so a follow-up that gives the pixel size reuses the measurement.
"""

from __future__ import annotations

from typing import Any, ClassVar

from agent.tools.base import AnswerContext, PixelSize, Tool, cap, num, pick
from litevlm.types import Fact, Measurement, Source

PROV = "measurement"
COUNTING_KINDS = {"cells", "nuclei", "ihc", "he"}
BLUR_LIMIT = 0.6  # tools.measure warns above this blur effect
# Shown when a description or an open question asks for no fact in particular.
DEFAULT_FACTS = (
    "count", "positive", "h_score", "area", "density", "confluence", "tissue_fraction",
    "eosin_fraction", "mean_intensity", "body_area", "focus", "tiles", "dense_tile_1",
)  # fmt: skip


class MeasureTool(Tool):
    name = "measure"
    call_name = "measure"
    description = (
        "Count and measure cells or nuclei, DAB positivity and H-score, sizes, densities, "
        "stained area, focus and intensities in an image (scikit-image); returns typed facts "
        "and an overlay."
    )
    parameters: ClassVar[dict[str, Any]] = {
        "type": "object",
        "properties": {"image": {"type": "string", "description": "image name"}},
    }
    output_type = Measurement

    def prepare(self, args: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return {**args, "region": ctx.region} if ctx.region else dict(args)

    def key(self, image: str | None, args: dict[str, Any], ctx: Any) -> str:
        key = f"measure|{image}|{ctx.toolbox.settings.measure.backend}"
        return key + (f"|region {args['region']}" if args.get("region") else "")

    def run(self, payload: Any, ctx: Any) -> tuple[Measurement, list[str]]:
        rec, region = payload["image"], payload["item"]["args"].get("region")
        tb = ctx.toolbox
        name = rec["id"] + (f"_{region.replace(',', '_').replace('@', 'L')}" if region else "")
        overlay = tb.settings.data_dir / "overlays" / f"{name}.png"
        return tb.measure(tb.load(rec["path"]), overlay_path=overlay, region=region), []

    def dump(self, output: Measurement) -> dict[str, Any]:
        # The per-object table stays out of the thread state: it can be thousands of rows.
        return output.model_dump(mode="json", exclude={"objects"})

    # -- facts ------------------------------------------------------------------------------
    def facts(self, output: Measurement, actx: AnswerContext) -> list[Fact]:
        scale = Scale.of(output, actx)
        if output.kind == "radiology":
            return _radiology_facts(output)
        facts = _object_facts(output, scale, actx) + _slide_facts(output)
        if output.kind in KIND_NAMES:
            reason = str(output.params.get("kind_reason") or "")
            text = f"measured as {KIND_NAMES[output.kind]}" + (f" ({reason})" if reason else "")
            facts.insert(0, _f("image_kind", "what was measured", output.kind, "", text))
        elif output.params.get("counting_applies") is False:
            from tools.measure.field import not_applies

            reason = str(output.params.get("kind_reason") or "")
            facts.insert(0, _f("image_kind", "what was measured", output.kind, "",
                               not_applies(output.kind, reason)))  # fmt: skip
        if scale.um:
            facts.append(_f("pixel_size_used", "pixel size used", scale.um, "um", scale.note))
        stored = output.pixel_size_um if output.units == "um" else None
        if stored and scale.um and abs(stored - scale.um) > 0.02 * stored:
            facts.append(
                _f("pixel_size_header", f"pixel size from the {_source_name(scale.stored_source)}",
                   stored, "um", f"the {_source_name(scale.stored_source)} gives {num(stored)} um")
            )  # fmt: skip
        return facts

    def sources(self, record: Any, actx: AnswerContext) -> list[Source]:
        out = self.read(record)
        if out is None:
            return []
        where = f" of {actx.image_name}" if actx.image_name else ""
        facts = self.facts(out, actx)
        unit = Scale.of(out, actx).unit if out.kind != "radiology" else out.units
        return [
            Source(
                kind="measurement",
                id=record["key"],
                title=f"Measurement ({out.kind}, {unit}){where}",
                snippet="; ".join(f.text for f in facts),
                facts=facts,
            )
        ]

    def sentences(self, record: Any, numbers: list[int], actx: AnswerContext) -> list[str]:
        out = self.read(record)
        if out is None or not numbers:
            return []
        if out.kind == "radiology" and actx.describe:
            return []  # a radiology image is described by its header, not its pixel statistics
        n = numbers[0]
        facts = self.facts(out, actx)
        scale = Scale.of(out, actx)
        chosen = pick(facts, actx.asked)
        lines: list[str] = []
        counting = out.kind in COUNTING_KINDS
        if not counting and out.kind != "radiology" and any(a in COUNTED for a in actx.asked):
            why = next((w for w in out.warnings if "apply" in w), f"measured as {out.kind}")
            lines.append(
                cap(f"{actx.prefix}counting cells does not apply to this image ({why}) [{n}].")
            )
        open_question = actx.describe or not actx.asked
        if not chosen and not lines:
            missing = _missing_reason(actx.asked, out, scale) if actx.asked else ""
            if missing:
                lines.append(cap(f"{actx.prefix}{missing} [{n}]."))
            if open_question or not missing:
                chosen = pick(facts, list(DEFAULT_FACTS))
        if counting and out.count == 0 and open_question:
            lines.append(
                cap(
                    f"{actx.prefix}the measurement found no cells or nuclei; counting may not "
                    f"apply to this image [{n}]."
                )
            )
            chosen, out_warnings = [], []
        else:
            out_warnings = out.warnings
        if chosen:
            lead = actx.prefix
            kind = pick(facts, ["image_kind"])
            if actx.describe and kind:
                lead += kind[0].text + ": "
            lines.append(cap(lead + "; ".join(f.text for f in chosen) + f" [{n}]."))
        if scale.note and (
            actx.describe or any(f.unit.startswith(("um", "per mm")) for f in chosen)
        ):
            lines.append(cap(scale.note) + f" [{n}].")
        elif scale.unit == "px" and any(a in SIZED for a in actx.asked):
            lines.append(
                "Sizes are in pixels because the pixel size is unknown; state it in the "
                f"question (e.g. 'the pixel size is 0.5 um') or pass --pixel-size [{n}]."
            )
        if open_question:
            warnings = out_warnings[:2]
        elif any(a in COUNTED for a in actx.asked):
            warnings = [w for w in out_warnings if "border" in w or "no objects" in w][:1]
        else:
            warnings = []
        for w in warnings:
            lines.append(f"The measurement warns: {w.rstrip('.')} [{n}].")
        return lines

    def figures(self, output: Measurement) -> dict[str, str]:
        return {"overlay": str(output.overlay_path)} if output.overlay_path else {}

    def summary(self, output: Measurement) -> dict[str, Any]:
        facts = self.facts(output, AnswerContext())
        return {
            "summary": "; ".join(f.text for f in pick(facts, list(DEFAULT_FACTS))[:6]),
            "overlay": str(output.overlay_path) if output.overlay_path else None,
        }


DAB_FACTS = {"positive", "h_score", "intensity_bins_1", "intensity_bins_2", "intensity_bins_3"}
COUNTED = {"count", "density", "positive_nuclei", *DAB_FACTS}
KIND_NAMES = {
    "ihc": "immunohistochemistry (haematoxylin and DAB)",
    "he": "H&E-stained tissue",
    "cells": "a cell image",
    "nuclei": "a nuclear stain",
}
SIZED = {"area", "diameter", "density"}


class Scale:
    """Which pixel size the facts use, from where, and the factor from stored values."""

    def __init__(
        self, um: float | None, factor: float, source: str, note: str, stored_source: str = ""
    ) -> None:
        self.um, self.factor, self.source, self.note = um, factor, source, note
        self.stored_source = stored_source

    @property
    def unit(self) -> str:
        return "um" if self.um else "px"

    @classmethod
    def of(cls, out: Measurement, actx: AnswerContext) -> Scale:
        stored = out.pixel_size_um if out.units == "um" else None
        where = _source_name(str(out.params.get("pixel_size_source", "")))
        given: PixelSize | None = actx.pixel
        if given is None or out.kind == "radiology":
            if stored:
                note = f"sizes use a pixel size of {num(stored)} um from the {where}"
                return cls(stored, 1.0, where, note)
            return cls(None, 1.0, "unknown", "")
        note = f"sizes use a pixel size of {num(given.um)} um {given.source}"
        if stored and abs(stored - given.um) > 0.02 * stored:
            note += f"; the {where} gives {num(stored)} um, which was not used"
        elif stored:
            note += f" (the {where} agrees)"
        raw_source = str(out.params.get("pixel_size_source", ""))
        return cls(given.um, given.um / (stored or 1.0), given.source, note, raw_source)


def _source_name(src: str) -> str:
    if src.startswith("metadata"):
        return "image header"
    if src.startswith("settings"):
        return "settings ([measure] pixel_size_um)"
    return src or "measurement"


def _u(unit: str) -> str:
    return {"um^2": "µm²", "px^2": "px²", "um": "µm", "per mm^2": "per mm²"}.get(unit, unit)


def _f(name: str, label: str, value: Any, unit: str, text: str) -> Fact:
    return Fact(name=name, label=label, value=value, unit=unit, provenance=PROV, text=text)


def _stat(summary: dict[str, Any], key: str) -> dict[str, Any] | None:
    v = summary.get(key)
    return v if isinstance(v, dict) and isinstance(v.get("mean"), int | float) else None


def _slide_facts(out: Measurement) -> list[Fact]:
    """A whole-slide measurement: how many tiles, and where the densest ones are (level-0 px)."""
    if not out.params.get("slide"):
        return []
    n = int(out.summary.get("tiles_measured") or 0)
    facts = [_f("tiles", "tiles measured", n, "", f"measured on {n} tissue tiles of the slide")]
    for i, t in enumerate(out.params.get("dense_tiles") or [], 1):
        if t.get("density_per_mm2"):
            facts.append(
                _f(f"dense_tile_{i}", "dense tile", t["density_per_mm2"], "per mm^2",
                   f"a dense tile at x={t['x']}, y={t['y']} ({t['w']} x {t['h']} px, level 0): "
                   f"{t['count']} nuclei, {num(t['density_per_mm2'])} per mm²")
            )  # fmt: skip
    return facts


def _object_facts(out: Measurement, scale: Scale, actx: AnswerContext) -> list[Fact]:
    s, facts = out.summary, []
    n = out.count if out.count is not None else s.get("count")
    noun = {"ihc": "nuclei", "he": "nuclei", "nuclei": "nuclei"}.get(out.kind, "cells")
    if out.kind in COUNTING_KINDS and isinstance(n, int):
        text = f"{n} {noun}" if n else f"no {noun} detected"
        if n == 1:
            text = f"1 {noun.rstrip('s').replace('nucle', 'nucleus')}"
        facts.append(_f("count", f"number of {noun}", n, "", text))
    if out.kind == "ihc" and n:
        frac = float(s.get("dab_positive_fraction_of_cells", 0.0))
        k = round(frac * n)
        facts.append(
            _f("positive", "DAB-positive cells", k, "",
               f"{k} ({frac * 100:.0f}%) are DAB-positive")
        )  # fmt: skip
        bins = s.get("cells_by_intensity_pct") or {}
        b = ", ".join(f"{g} {_pct(float(bins.get(g, 0)))}%" for g in ("1+", "2+", "3+"))
        if "h_score" in s:
            facts.append(
                _f("h_score", "H-score", float(s["h_score"]), "",
                   f"H-score {float(s['h_score']):.0f} of 300 ({b})")
            )  # fmt: skip
        for g, word in (("3+", "strongly"), ("2+", "moderately"), ("1+", "weakly")):
            if g in bins:
                pct = float(bins[g])
                facts.append(
                    _f("intensity_bins_" + g[0], f"{word} stained ({g}) cells", pct, "%",
                       f"{pct:.1f}% of cells are {word} DAB-positive ({g}), about "
                       f"{round(pct / 100 * n)} of {n}")
                )  # fmt: skip
        if "dab_positive_fraction_of_nuclei" in s:
            v = float(s["dab_positive_fraction_of_nuclei"]) * 100
            facts.append(
                _f("positive_nuclei", "DAB-positive nuclei", v, "%",
                   f"{v:.0f}% of nuclei are DAB-positive within the nucleus")
            )  # fmt: skip
        if "dab_positive_fraction_of_tissue_area" in s:
            v = float(s["dab_positive_fraction_of_tissue_area"]) * 100
            facts.append(
                _f("positive_area", "DAB-positive tissue area", v, "%",
                   f"DAB-positive area {v:.0f}% of the tissue")
            )  # fmt: skip
        if "mean_dab_od_tissue" in s:
            v = float(s["mean_dab_od_tissue"])
            facts.append(
                _f("mean_dab", "mean DAB optical density", v, "OD",
                   f"mean DAB optical density {num(v)} in tissue")
            )  # fmt: skip
    # Sizes: convert stored values by the pixel size factor.
    area_key = "nuclear_area" if out.kind in {"ihc", "he"} else "area"
    area = _stat(s, area_key)
    unit2 = "um^2" if scale.um else "px^2"
    if area and area.get("n"):
        k2 = scale.factor**2
        what = "nuclear area" if area_key == "nuclear_area" else "area"
        facts.append(
            _f("area", f"mean {what}", area["mean"] * k2, unit2,
               f"mean {what} {num(area['mean'] * k2)} {_u(unit2)} (SD {num(area['std'] * k2)}, "
               f"median {num(area['median'] * k2)})")
        )  # fmt: skip
    diam = _stat(s, "equivalent_diameter")
    if diam and diam.get("n"):
        k1, unit1 = scale.factor, ("um" if scale.um else "px")
        facts.append(
            _f("diameter", "mean equivalent diameter", diam["mean"] * k1, unit1,
               f"mean equivalent diameter {num(diam['mean'] * k1)} {_u(unit1)}")
        )  # fmt: skip
    circ = _stat(s, "circularity")
    if circ and circ.get("n"):
        facts.append(
            _f("circularity", "mean circularity", circ["mean"], "",
               f"mean circularity {num(circ['mean'])} (1 = a perfect circle)")
        )  # fmt: skip
    density = _density(out, scale, actx)
    if density is not None:
        where = " of tissue" if out.kind in {"ihc", "he"} else ""
        facts.append(
            _f("density", "density", density, "per mm^2",
               f"density {num(density)} {noun} per mm²{where}")
        )  # fmt: skip
    if "confluence" in s and out.kind in {"cells", "nuclei"}:
        v = float(s["confluence"]) * 100
        facts.append(_f("confluence", "confluence", v, "%", f"confluence {v:.0f}% of the field"))
    if "tissue_fraction" in s:
        v = float(s["tissue_fraction"]) * 100
        facts.append(
            _f("tissue_fraction", "tissue fraction", v, "%", f"tissue covers {v:.0f}% of the image")
        )  # fmt: skip
    if "eosin_fraction_of_tissue" in s:
        v = float(s["eosin_fraction_of_tissue"]) * 100
        facts.append(
            _f("eosin_fraction", "eosin-stained fraction", v, "%",
               f"eosin stains {v:.0f}% of the tissue")
        )  # fmt: skip
    mi = _stat(s, "mean_intensity")
    if mi and mi.get("n"):
        facts.append(
            _f("mean_intensity", "mean object intensity", mi["mean"], "",
               f"mean object intensity {num(mi['mean'])} (stored units)")
        )  # fmt: skip
    focus = s.get("focus")
    if isinstance(focus, dict) and "blur_effect" in focus:
        blur = float(focus["blur_effect"])
        sharp = blur <= BLUR_LIMIT
        verdict = "in focus" if sharp else "blurred (out of focus)"
        facts.append(
            _f("focus", "focus", sharp, "",
               f"the image looks {verdict}: blur effect {blur:.2f} on a 0-1 scale "
               f"(above {BLUR_LIMIT} reads as blurred), Laplacian variance "
               f"{num(float(focus.get('laplacian_variance', 0)))}")
        )  # fmt: skip
    return facts


def _pct(p: float) -> str:
    return f"{p:.1f}" if 0 < p < 1 else f"{p:.0f}"


def _image_pixels(actx: AnswerContext) -> int | None:
    meta = (actx.image or {}).get("metadata") or {}
    w = meta.get("width") or meta.get("columns")
    h = meta.get("height") or meta.get("rows")
    return int(w) * int(h) if w and h else None


def _density(out: Measurement, scale: Scale, actx: AnswerContext) -> float | None:
    s = out.summary
    key = "nuclei_per_mm2_tissue" if out.kind in {"ihc", "he"} else "density_per_mm2"
    stored = s.get(key)
    if stored is not None and scale.factor == 1.0:
        return float(stored)
    if stored is not None:
        return float(stored) / scale.factor**2
    if not scale.um or not out.count:
        return None
    px = _image_pixels(actx)
    if not px:
        return None
    frac = float(s.get("tissue_fraction", 1.0)) if out.kind in {"ihc", "he"} else 1.0
    area_mm2 = px * frac * (scale.um / 1000) ** 2
    return out.count / area_mm2 if area_mm2 > 0 else None


def _missing_reason(asked: list[str], out: Measurement, scale: Scale) -> str:
    if "density" in asked and not scale.um:
        return (
            "a density per mm² needs the pixel size, which is unknown; state it in the question "
            "(e.g. 'the pixel size is 0.5 um') or pass --pixel-size"
        )
    if out.kind != "ihc" and out.kind in COUNTING_KINDS and any(a in DAB_FACTS for a in asked):
        return f"DAB scoring needs an IHC image; this one was measured as {out.kind}"
    return ""


def _radiology_facts(out: Measurement) -> list[Fact]:
    s, facts = out.summary, []
    units = str(s.get("units") or "")
    body = _stat(s, "body")
    unit = units or "stored units"
    if body:
        facts.append(
            _f("mean_intensity", "mean value in the body", body["mean"], units,
               f"mean value in the body {num(body['mean'])} {unit} (SD {num(body['std'])})")
        )  # fmt: skip
    if "body_area_cm2" in s:
        facts.append(
            _f("body_area", "body cross-section", float(s["body_area_cm2"]), "cm^2",
               f"body cross-section {num(float(s['body_area_cm2']))} cm²")
        )  # fmt: skip
    if "body_fraction" in s:
        v = float(s["body_fraction"]) * 100
        text = f"body fills {v:.0f}% of the image"
        facts.append(_f("body_fraction", "body fraction", v, "%", text))
    w = s.get("window")
    if isinstance(w, dict) and "center" in w and "width" in w:
        facts.append(
            _f("window", "display window", [float(w["center"]), float(w["width"])], units,
               f"display window centre {num(float(w['center']))} / width "
               f"{num(float(w['width']))} {units}".rstrip())
        )  # fmt: skip
    return facts


TOOL = MeasureTool()
