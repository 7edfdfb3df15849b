"""What every slide reader offers, whatever the vendor format.

A reader exposes the pyramid (level sizes and downsamples), the physical pixel size and
``read(level, x, y, w, h)``: ``x, y`` in level-0 pixels (as OpenSlide does), ``w, h`` in pixels
of ``level``; it returns an RGB uint8 array of shape ``(h, w, 3)``. Readers never expose the
associated images (label, macro), which can show a patient's name or barcode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

# Vendor formats OpenSlide reads (its own list); plain/OME TIFF goes to tifffile.
OPENSLIDE_SUFFIXES = (".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide")
TIFF_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".btf", ".tf8")
DICOM_SUFFIXES = (".dcm", ".dicom")
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"  # VL Whole Slide Microscopy Image Storage


@dataclass
class SlideMetadata:
    """The few properties a slide carries that are safe to show: no user, file name, date,
    barcode or scanner serial (Aperio's ``aperio.User``/``Filename``/``Date`` are dropped)."""

    vendor: str = "unknown"
    mpp: float | None = None  # micrometres per level-0 pixel
    objective_power: float | None = None
    tile_size: tuple[int, int] | None = None


class SlideReader(Protocol):
    path: Path
    level_dimensions: list[tuple[int, int]]  # (width, height) per level
    level_downsamples: list[float]
    metadata: SlideMetadata

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray: ...

    def close(self) -> None: ...


def clip_read(
    full: tuple[int, int], level_ds: float, x: int, y: int, w: int, h: int
) -> tuple[int, int, int, int, int, int]:
    """The part of a requested level region that lies inside the slide.

    Returns ``(lx, ly, cw, ch, ox, oy)``: the region's origin in level pixels, the clipped size,
    and where the clipped part goes in the requested output (regions at an edge are padded).
    """
    lx, ly = round(x / level_ds), round(y / level_ds)
    width, height = full
    x0, y0 = max(lx, 0), max(ly, 0)
    x1, y1 = min(lx + w, width), min(ly + h, height)
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0), x0 - lx, y0 - ly
