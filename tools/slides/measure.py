"""Measure a slide tile by tile with bounded memory; objects on tile seams counted once.

Each tile is read with a margin around its core and measured with ``tools.measure.measure``;
an object belongs to the tile whose core holds its centroid, so an object cut by a seam is
seen whole in the neighbour that owns it and counted there only (objects larger than the
margin may still be cut: the margin defaults to well over a nucleus). Only per-object areas
and per-tile densities are kept, never pixels, so memory does not grow with the slide.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from litevlm.types import Measurement
from tools.slides.slide import Region, Slide, Tile
from tools.slides.tissue import tissue_mask

DEFAULT_TILE_PX = 1024
DEFAULT_MARGIN_UM = 20.0  # ~2 nuclear diameters
MIN_TISSUE_FRACTION = 0.05  # tiles with less tissue (on the thumbnail) are skipped


class TileResult(BaseModel):
    col: int
    row: int
    x: int  # level-0 core box
    y: int
    w: int
    h: int
    count: int
    tissue_mm2: float | None = None
    density_per_mm2: float | None = None  # objects per mm^2 of tissue
    kind: str = ""


class SlideMeasurement(BaseModel):
    """What was measured over a slide (or a region of it)."""

    path: str
    region: str | None = None
    mpp: float | None = Field(default=None, description="um per pixel the tiles were measured at")
    kind: str = ""
    count: int = 0
    tiles_measured: int = 0
    tiles_skipped: int = 0
    tissue_mm2: float | None = None
    density_per_mm2: float | None = None
    area_um2: dict[str, float] = Field(default_factory=dict)
    tiles: list[TileResult] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    heatmap_path: Path | None = None

    def top_tiles(self, k: int = 3) -> list[TileResult]:
        """The ``k`` tiles with the highest object density."""
        return sorted(self.tiles, key=lambda t: -(t.density_per_mm2 or 0))[:k]


def _tissue_fraction(mask: np.ndarray, scale: float, tile: Tile) -> float:
    """Share of a tile's core that the thumbnail's tissue mask calls tissue."""
    y0, x0 = int(tile.y / scale), int(tile.x / scale)
    y1 = max(y0 + 1, int(np.ceil((tile.y + tile.h) / scale)))
    x1 = max(x0 + 1, int(np.ceil((tile.x + tile.w) / scale)))
    part = mask[y0:y1, x0:x1]
    return float(part.mean()) if part.size else 0.0


def _owned(m: Measurement, tile: Tile, origin: tuple[int, int], ds: float) -> list[dict]:
    """Objects whose centroid lies in the tile's core (the rest belong to a neighbour)."""
    ox, oy = origin
    out = []
    for obj in m.objects:
        x, y = ox + obj["col"] * ds, oy + obj["row"] * ds
        if tile.x <= x < tile.x + tile.w and tile.y <= y < tile.y + tile.h:
            out.append(obj)
    return out


