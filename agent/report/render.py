"""The report as one ``litevlm.render.Page``: report.md and report.html are two renderings of
it (the same renderer as the evaluation report), report.json is the ``Report`` itself.

Everything shown comes from the ``Report`` (already de-identified by ``run``); every text in it
is data, escaped by the renderer, never markup.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from agent.report.schema import ImageReport, Report
from litevlm.render import (
    Block,
    Bullets,
    Figure,
    Page,
    Paragraph,
    Section,
    Table,
    render_html,
    render_markdown,
)
from litevlm.types import Answer, Source


def write_json(report: Report, path: Path) -> None:
    path.write_text(report.model_dump_json(indent=2), encoding="utf-8")


def write_markdown(report: Report, path: Path) -> None:
    """report.md; its figures are the files under ``figures/`` next to it."""
    path.write_text(render_markdown(to_page(report)), encoding="utf-8")


def write_html(report: Report, out_dir: Path, path: Path) -> None:
    """A single self-contained page: figures are inlined as base64, no external files."""
    path.write_text(render_html(to_page(report), inline=out_dir), encoding="utf-8")


def to_page(report: Report) -> Page:
    lines = [
        f"Created {report.created}.",
        "Models: " + ", ".join(f"{k}: {v}" for k, v in report.models.items()) + ".",
    ]
    sections = []
    if report.bad:
        # the loader's message names the file already; the path is said once
        items = [b.error if b.path in b.error else f"{b.path}: {b.error}" for b in report.bad]
        bad = Bullets(items=items)
        sections.append(Section(title="Images that could not be read", card=True, blocks=[bad]))
    sections += [_image(it, f"img-{i}") for i, it in enumerate(report.images, 1)]
    return Page(title=report.title, disclaimer=report.disclaimer, lines=lines, sections=sections)


def _image(it: ImageReport, anchor: str) -> Section:
    """One card: the image beside its overlay, then header facts, description, measurements,
    similar cases, literature, the questions with their cited sources, timings."""
    blocks: list[Block] = [Paragraph(text=f"Modality: {it.modality}. Thread: {it.thread_id}.")]
    if it.image_file:
        blocks.append(Figure(src=it.image_file, alt=it.name, css="pixels"))
    if it.overlay_file:
        overlay = "measurement overlay"
        blocks.append(Figure(src=it.overlay_file, alt=overlay, caption=overlay, css="pixels"))
    if it.facts:
        blocks.append(_sub("Image facts (header)", [Bullets(items=[f.text for f in it.facts])]))
    blocks += [
        _sub("Description", _description(it)),
        _sub("Measurements", _measurements(it)),
        _sub("Similar cases", _similar(it)),
        _sub("Literature", _literature(it)),
        _sub("Questions and answers", [_qa(qa.question, qa.answer) for qa in it.answers]),
        _sub(
            "Timings (seconds)",
            [Table(head=["step", "s"], rows=[[k, f"{v:.3f}"] for k, v in it.timings.items()])],
        ),
    ]
    return Section(title=it.name, id=anchor, card=True, blocks=blocks)


def _sub(title: str, blocks: list[Block]) -> Section:
    return Section(title=title, blocks=blocks)


def _na(text: str) -> Paragraph:
    return Paragraph(text=text, css="na")


def _warn(text: str) -> Paragraph:
    return Paragraph(text=text, css="warn")


def _description(it: ImageReport) -> list[Block]:
    if it.description is None:
        return [_na(f"Vision model not available: {it.description_error}")]
    out: list[Block] = [Paragraph(text=it.description)]
    if it.description_model:
        out.append(Paragraph(text=it.description_model, css="src"))
    if it.heatmap_file:
        where = "Where the vision model looked (attention map)."
        heat = Figure(src=it.heatmap_file, alt="attention heat-map", caption=where, css="pixels")
        out.append(heat)
    return out


def _measurements(it: ImageReport) -> list[Block]:
    if not it.measurement:
        return [_na(f"Measurement not available: {it.measurement_error}")]
    rows = [list(r) for r in _measure_rows(it.measurement)]
    out: list[Block] = [Table(head=["quantity", "value"], rows=rows)]
    return out + [_warn(f"warning: {w}") for w in it.measurement.get("warnings", [])]


def _similar(it: ImageReport) -> list[Block]:
    if not it.similar:
        return [_na(f"Similar cases not available: {it.similar_error or 'none found'}")]
    items = [
        f"{c.get('id')} (similarity {c.get('score') or 0:.3f}): {c.get('caption')}"
        for c in it.similar
    ]
    return [Bullets(items=items)]


def _literature(it: ImageReport) -> list[Block]:
    out: list[Block] = []
    if it.literature:
        out.append(Bullets(items=[_source(s) for s in it.literature], css="src"))
    else:
        out.append(Paragraph(text="No literature results."))
    return out + [_warn(f"{k}: {v}") for k, v in it.literature_unavailable.items()]


def _qa(question: str, answer: Answer) -> Section:
    """The answer line by line, its numbered sources (``[n]`` in the text is item n), warnings."""
    blocks: list[Block] = [Paragraph(text=line) for line in answer.text.splitlines() if line]
    if answer.sources:
        blocks.append(
            Bullets(
                items=[_source(s) for s in answer.sources],
                ordered=True,
                numbers=[s.n for s in answer.sources],
                css="src",
            )
        )
    blocks += [_warn(f"warning: {w}") for w in answer.warnings]
    return Section(title=question, blocks=blocks)


def _source(s: Source) -> str:
    """A source's line without its ``[n]``: the list shows the number."""
    from agent.citations import format_source

    return format_source(s).removeprefix(f"[{s.n}] ")


def _value(v: Any) -> str:
    """A summary value for a table cell: statistics as mean ± sd (median, n) unit."""
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict) and isinstance(v.get("mean"), int | float):
        text = f"{v['mean']:.4g}"
        if isinstance(v.get("std"), int | float):
            text += f" ± {v['std']:.3g}"
        extra = [
            f"median {v['median']:.4g}" if isinstance(v.get("median"), int | float) else "",
            f"n = {v['n']}" if v.get("n") is not None else "",
        ]
        extra = [e for e in extra if e]
        if extra:
            text += f" ({', '.join(extra)})"
        return text + (f" {v['unit']}" if v.get("unit") else "")
    if isinstance(v, dict):
        return ", ".join(f"{k}: {_value(x)}" for k, x in v.items())
    if isinstance(v, list | tuple):
        return " × ".join(_value(x) for x in v) if len(v) <= 4 else str(len(v)) + " values"
    return str(v)


def _measure_rows(m: dict[str, Any]) -> list[tuple[str, str]]:
    rows = [
        ("kind", str(m.get("kind"))),
        ("count", "—" if m.get("count") is None else str(m["count"])),
        ("units", str(m.get("units"))),
    ]
    if m.get("pixel_size_um"):
        rows.append(("pixel size (um)", _value(m["pixel_size_um"])))
    shown = {"kind", "count", "units"}
    for k, v in (m.get("summary") or {}).items():
        if k not in shown:
            rows.append((k.replace("_", " "), _value(v)))
    return rows
