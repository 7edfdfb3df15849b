"""The slide handle: pyramid, thumbnail, regions and tiles at a chosen resolution.

``Slide`` sits beside ``LoadedImage``: a LoadedImage is a whole image in memory; a slide is
read a region at a time. Coordinates are level-0 pixels unless a level is named; a ``Region``
given at level N is scaled by that level's downsample.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from litevlm.errors import ImageLoadError
from tools.slides.reader import SlideReader

THUMBNAIL_MAX = 1024
THUMB_READ_MAX_PIXELS = 16_000_000  # larger levels are read chunk by chunk for the thumbnail


@dataclass(frozen=True)
class Region:
    """``x, y, w, h`` in pixels of ``level`` (0 = full resolution)."""

    x: int
    y: int
    w: int
    h: int
    level: int = 0

    def __str__(self) -> str:
        at = f"@{self.level}" if self.level else ""
        return f"{self.x},{self.y},{self.w},{self.h}{at}"


_REGION = re.compile(r"^\s*(-?\d+)\s*,\s*(-?\d+)\s*,\s*(\d+)\s*,\s*(\d+)\s*(?:@\s*(\d+))?\s*$")


def parse_region(text: str) -> Region:
    """``"x,y,w,h"`` (level-0 pixels) or ``"x,y,w,h@L"`` (pixels of level L)."""
    m = _REGION.match(text)
    if not m:
        raise ValueError(f"region {text!r} is not x,y,w,h or x,y,w,h@level (whole numbers)")
    x, y, w, h = (int(g) for g in m.groups()[:4])
    if w <= 0 or h <= 0:
        raise ValueError(f"region {text!r} has no area")
    return Region(x, y, w, h, int(m.group(5) or 0))


@dataclass(frozen=True)
class Tile:
    """One tile of a grid: the core it owns and the margin read around it (level-0 px)."""

    col: int
    row: int
    x: int  # core origin, level 0
    y: int
    w: int  # core size, level 0
    h: int
    margin: int  # level-0 pixels read on every side, so seam objects are seen whole


class Slide:
    """An open whole-slide image. Use as a context manager or call ``close``."""

    def __init__(self, reader: SlideReader) -> None:
        self.reader = reader
        self.path: Path = reader.path

    # -- what the slide is -----------------------------------------------------------------
    @property
    def dimensions(self) -> tuple[int, int]:
        return self.reader.level_dimensions[0]

    @property
    def level_count(self) -> int:
        return len(self.reader.level_dimensions)

    @property
    def mpp(self) -> float | None:
        return self.reader.metadata.mpp

    def info(self) -> dict[str, Any]:
        """What ``inspect`` shows: safe properties only (no label, macro, user or file name)."""
        md = self.reader.metadata
        w, h = self.dimensions
        info: dict[str, Any] = {
            "format": md.vendor,
            "width": w,
            "height": h,
            "levels": [
                {"level": i, "width": d[0], "height": d[1], "downsample": round(ds, 3)}
                for i, (d, ds) in enumerate(
                    zip(self.reader.level_dimensions, self.reader.level_downsamples, strict=True)
                )
            ],
            "mpp": md.mpp,
            "objective_power": md.objective_power,
            "tile_size": list(md.tile_size) if md.tile_size else None,
        }
        if md.mpp:
            info["width_mm"] = round(w * md.mpp / 1000, 3)
            info["height_mm"] = round(h * md.mpp / 1000, 3)
        return info

    # -- reading ---------------------------------------------------------------------------
    def to_level0(self, region: Region) -> Region:
        if not 0 <= region.level < self.level_count:
            raise ImageLoadError(
                self.path,
                f"region {region} names level {region.level}; the slide has levels "
                f"0..{self.level_count - 1}",
                "use a level from `litevlm inspect`",
            )
        ds = self.reader.level_downsamples[region.level]
        return Region(
            round(region.x * ds), round(region.y * ds), round(region.w * ds), round(region.h * ds)
        )

    def check_inside(self, region: Region) -> Region:
        """The level-0 region, refused with one line when it lies outside the slide."""
        r = self.to_level0(region)
        w, h = self.dimensions
        if r.x < 0 or r.y < 0 or r.x + r.w > w or r.y + r.h > h:
            raise ImageLoadError(
                self.path,
                f"region {region} lies outside the slide ({w} x {h} pixels at level 0)",
                "give x,y,w,h inside the slide (see `litevlm inspect`)",
            )
        return r

    def best_level(self, downsample: float) -> int:
        """The coarsest level that is still at least as fine as ``downsample``."""
        best = 0
        for i, ds in enumerate(self.reader.level_downsamples):
            if ds <= downsample * 1.01:
                best = i
        return best

    def read_region(self, region: Region) -> np.ndarray:
        """RGB pixels of ``region`` at its own level."""
        r0 = self.to_level0(region)
        return self.reader.read(region.level, r0.x, r0.y, region.w, region.h)

    def read_scaled(self, x: int, y: int, w: int, h: int, downsample: float) -> np.ndarray:
        """Level-0 box ``x, y, w, h`` read at ``downsample`` (from the best level, resized)."""
        level = self.best_level(downsample)
        lds = self.reader.level_downsamples[level]
        lw, lh = max(1, round(w / lds)), max(1, round(h / lds))
        arr = self.reader.read(level, x, y, lw, lh)
        ow, oh = max(1, round(w / downsample)), max(1, round(h / downsample))
        if (lw, lh) == (ow, oh):
            return arr
        from PIL import Image

        return np.asarray(Image.fromarray(arr).resize((ow, oh), Image.Resampling.BOX))

    def thumbnail(self, max_size: int = THUMBNAIL_MAX) -> np.ndarray:
        """A thumbnail whose longer side is ``max_size``, read chunk by chunk when the slide
        has no small level, so memory stays bounded."""
        w, h = self.dimensions
        ds = max(w, h) / max_size
        level = self.best_level(ds)
        lw, lh = self.reader.level_dimensions[level]
        if lw * lh <= THUMB_READ_MAX_PIXELS:
            return self.read_scaled(0, 0, w, h, max(ds, 1.0))
        from PIL import Image

        tw, th = max(1, round(w / ds)), max(1, round(h / ds))
        out = np.full((th, tw, 3), 255, np.uint8)
        step = int(ds * 256)  # 256 thumbnail pixels per chunk
        for y in range(0, h, step):
            for x in range(0, w, step):
                cw, ch = min(step, w - x), min(step, h - y)
                part = self.read_scaled(x, y, cw, ch, ds)
                oy, ox = round(y / ds), round(x / ds)
                part = part[: th - oy, : tw - ox]
                out[oy : oy + part.shape[0], ox : ox + part.shape[1]] = part
        return np.asarray(Image.fromarray(out))

    def tiles(
        self,
        *,
        region: Region | None = None,
        mpp: float | None = None,
        tile_px: int = 1024,
        margin_px: int = 32,
    ) -> Iterator[Tile]:
        """A grid over ``region`` (default: the whole slide) in tiles of ``tile_px`` pixels at
        ``mpp`` (default: full resolution), each with ``margin_px`` read around it."""
        r = self.check_inside(region) if region else Region(0, 0, *self.dimensions)
        ds = self.downsample_for(mpp)
        step = max(1, round(tile_px * ds))
        margin = round(margin_px * ds)
        for row, y in enumerate(range(r.y, r.y + r.h, step)):
            for col, x in enumerate(range(r.x, r.x + r.w, step)):
                yield Tile(
                    col, row, x, y, min(step, r.x + r.w - x), min(step, r.y + r.h - y), margin
                )

    def downsample_for(self, mpp: float | None) -> float:
        if mpp is None:
            return 1.0
        if not self.mpp:
            raise ImageLoadError(
                self.path,
                "the slide does not say its pixel size, so --mpp cannot be used",
                "give --pixel-size (um per pixel at level 0), or leave out --mpp",
            )
        if mpp < self.mpp * 0.99:
            raise ImageLoadError(
                self.path,
                f"--mpp {mpp} is finer than the scan itself ({self.mpp:.3f} um per pixel)",
                f"use --mpp {self.mpp:.3f} or larger",
            )
        return mpp / self.mpp

    def read_tile(self, tile: Tile, downsample: float) -> np.ndarray:
        """The tile's core plus its margin (clipped to the slide), at ``downsample``."""
        w, h = self.dimensions
        x0, y0 = max(0, tile.x - tile.margin), max(0, tile.y - tile.margin)
        x1, y1 = min(w, tile.x + tile.w + tile.margin), min(h, tile.y + tile.h + tile.margin)
        return self.read_scaled(x0, y0, x1 - x0, y1 - y0, downsample)

    # -- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        self.reader.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
