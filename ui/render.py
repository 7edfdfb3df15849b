"""Pure helpers that turn litevlm objects into what the chat shows (Markdown, settings, options).

Kept apart from ``ui/app.py`` so that they are testable without a browser or a server.
"""

from __future__ import annotations

import json
import re
from typing import Any

from litevlm.types import Source

SOURCE_NAMES = {"pubmed": "PubMed", "arxiv": "arXiv", "web": "Web", "wikipedia": "Wikipedia"}
KIND_NAMES = {**SOURCE_NAMES, "header": "image header"}
NO_ADAPTER = "(none)"
_MAX_STEP_CHARS = 4000


def source_url(s: Source) -> str | None:
    """A link for a source: its own URL, else one built from its PMID, DOI or arXiv id."""
    if s.url:
        return s.url
    if s.kind == "pubmed" and s.id:
        return f"https://pubmed.ncbi.nlm.nih.gov/{s.id}/"
    if s.doi:
        return f"https://doi.org/{s.doi}"
    if s.kind == "arxiv" and s.id:
        return f"https://arxiv.org/abs/{s.id}"
    if s.kind in ("web", "wikipedia") and s.id.startswith(("http://", "https://")):
        return s.id
    return None


def _md_escape(text: str) -> str:
    return re.sub(r"([\[\]])", r"\\\1", text)


def source_line(s: Source) -> str:
    """``n. [Title](url) — PubMed · PMID 123 · 2021`` (a Markdown list item)."""
    title = _md_escape(s.title or s.id)
    url = source_url(s)
    head = f"[{title}]({url})" if url else title
    kind = KIND_NAMES.get(s.kind, s.kind)
    ident = {"pubmed": f"PMID {s.id}", "arxiv": f"arXiv:{s.id}"}.get(s.kind, "")
    bits = [kind, ident, f"doi:{s.doi}" if s.doi else "", str(s.year) if s.year else ""]
    if s.authors:
        bits.insert(1, s.authors[0] + (" et al." if len(s.authors) > 1 else ""))
    tail = " · ".join(b for b in bits if b)
    return f"{s.n}. {head} — {tail}" if tail else f"{s.n}. {head}"


def sources_markdown(sources: list[Source]) -> str:
    if not sources:
        return ""
    ordered = sorted(sources, key=lambda s: (s.n is None, s.n or 0))
    return "**Sources**\n\n" + "\n".join(source_line(s) for s in ordered)


def answer_markdown(text: str, sources: list[Source], warnings: list[str]) -> str:
    """The answer text, its numbered source list and any warnings."""
    parts = [text.strip()]
    if sources:
        parts.append(sources_markdown(sources))
    if warnings:
        parts.append("\n".join(f"> ⚠ {w}" for w in warnings))
    return "\n\n".join(p for p in parts if p)


def _plain_value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items() if not isinstance(v, dict))
    if isinstance(value, list | tuple):
        return " x ".join(str(v) for v in value)
    return "" if value is None else str(value)


def metadata_table(meta: dict[str, Any]) -> str:
    """All de-identified metadata as a Markdown table."""
    rows = [(str(k), _plain_value(v)[:120]) for k, v in meta.items()]
    body = "\n".join(f"| {k} | {_md_escape(v).replace('|', '/')} |" for k, v in rows if v)
    return f"| field | value |\n|---|---|\n{body}"


def image_summary(name: str, n: int, modality: str, size: tuple[int, int], meta: dict) -> str:
    """One line about an uploaded image: what it is, its size, spacing and window."""
    bits = [modality if modality != "unknown" else str(meta.get("format", "image"))]
    bits.append(f"{size[0]} x {size[1]} px")
    if meta.get("pixel_spacing_mm"):
        bits.append(f"pixel spacing {_plain_value(meta['pixel_spacing_mm'])} mm")
    if meta.get("pixel_size_um"):
        bits.append(f"pixel size {meta['pixel_size_um']} µm")
    window = meta.get("window")
    if isinstance(window, dict) and "center" in window:
        unit = f" {meta['units']}" if meta.get("units") else ""
        bits.append(f"shown with window {window['center']:g} / {window.get('width', 0):g}{unit}")
    return f"**Image {n}: {_md_escape(name)}** — " + ", ".join(bits)


def step_text(value: Any) -> str:
    """Tool input or output as readable text, shortened for the step panel."""
    if value is None:
        return ""
    if hasattr(value, "model_dump"):
        value = value.model_dump(mode="json")
    if isinstance(value, list) and value and hasattr(value[0], "model_dump"):
        value = [v.model_dump(mode="json") for v in value]
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
        except (TypeError, ValueError):
            text = str(value)
    if len(text) > _MAX_STEP_CHARS:
        text = text[:_MAX_STEP_CHARS] + f"\n... ({len(text) - _MAX_STEP_CHARS} more characters)"
    return text


def turn_options(chat_settings: dict[str, Any] | None) -> dict[str, Any]:
    """The chat settings panel's values as ``TurnOptions`` keyword arguments."""
    cs = chat_settings or {}
    sources = [k for k in SOURCE_NAMES if cs.get(f"source_{k}")]
    adapter = cs.get("adapter")
    quant = cs.get("quantization")
    k = cs.get("similar_k")
    return {
        "sources": sources if any(f"source_{k}" in cs for k in SOURCE_NAMES) else None,
        "similar_k": int(k) if k is not None else None,
        "vision_model": (cs.get("vision_model") or "").strip() or None,
        "adapter": None if adapter in (None, "", NO_ADAPTER) else adapter,
        "quantization": quant or None,
        "heatmap": bool(cs.get("heatmap", False)),
    }


def save_preview(image: Any, path: Any, size: int = 1024) -> None:
    """Write the chat's PNG preview of a loaded image (PIL), at most ``size`` px a side.

    Encoded for speed, as it is on the way to every first answer: zlib level 1 and a grey image
    (the loader gives RGB) as one channel take an eighth of Pillow's default time for a file
    about as large; still lossless.
    """
    from PIL import ImageChops

    preview = image.copy()
    preview.thumbnail((size, size))
    if preview.mode == "RGB":
        r, g, b = preview.split()
        if ImageChops.difference(r, g).getbbox() is None and (
            ImageChops.difference(g, b).getbbox() is None
        ):
            preview = r
    preview.save(path, format="PNG", compress_level=1)