def measure_slide(
    slide: Slide,
    *,
    region: Region | None = None,
    mpp: float | None = None,
    tile_px: int = DEFAULT_TILE_PX,
    kind: str = "auto",
    tissue_only: bool = True,
    max_tiles: int | None = None,
    heatmap_path: Path | None = None,
    settings: Any = None,
    progress: Callable[[int, int], None] | None = None,
) -> SlideMeasurement:
    """Measure ``region`` (default: all tissue) at ``mpp`` (default: the scan's own)."""
    from tools.measure import measure

    ds = slide.downsample_for(mpp)
    px_um = slide.mpp * ds if slide.mpp else None
    margin_px = max(8, round(DEFAULT_MARGIN_UM / px_um)) if px_um else 32
    thumb = slide.thumbnail()
    mask = tissue_mask(thumb)
    scale = slide.dimensions[0] / thumb.shape[1]
    tiles = list(slide.tiles(region=region, mpp=mpp, tile_px=tile_px, margin_px=margin_px))
    warnings: list[str] = []
    results: list[TileResult] = []
    areas: list[np.ndarray] = []
    skipped = 0
    kinds: dict[str, int] = {}
    todo = []
    for t in tiles:
        frac = _tissue_fraction(mask, scale, t)
        if tissue_only and region is None and frac < MIN_TISSUE_FRACTION:
            skipped += 1
            continue
        todo.append((t, frac))
    if max_tiles is not None and len(todo) > max_tiles:
        # an even spread over the tissue, not the first rows: the density stays representative
        pick = np.unique(np.linspace(0, len(todo) - 1, max_tiles).round().astype(int))
        warnings.append(
            f"measured {len(pick)} of {len(todo)} tissue tiles, spread evenly: the count is of "
            "those tiles, the density an estimate for the slide (measure all with litevlm measure)"
        )
        todo = [todo[i] for i in pick]
    for i, (t, frac) in enumerate(todo):
        arr = slide.read_tile(t, ds)
        m = measure(arr, kind=kind, pixel_size_um=px_um, settings=settings)
        kinds[m.kind] = kinds.get(m.kind, 0) + 1
        origin = (max(0, t.x - t.margin), max(0, t.y - t.margin))
        owned = _owned(m, t, origin, ds)
        tissue_mm2 = None
        if slide.mpp:
            frac_here = m.summary.get("tissue_fraction", frac)
            tissue_mm2 = float(frac_here) * t.w * t.h * (slide.mpp / 1000) ** 2
        density = len(owned) / tissue_mm2 if tissue_mm2 else None
        if owned and "area" in owned[0]:
            areas.append(np.asarray([o["area"] for o in owned], np.float32))
        results.append(
            TileResult(
                col=t.col, row=t.row, x=t.x, y=t.y, w=t.w, h=t.h, count=len(owned),
                tissue_mm2=tissue_mm2, density_per_mm2=density, kind=m.kind,
            )
        )  # fmt: skip
        if progress:
            progress(i + 1, len(todo))
    count = sum(r.count for r in results)
    tissue = sum(r.tissue_mm2 or 0 for r in results) if slide.mpp else None
    all_areas = np.concatenate(areas) if areas else np.empty(0, np.float32)
    area_stats = {}
    if all_areas.size and px_um:
        area_stats = {
            "mean": round(float(all_areas.mean()), 2),
            "std": round(float(all_areas.std()), 2),
            "median": round(float(np.median(all_areas)), 2),
            "p5": round(float(np.percentile(all_areas, 5)), 2),
            "p95": round(float(np.percentile(all_areas, 95)), 2),
        }
    if not slide.mpp:
        warnings.append("the slide does not say its pixel size: sizes in pixels, no densities")
    out = SlideMeasurement(
        path=str(slide.path),
        region=str(region) if region else None,
        mpp=px_um,
        kind=max(kinds, key=kinds.get) if kinds else "",
        count=count,
        tiles_measured=len(results),
        tiles_skipped=skipped,
        tissue_mm2=round(tissue, 4) if tissue else None,
        density_per_mm2=round(count / tissue, 1) if tissue else None,
        area_um2=area_stats,
        tiles=results,
        warnings=warnings,
    )
    if heatmap_path is not None and results:
        out.heatmap_path = save_heatmap(thumb, scale, results, heatmap_path)
    return out


def save_heatmap(thumb: np.ndarray, scale: float, tiles: list[TileResult], path: Path) -> Path:
    """Per-tile object density drawn over the thumbnail (viridis, 50% opacity)."""
    from matplotlib import colormaps
    from PIL import Image

    values = [t.density_per_mm2 if t.density_per_mm2 is not None else t.count for t in tiles]
    hi = max(values) or 1.0
    base = thumb.astype(np.float32)
    layer = base.copy()
    cmap = colormaps["viridis"]
    for t, v in zip(tiles, values, strict=True):
        y0, x0 = int(t.y / scale), int(t.x / scale)
        y1, x1 = int(np.ceil((t.y + t.h) / scale)), int(np.ceil((t.x + t.w) / scale))
        layer[y0:y1, x0:x1] = np.asarray(cmap(v / hi)[:3], np.float32) * 255
    out = (0.5 * base + 0.5 * layer).clip(0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(out).save(path)
    return path


def to_measurement(sm: SlideMeasurement) -> Measurement:
    """The slide's result in the shape every other measurement has, for the agent and reports:
    the same summary keys as one H&E/IHC field, plus the tiles and where the dense ones are."""
    summary: dict[str, Any] = {"count": sm.count}
    if sm.tissue_mm2:
        summary["tissue_area_mm2"] = sm.tissue_mm2
        summary["nuclei_per_mm2_tissue"] = sm.density_per_mm2
    if sm.area_um2:
        summary["nuclear_area"] = {"n": sm.count, **sm.area_um2, "unit": "um^2"}
    summary["tiles_measured"] = sm.tiles_measured
    top = [
        {"x": t.x, "y": t.y, "w": t.w, "h": t.h, "count": t.count,
         "density_per_mm2": round(t.density_per_mm2, 1) if t.density_per_mm2 else None}
        for t in sm.top_tiles(3)
    ]  # fmt: skip
    return Measurement(
        kind=sm.kind if sm.kind in ("cells", "nuclei", "ihc", "he", "radiology") else "he",
        count=sm.count,
        units="um" if sm.mpp else "px",
        pixel_size_um=sm.mpp,
        summary=summary,
        warnings=list(sm.warnings),
        params={"slide": True, "region": sm.region, "mpp": sm.mpp, "dense_tiles": top,
                "tiles_skipped": sm.tiles_skipped},
        overlay_path=sm.heatmap_path,
    )  # fmt: skip
