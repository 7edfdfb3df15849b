"""Overlay PNGs that show what was measured: object contours and numbers, or a body outline.

The numbers on the overlay are the object ids in ``Measurement.objects`` so that a person can
match a row of the table to a shape in the image.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CONTOUR = (255, 255, 0)
NUMBER = (0, 255, 255)
MIN_SIDE = 512


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def label_overlay(
    rgb: np.ndarray,
    labels: np.ndarray,
    path: str | Path,
    *,
    numbers: bool = True,
    max_numbers: int = 2000,
    caption: str | None = None,
    color: tuple[int, int, int] = CONTOUR,
    under: tuple[np.ndarray, tuple[int, int, int]] | None = None,
) -> Path:
    """Save ``rgb`` with the contour of every labelled object and its number; return the path.

    ``under`` is a second (labels, colour) layer drawn first, e.g. DAB-negative cells beneath
    the positive ones; it must have the shape of ``labels``.
    """
    from PIL import Image, ImageDraw
    from scipy import ndimage as ndi
    from skimage.segmentation import find_boundaries

    out = np.array(rgb, dtype=np.uint8, copy=True)
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=-1)
    # Small images are enlarged (nearest neighbour) so that numbers and captions stay legible.
    k = max(1, int(np.ceil(MIN_SIDE / max(labels.shape))))
    out, labels = _enlarge(out, k), _enlarge(labels, k)
    if under is not None:
        out[find_boundaries(_enlarge(under[0], k), mode="inner")] = under[1]
    out[find_boundaries(labels, mode="inner")] = color
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    n = int(labels.max())
    size = int(np.clip(min(labels.shape) / 60, 9, 28))
    font = _font(size)
    if numbers and 0 < n <= max_numbers:
        centres = ndi.center_of_mass(labels > 0, labels, np.arange(1, n + 1))
        for i, (cy, cx) in enumerate(centres, start=1):
            draw.text((cx, cy), str(i), fill=NUMBER, font=font, anchor="mm")
    if caption:
        _caption(draw, caption, font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _enlarge(a: np.ndarray, k: int) -> np.ndarray:
    """Nearest-neighbour enlargement by ``k`` (no copy when k == 1: large images stay as is)."""
    return a if k == 1 else a.repeat(k, axis=0).repeat(k, axis=1)


def mask_overlay(
    rgb: np.ndarray, mask: np.ndarray, path: str | Path, *, caption: str | None = None
) -> Path:
    """Save ``rgb`` with the outline of ``mask`` (e.g. the body in a CT slice)."""
    from scipy import ndimage as ndi

    return label_overlay(rgb, ndi.label(mask)[0], path, numbers=False, caption=caption)


def _caption(draw, text: str, font) -> None:
    box = draw.textbbox((4, 4), text, font=font)
    draw.rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(0, 0, 0))
    draw.text((4, 4), text, fill=(255, 255, 255), font=font)
