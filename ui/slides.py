"""Whole-slide images in the chat: the thumbnail to click on, a region, its density heat-map.

An uploaded slide (SVS and the other OpenSlide formats, pyramidal / OME-TIFF, DICOM WSI) is
shown as its thumbnail only, never its label or macro image (``tools.slides`` never reads
them). The thumbnail is a custom element (``ui/public/elements/SlideThumbnail.jsx``): a click
picks a region around that point, a drag picks a box; either sends ``region x,y,w,h`` (level-0
pixels) as a message, which the user can also type. The region is measured tile by tile
(``tools.slides.measure``) and its per-tile density heat-map drawn over the thumbnail; the region
itself, read from the slide, becomes the image the next questions are about.
"""

from __future__ import annotations

import base64
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from litevlm.types import LoadedImage

ELEMENT = "SlideThumbnail"  # ui/public/elements/SlideThumbnail.jsx
TISSUE_ACTION = "slide_tissue_heatmap"
CLICK_BOX_PX = 1024  # level-0 side of the region a click picks (~0.5 mm at 0.5 um/px)
REGION_MAX_PIXELS = 16_000_000  # a larger region is read downsampled for the questions
THUMB_JPEG_PX = 768

_COMMAND = re.compile(
    r"^\s*region\s*[:=]?\s*(?P<coords>-?\d+\s*,\s*-?\d+\s*,\s*\d+\s*,\s*\d+(?:\s*@\s*\d+)?)"
    r"(?:\s+(?:of|on|in)\s+slide\s+(?P<slide>\d+))?\s*[:;.,]?\s*(?P<question>.*)$",
    re.I | re.S,
)


@dataclass(frozen=True)
class RegionCommand:
    coords: str  # x,y,w,h[@L]
    question: str = ""
    slide: int | None = None  # the slide's image number; None: the thread's latest slide


def parse_command(text: str) -> RegionCommand | None:
    """``"region x,y,w,h[@L] [of slide N] [question]"``; None for any other text."""
    m = _COMMAND.match(text or "")
    if not m:
        return None
    slide = int(m.group("slide")) if m.group("slide") else None
    return RegionCommand(m.group("coords").replace(" ", ""), m.group("question").strip(), slide)


def is_slide(loaded: LoadedImage) -> bool:
    return "slide" in loaded.metadata


def latest_slide(images: list[dict], n: int | None = None) -> dict | None:
    """The thread's slide number ``n``, or its most recent slide (regions are images of their
    own, not slides)."""
    found = (im for im in reversed(images) if im.get("slide") and n in (None, im["n"]))
    return next(found, None)


def pending_with_region(images: list[dict], pending: list[int], region: dict) -> list[int]:
    """The images the assistant is given next: the new region instead of its slide and of the
    slide's earlier regions not asked about yet (the questions apply to the region)."""
    same = {region["region_of"]} | {
        im["n"] for im in images if im.get("region_of") == region["region_of"]
    }
    return [n for n in pending if n not in same] + [region["n"]]


def slide_summary(name: str, n: int, info: dict[str, Any]) -> str:
    """One line about an uploaded slide: format, size, scale, pyramid; then how to pick."""
    bits = [f"whole-slide image ({info.get('format', 'slide')})"]
    bits.append(f"{info['width']} x {info['height']} px at level 0")
    if info.get("mpp"):
        mm = f"{info['width_mm']:.2f} x {info['height_mm']:.2f} mm"
        bits.append(f"{info['mpp']:.3g} µm/px ({mm})")
    if info.get("objective_power"):
        bits.append(f"{info['objective_power']:g}x")
    levels = len(info.get("levels") or [])
    bits.append(f"{levels} pyramid level{'s' if levels != 1 else ''}")
    return (
        f"**Slide {n}: {name}** — " + ", ".join(bits) + ". Pick a region: click the thumbnail "
        f"(a {CLICK_BOX_PX} px square around the point) or drag a box on it, or type "
        "`region x,y,w,h` (level-0 pixels)."
    )


def thumbnail_props(loaded: LoadedImage, n: int) -> dict[str, Any]:
    """Props of the thumbnail element: a JPEG data URL (the thumbnail only) and the scale."""
    info = loaded.metadata["slide"]
    thumb = loaded.image.convert("RGB")
    thumb.thumbnail((THUMB_JPEG_PX, THUMB_JPEG_PX))
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=80)
    return {
        "src": "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode(),
        "slide": n,
        "width": int(info["width"]),
        "height": int(info["height"]),
        "box": min(CLICK_BOX_PX, int(info["width"]), int(info["height"])),
    }


@dataclass
class RegionResult:
    """What the chat shows for a region: the heat-map, the crop the questions go to, figures."""

    region: str  # level-0 x,y,w,h
    crop: Path
    preview: Path
    heatmap: Path | None
    pixel_um: float | None  # of the crop
    downsample: float
    text: str


def tile_px_for(w: int, h: int) -> int:
    """Tiles of 256-1024 px: about four per side, so the heat-map has structure."""
    return max(256, min(1024, round(max(w, h) / 4)))


