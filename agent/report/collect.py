"""An image's sections from its thread: each tool's result read back as its typed output,
and the figures (measurement overlay) copied next to the report."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from agent.report.schema import ImageReport


def fill_sections(item: ImageReport, state: dict[str, Any], out: Path, stem: str) -> None:
    """Image facts, description, measurement, similar cases and literature from the thread's
    tool results, each read back as its tool's typed output."""
    from agent.tools import read

    images = state.get("images") or {}
    mine = {i for i, rec in images.items() if rec["name"] == item.name}
    for rec in (state.get("results") or {}).values():
        tool, error = rec["tool"], rec.get("error")
        if rec.get("image") and rec["image"] not in mine:
            continue
        output: Any = read(rec)
        if tool == "header" and output is not None:
            item.facts = list(output.facts)
        elif tool == "vision" and not rec["args"].get("question"):
            item.description = output.text if output is not None else None
            item.description_error = error
            if output is not None:
                item.description_model = f"{output.model_id} ({output.adapter or 'no adapter'})"
        elif tool == "measure":
            item.measurement = rec.get("output") if output is not None else None
            item.measurement_error = error
            overlay = output.overlay_path if output is not None else None
            if overlay and Path(overlay).is_file():
                dest = out / "figures" / f"{stem}_overlay.png"
                copy_figure(Path(overlay), dest)
                item.overlay_file = f"figures/{dest.name}"
        elif tool == "similar":
            item.similar = [c.model_dump(mode="json") for c in output.cases] if output else []
            item.similar_error = error
        elif tool == "literature":
            if output is None:
                item.literature_unavailable["all"] = error or "failed"
                continue
            seen = {(s.kind, s.id) for s in item.literature}
            for src in output.sources:
                if (src.kind, src.id) not in seen:
                    item.literature.append(src.model_copy(update={"n": len(item.literature) + 1}))
            item.literature_unavailable.update(output.unavailable)


def copy_figure(src: Path, dest: Path, max_px: int = 1024) -> None:
    """Copy a figure, downscaled: the HTML inlines it, and a 4k overlay would bloat the page."""
    from PIL import Image

    try:
        with Image.open(src) as im:
            im = im.convert("RGB")
            im.thumbnail((max_px, max_px))
            im.save(dest)
    except OSError:
        shutil.copyfile(src, dest)


def safe_name(name: str) -> str:
    """A file name made of letters, digits and ``-_.`` (figures are named after the image)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
