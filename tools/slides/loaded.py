"""A slide as a ``LoadedImage``: its thumbnail, with the slide's scale and pyramid in metadata.

Every tool that takes a ``LoadedImage`` (vision, similar cases, the header facts) sees the
whole slide at thumbnail scale; the measurement reads the slide itself, tile by tile, from
``source_path`` (``metadata["slide"]`` says it is one).
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from litevlm.types import LoadedImage
from tools.slides import open_slide

THUMBNAIL_PX = 1024


def load_slide_image(path: str | Path, *, max_size: int = THUMBNAIL_PX) -> LoadedImage:
    p = Path(path)
    with open_slide(p) as slide:
        info = slide.info()
        thumb = slide.thumbnail(max_size)
    ds = info["width"] / thumb.shape[1]
    px_mm = info["mpp"] * ds / 1000 if info.get("mpp") else None
    metadata = {
        "format": info["format"],
        "slide": info,
        "thumbnail_downsample": round(ds, 3),
    }
    # The header facts describe the slide, not its thumbnail: level-0 size and spacing.
    metadata["width"], metadata["height"] = info["width"], info["height"]
    if info.get("mpp"):
        metadata["mpp"] = info["mpp"]
        metadata["pixel_spacing_mm"] = [info["mpp"] / 1000] * 2
    if info.get("objective_power"):
        metadata["objective_power"] = info["objective_power"]
    return LoadedImage(
        image=Image.fromarray(thumb),
        source_path=p,
        modality="histology",
        pixel_size_mm=(px_mm, px_mm) if px_mm else None,
        metadata=metadata,
        identifiers=_dicom_identifiers(p) if info["format"] == "dicom" else {},
    )


def _dicom_identifiers(path: Path) -> dict[str, str]:
    """A DICOM WSI's patient identifiers (from its instances' headers), kept only so that the
    question, queries and answers can be cleaned of them, as for any DICOM image."""
    import pydicom

    from tools.images import IDENTIFYING_TAGS

    files = [path] if path.is_file() else sorted(q for q in path.iterdir() if q.is_file())
    ids: dict[str, str] = {}
    for f in files[:8]:
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except Exception:
            continue
        for tag in IDENTIFYING_TAGS:
            value = str(ds.get(tag, "") or "").strip()
            if value and tag not in ids:
                ids[tag] = value
    return ids