def measure_region(
    path: Path, coords: str, out_dir: Path, stem: str, settings: Any
) -> RegionResult:
    """Check ``coords`` against the slide, measure the region tile by tile (heat-map over the
    thumbnail) and write the region as a TIFF carrying its pixel size, for the questions.

    Raises ``ValueError`` (unparseable coordinates) or ``ImageLoadError`` (outside the slide,
    unreadable), each one line naming what is wrong.
    """
    import numpy as np
    import tifffile
    from PIL import Image

    from tools.slides import open_slide, parse_region
    from tools.slides.measure import measure_slide

    region = parse_region(coords)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open_slide(path) as slide:
        r0 = slide.check_inside(region)
        cfg = settings.measure
        result = measure_slide(
            slide,
            region=region,
            tile_px=tile_px_for(r0.w, r0.h),
            max_tiles=cfg.slide_max_tiles,
            heatmap_path=out_dir / f"{stem}-heatmap.png",
            settings=cfg,
        )
        ds = max(1.0, math.sqrt(r0.w * r0.h / REGION_MAX_PIXELS))
        arr = slide.read_scaled(r0.x, r0.y, r0.w, r0.h, ds)
        mpp = slide.mpp
    pixel_um = mpp * ds if mpp else None
    crop = out_dir / f"{stem}.tif"
    kw: dict[str, Any] = {}
    if pixel_um:
        kw = {"resolution": (1e4 / pixel_um, 1e4 / pixel_um), "resolutionunit": "CENTIMETER"}
    tifffile.imwrite(crop, np.ascontiguousarray(arr), photometric="rgb", **kw)
    preview = out_dir / f"{stem}-preview.png"
    im = Image.fromarray(arr)
    im.thumbnail((1024, 1024))
    im.save(preview)
    return RegionResult(
        region=f"{r0.x},{r0.y},{r0.w},{r0.h}",
        crop=crop,
        preview=preview,
        heatmap=result.heatmap_path,
        pixel_um=pixel_um,
        downsample=ds,
        text=region_text(result, r0.w, r0.h, mpp, ds),
    )


def region_text(result: Any, w: int, h: int, mpp: float | None, ds: float) -> str:
    """What was measured in the region, in a researcher's units."""
    size = f"{w * mpp:.0f} x {h * mpp:.0f} µm" if mpp else f"{w} x {h} px"
    scale = f" ({mpp * ds:.2f} µm/px)" if mpp else ""
    note = f"; the questions see it downsampled {ds:.1f}x{scale}" if ds > 1 else ""
    return f"{size}; {measure_text(result, note)}"


def measure_text(result: Any, note: str = "") -> str:
    """Count, tissue area, density and nuclear size of a slide measurement, then warnings."""
    what = {"nuclei": "nuclei", "cells": "cells"}.get(result.kind, "nuclei")
    line = f"{result.count} {what} counted on {result.tiles_measured} tiles"
    if result.tissue_mm2:
        line += f", {result.tissue_mm2:.3f} mm² of tissue: {result.density_per_mm2:,.0f} per mm²"
    if result.area_um2.get("median"):
        line += f"; median nuclear area {result.area_um2['median']:g} µm²"
    text = line + note + "."
    if result.warnings:
        text += " " + " ".join(f"⚠ {w}" for w in result.warnings)
    return text


def slide_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """The slide's metadata as flat rows for the table beside the chat."""
    info = meta.get("slide") or {}
    rows: dict[str, Any] = {"format": info.get("format", meta.get("format"))}
    rows["size (level 0)"] = f"{info.get('width')} x {info.get('height')} px"
    if info.get("mpp"):
        rows["pixel size"] = f"{info['mpp']} µm/px"
        rows["physical size"] = f"{info['width_mm']} x {info['height_mm']} mm"
    if info.get("objective_power"):
        rows["objective"] = f"{info['objective_power']:g}x"
    rows["pyramid levels"] = "; ".join(
        f"{lv['level']}: {lv['width']} x {lv['height']} (/{lv['downsample']:g})"
        for lv in info.get("levels") or []
    )
    if info.get("tile_size"):
        rows["tile size"] = " x ".join(str(t) for t in info["tile_size"])
    rows["thumbnail downsample"] = meta.get("thumbnail_downsample")
    return rows


# ---------------------------------------------------------------- the chat side (Chainlit)


def is_dicom_slide_file(path: Path, name: str) -> bool:
    from tools.slides import is_slide as is_slide_file
    from tools.slides.reader import DICOM_SUFFIXES

    return name.lower().endswith(DICOM_SUFFIXES) and is_slide_file(path)


def store_dicom_slide(sources: list[tuple[Path, str]], folder: Path) -> Path:
    """The instances of one DICOM WSI, uploaded together, kept in a folder of their own: the
    reader opens the folder (one instance per pyramid level; label/overview never read)."""
    import os
    import shutil

    folder.mkdir(parents=True, exist_ok=True)
    for i, (src, _name) in enumerate(sources):
        dest = folder / f"instance{i}.dcm"  # the upload's name may carry identifiers
        dest.unlink(missing_ok=True)
        try:
            os.link(src, dest)
        except OSError:
            shutil.move(src, dest)
    return folder


