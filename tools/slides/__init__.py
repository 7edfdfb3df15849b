"""Whole-slide images: open SVS / NDPI / MRXS / OME-TIFF / DICOM-WSI, read regions, measure.

``open_slide(path)`` picks the reader by format: OpenSlide (``openslide-bin`` wheel) for the
vendor formats, tifffile for tiled pyramidal TIFF and OME-TIFF, wsidicom for DICOM WSI. The
returned ``Slide`` reads a region at a time; ``measure_slide`` measures tile by tile.
Associated images (label, macro), which can show a patient's name, are never read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from litevlm.errors import ImageLoadError
from tools.slides.reader import DICOM_SUFFIXES, OPENSLIDE_SUFFIXES, TIFF_SUFFIXES, WSI_SOP_CLASS
from tools.slides.slide import Region, Slide, Tile, parse_region

__all__ = [
    "Region", "Slide", "Tile", "group_slide_files", "is_slide", "open_slide", "parse_region",
]  # fmt: skip

SLIDE_MIN_PIXELS = 1_000_000  # a smaller pyramidal TIFF is just an image


def _is_wsi_dicom(path: Path) -> bool:
    import pydicom

    files = [path] if path.is_file() else sorted(p for p in path.iterdir() if p.is_file())[:8]
    for f in files:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        except Exception:
            continue
        if str(getattr(ds, "SOPClassUID", "")) == WSI_SOP_CLASS:
            return True
    return False


def _is_tiled_pyramid(path: Path) -> bool:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            levels = len(tif.series[0].levels) if tif.series else 1
            pixels = int(page.imagewidth) * int(page.imagelength)
            # A pyramid of 8-bit samples: a single huge level, or a float one, goes through the
            # image loader, whose header checks refuse decompression bombs.
            return (
                bool(page.is_tiled)
                and levels > 1
                and pixels >= SLIDE_MIN_PIXELS
                and page.dtype == np.uint8
            )
    except Exception:
        return False


def is_slide(path: str | Path) -> bool:
    """Whether ``path`` is a whole-slide image (read by region) rather than a plain image."""
    p = Path(path)
    name = p.name.lower()
    if p.is_dir():
        return _is_wsi_dicom(p)
    if name.endswith(OPENSLIDE_SUFFIXES):
        return True
    if name.endswith(TIFF_SUFFIXES):
        return _is_tiled_pyramid(p)
    if name.endswith(DICOM_SUFFIXES):
        return _is_wsi_dicom(p)
    return False


def group_slide_files(paths: list[Path]) -> list[Path]:
    """Image files as listed, except that the instances of a DICOM WSI (one file per pyramid
    level, plus label and overview) become their folder, once: one slide, not six images, and
    the label instance is never opened as an image."""
    out: list[Path] = []
    wsi: dict[Path, bool] = {}
    for p in paths:
        if p.name.lower().endswith(DICOM_SUFFIXES):
            folder = p.parent
            if folder not in wsi:
                wsi[folder] = _is_wsi_dicom(folder)
                if wsi[folder]:
                    out.append(folder)
            if wsi[folder]:
                continue
        out.append(p)
    return out


def open_slide(path: str | Path) -> Slide:
    """Open a slide; one clear line naming the file when it cannot be read."""
    p = Path(path)
    if not p.exists():
        raise ImageLoadError(p, "no such file or folder", "check the path")
    name = p.name.lower()
    if name.endswith(OPENSLIDE_SUFFIXES):
        from tools.slides.openslide_reader import OpenSlideReader

        return Slide(OpenSlideReader(p))
    if name.endswith(TIFF_SUFFIXES):
        from tools.slides.tiff_reader import TiffSlideReader

        return Slide(TiffSlideReader(p))
    if p.is_dir() or name.endswith(DICOM_SUFFIXES):
        from tools.slides.dicom_reader import DicomSlideReader

        return Slide(DicomSlideReader(p))
    raise ImageLoadError(
        p,
        f"'{p.suffix or '(no extension)'}' is not a slide format litevlm reads",
        "supported: " + ", ".join((*OPENSLIDE_SUFFIXES, ".ome.tif", ".tif", "DICOM WSI folder")),
    )
