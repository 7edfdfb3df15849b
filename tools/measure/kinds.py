"""What the image is, before anything is counted.

``detect_kind`` returns the measurement kind and the reason: ``radiology`` (DICOM/NIfTI by
modality), ``cells`` (fluorescence or other microscopy without stain colours), ``ihc`` (brown
DAB with a blue counterstain on a lit background), ``he`` (pink/purple on a lit background),
``fundus`` (a lit red disc on black: a retinal photograph) or ``unknown`` (a colour picture that
is none of these, e.g. a photograph). For the last two, cell counting does not apply.
``image_type`` names the content more finely (fluorescence vs brightfield).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tools.measure.inputs import ImageInput, is_grey

RADIOLOGY_MODALITIES = {
    "CT", "MR", "CR", "DX", "US", "XA", "PT", "NM", "MG", "RF", "RG", "PX", "IO", "OCT",
}  # fmt: skip
COUNTING_KINDS = ("cells", "nuclei", "ihc", "he")


def detect_kind(inp: ImageInput) -> tuple[str, str]:
    """Pick a kind from modality, file format and colour; return (kind, reason)."""
    modality = (inp.modality or "unknown").upper()
    fmt = str(inp.metadata.get("format", "")).lower()
    if modality in RADIOLOGY_MODALITIES:
        return "radiology", f"modality {modality}"
    if fmt == "nifti":
        return "radiology", "NIfTI volume"
    if fmt == "dicom" and modality not in ("SM", "OT") and inp.data.ndim == 2:
        return "radiology", f"greyscale DICOM ({modality})"
    if inp.data.ndim == 3 and inp.data.shape[-1] not in (3, 4):
        return "radiology", "3D volume"
    if modality == "FLUORESCENCE":
        return "cells", "fluorescence modality"
    if is_grey(inp.data):
        return "cells", "greyscale image"
    colour = colour_profile(inp.rgb)
    if colour["fundus"]:
        return "fundus", (
            f"a lit red disc on black: {colour['dark_corners']:.0%} of the corners black, "
            f"red/green {colour['red_over_green']:.1f}"
        )
    if colour["dark_background"]:
        return "cells", f"dark background ({colour['dark']:.0%} of pixels): fluorescence"
    if colour["brightfield"] and colour["brown"] > 0.1 and colour["blue_purple"] > 0.02:
        return "ihc", (
            f"brown DAB signal in {colour['brown']:.0%} of tissue with a blue counterstain "
            f"({colour['blue_purple']:.0%})"
        )
    if colour["brightfield"] and colour["pink_purple"] > 0.3:
        return "he", f"pink/purple stain in {colour['pink_purple']:.0%} of tissue"
    if colour["median_saturation"] < 0.12:
        return "cells", "unstained colour image (low saturation): brightfield microscopy"
    return "unknown", (
        "a colour image with neither stain colours (H&E, DAB) nor a dark fluorescence "
        f"background (median saturation {colour['median_saturation']:.2f})"
    )


def image_type(kind: str, inp: ImageInput) -> str:
    """fluorescence, brightfield, he, ihc, fundus, radiology or unknown."""
    if kind in ("he", "ihc", "fundus", "radiology", "unknown"):
        return kind
    if (inp.modality or "").upper() == "FLUORESCENCE":
        return "fluorescence"
    grey = inp.rgb.mean(axis=-1)
    # Fluorescence: a dark background (the majority) with bright objects.
    return "fluorescence" if np.median(grey) < 0.5 * np.percentile(grey, 99.5) else "brightfield"


def colour_profile(rgb: np.ndarray) -> dict[str, Any]:
    """Colour statistics that tell stains, fluorescence, fundus photographs and photos apart."""
    from skimage.color import rgb2hsv

    # Fractions need no more than ~65k pixels.
    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / 65_536))))
    small = rgb[::step, ::step]
    hsv = rgb2hsv(small)
    h, s, v = hsv[..., 0] * 360, hsv[..., 1], hsv[..., 2]
    tissue = (v > 0.2) & (s > 0.1) & (v < 0.97)
    n = max(1, int(tissue.sum()))
    brown = tissue & (h >= 10) & (h <= 50) & (s > 0.2)
    pink = tissue & ((h >= 260) | (h <= 5))
    blue = tissue & (h >= 190) & (h <= 300) & (s > 0.08)
    rows, cols = v.shape
    cr, cc = max(1, rows // 8), max(1, cols // 8)
    corners = np.concatenate(
        [v[:cr, :cc].ravel(), v[:cr, -cc:].ravel(), v[-cr:, :cc].ravel(), v[-cr:, -cc:].ravel()]
    )
    lit = small.max(axis=-1) > 40
    mean_rgb = small[lit].reshape(-1, 3).mean(axis=0) if lit.any() else np.zeros(3)
    red_over_green = float(mean_rgb[0] / max(mean_rgb[1], 1.0))
    dark_corners = float((corners < 0.1).mean())
    dark = float((v < 0.15).mean())
    return {
        # Brightfield: lit background or tissue, hardly any black (fluorescence, fundus).
        "brightfield": bool(dark < 0.05 and np.median(v) > 0.4),
        "dark": dark,
        "dark_background": bool(np.median(v) < 0.25 and dark > 0.4),
        "dark_corners": dark_corners,
        "red_over_green": red_over_green,
        # A fundus camera images a red-orange disc; the corners outside it are black.
        "fundus": bool(dark_corners > 0.8 and red_over_green > 1.6 and 0.1 < dark < 0.6),
        "tissue": float(tissue.mean()),
        "brown": float(brown.sum() / n),
        "pink_purple": float(pink.sum() / n),
        "blue_purple": float(blue.sum() / n),
        "median_saturation": float(np.median(s)),
    }