def measure_tissue(path: Path, out_dir: Path, stem: str, settings: Any) -> tuple[Path | None, str]:
    """All tissue of the slide, an even sample of ``[measure] slide_max_tiles`` tissue tiles (as
    the assistant measures a slide): the heat-map over the thumbnail and what was measured."""
    from tools.slides import open_slide
    from tools.slides.measure import measure_slide

    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = settings.measure
    with open_slide(path) as slide:
        result = measure_slide(
            slide,
            max_tiles=cfg.slide_max_tiles,
            heatmap_path=out_dir / f"{stem}-heatmap.png",
            settings=cfg,
        )
    return result.heatmap_path, measure_text(result)


async def show_slide(
    record: dict, loaded: LoadedImage, name: str, table_of: Callable[[dict], str]
) -> None:
    """The slide's message: summary, the clickable thumbnail, the metadata beside the chat."""
    import chainlit as cl

    n = record["n"]
    record["slide"] = True
    meta = dict(loaded.metadata)
    table = f"metadata-{n}"
    text = slide_summary(name, n, loaded.metadata["slide"]) + f" De-identified metadata: {table}"
    elements = [
        cl.CustomElement(name=ELEMENT, props=thumbnail_props(loaded, n), display="inline"),
        cl.Text(name=table,
                content=f"Metadata of slide {n} ({name})\n\n{table_of(slide_metadata(meta))}",
                display="side"),
    ]  # fmt: skip
    tissue = cl.Action(
        name=TISSUE_ACTION,
        payload={"slide": n},
        label="Density heat-map of all tissue",
        tooltip=f"measure an even sample of the tissue tiles of slide {n}",
        icon="grid-3x3",
    )
    await cl.Message(content=text, elements=elements, actions=[tissue], author="litevlm").send()


def register(
    images: Callable[[], list[dict]], thread_dir: Callable[[], Path], settings: Any
) -> None:
    """Add the all-tissue heat-map action's callback."""
    import asyncio

    import chainlit as cl

    from litevlm.errors import LiteVLMError

    @cl.action_callback(TISSUE_ACTION)
    async def _tissue(action: cl.Action) -> None:
        n = int(action.payload.get("slide", 0))
        slide = latest_slide(images(), n)
        if slide is None:
            await cl.Message(content=f"⚠ There is no slide {n} in this thread.").send()
            return
        async with cl.Step(name="measure all tissue", type="tool") as step:
            step.input = f"slide {n}: {settings.measure.slide_max_tiles} tissue tiles at most"
            try:
                heatmap, text = await asyncio.to_thread(
                    measure_tissue, Path(slide["path"]), thread_dir(), f"{n}-tissue", settings
                )
            except LiteVLMError as e:
                step.output = str(e)
                await cl.Message(content=f"⚠ {e}", author="litevlm").send()
                return
            step.output = text
        shown = [heatmap] if heatmap else []
        elements = [cl.Image(path=str(p), name="heatmap", display="inline") for p in shown]
        await cl.Message(
            content=f"**All tissue of slide {n}** — {text} Heat-map: objects per mm² of tissue "
            "per tile over the thumbnail (viridis, yellow = densest).",
            elements=elements,
            author="litevlm",
        ).send()


async def choose_region(
    command: RegionCommand, images: list[dict], thread_dir: Path, settings: Any
) -> dict | str:
    """Measure a region of a slide of the thread and show it; return the region's image
    record (the questions' image from now on), or the one line saying why not."""
    import asyncio

    import chainlit as cl

    from litevlm.errors import LiteVLMError

    coords = command.coords
    slide = latest_slide(images, command.slide)
    if slide is None and command.slide is not None:
        return f"There is no slide {command.slide} in this thread."
    if slide is None:
        return "There is no slide in this thread: upload one (SVS, OME-TIFF, DICOM WSI) first."
    n = max((im["n"] for im in images), default=0) + 1
    async with cl.Step(name="measure region", type="tool") as step:
        step.input = f"slide {slide['n']}, region {coords} (level-0 px)"
        try:
            res = await asyncio.to_thread(
                measure_region, Path(slide["path"]), coords, thread_dir, f"{n}-region", settings
            )
        except (ValueError, LiteVLMError) as e:
            step.output = str(e)
            return f"Region `{coords}`: {e}" if isinstance(e, ValueError) else str(e)
        step.output = res.text
    record = {
        "n": n,
        "name": f"{slide['name']} region {res.region}",
        "path": str(res.crop),
        "preview": str(res.preview),
        "region_of": slide["n"],
        "region": res.region,
    }
    elements = [cl.Image(path=str(res.preview), name=f"image-{n}", display="inline")]
    if res.heatmap:
        elements.insert(0, cl.Image(path=str(res.heatmap), name="heatmap", display="inline"))
    text = (
        f"**Region {res.region} of slide {slide['n']}** (image {n}) — {res.text} Heat-map: "
        "objects per mm² of tissue per tile over the thumbnail (viridis, yellow = densest). "
        "Questions now apply to this region."
    )
    await cl.Message(content=text, elements=elements, author="litevlm").send()
    return record
