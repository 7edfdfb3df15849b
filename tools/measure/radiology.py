"""Radiology (CT, MR, X-ray; DICOM or NIfTI): statistics in stored units, not object counts.

``measure_radiology(inp)`` reports the statistics of stored values (HU for CT) over all pixels
and over the body (the patient, not the air around them), the display window, pixel spacing,
field of view, body area and, for CT, the fraction of the body in standard Hounsfield bands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from litevlm.types import Measurement
from tools.measure.features import Measured, stats
from tools.measure.inputs import ImageInput

# Hounsfield bands for a coarse CT composition (standard textbook ranges).
HU_BANDS = {
    "air": (-np.inf, -900.0),
    "lung": (-900.0, -500.0),
    "fat": (-190.0, -30.0),
    "soft_tissue": (-30.0, 100.0),
    "bone": (300.0, np.inf),
}


def measure_radiology(inp: ImageInput, *, pixel_size_um: float | None = None) -> Measured:
    """Statistics of stored values (HU for CT) over all pixels and the body; window; spacing."""
    ps_um = pixel_size_um
    warnings: list[str] = []
    values = inp.data
    meta = inp.metadata
    units = meta.get("units") or ("HU" if inp.modality.upper() == "CT" else None)
    if values.ndim == 3 and values.shape[-1] in (3, 4) and meta.get("format") != "nifti":
        values = values[..., :3].mean(axis=-1)
        warnings.append("colour image: statistics are of the mean of R, G, B")
    if units is None:
        units = "stored value" if meta.get("format") in ("dicom", "nifti") else "grey level"
        if meta.get("format") not in ("dicom", "nifti"):
            warnings.append(
                "not a DICOM/NIfTI file: statistics are of display grey levels, not of "
                "physical units (HU etc.)"
            )
    lo, hi = float(values.min()), float(values.max())
    if hi == lo:
        warnings.append(f"image is uniform (every value is {lo:g}): nothing to measure")
    body = _body_mask(values, units)
    summary: dict[str, Any] = {
        "units": units,
        "all_pixels": stats(values.ravel()),
        "body": stats(values[body]) if body.any() else {"n": 0},
        "body_fraction": round(float(body.mean()), 4),
        "shape": list(values.shape),
    }
    window = meta.get("window")
    if not window:
        p1, p99 = np.percentile(values, (1, 99))
        window = {"center": float(p1 + p99) / 2, "width": float(p99 - p1), "source": "computed"}
    summary["window"] = window
    spacing_mm = inp.pixel_size_mm or ((ps_um / 1000, ps_um / 1000) if ps_um else None)
    rows, cols = values.shape[-2:] if values.ndim == 3 else values.shape
    if spacing_mm:
        sr, sc = spacing_mm
        summary["pixel_spacing_mm"] = [round(sr, 5), round(sc, 5)]
        summary["field_of_view_mm"] = [round(rows * sr, 2), round(cols * sc, 2)]
        summary["body_area_cm2"] = round(float(body.sum() * sr * sc / 100), 2)
    else:
        warnings.append("pixel spacing unknown: sizes are in pixels (pass --pixel-size)")
    distributions: dict[str, Any] = {}
    finite = values[body] if body.any() else values.ravel()
    p_lo, p_hi = np.percentile(finite, (0.5, 99.5))
    if p_hi > p_lo:
        counts, edges = np.histogram(finite, bins=32, range=(p_lo, p_hi))
        distributions["histogram"] = {
            "bin_edges": [round(float(e), 3) for e in edges],
            "counts": counts.tolist(),
            "units": units,
        }
    if units == "HU" and body.any():
        bodyv = values[body]
        distributions["hu_bands_fraction_of_body"] = {
            name: round(float(((bodyv >= a) & (bodyv < b)).mean()), 4)
            for name, (a, b) in HU_BANDS.items()
        }
    for key in ("slice_thickness", "kvp", "body_part", "slice", "slices", "frame", "frames"):
        if key in meta:
            summary[key] = meta[key]
    result = Measurement(
        kind="radiology",
        count=None,
        units="mm" if spacing_mm else "px",
        pixel_size_um=round(spacing_mm[0] * 1000, 3) if spacing_mm else None,
        summary=summary,
        distributions=distributions,
        warnings=warnings,
        params={"modality": inp.modality, "body_mask": _body_rule(units)},
    )

    def draw(path: Path) -> Path:
        from tools.overlay import mask_overlay

        b = summary["body"]
        caption = f"body mean {b.get('mean', float('nan')):.1f} {units}"
        if "center" in window and "width" in window:
            caption += f", window C{window['center']:.0f}/W{window['width']:.0f}"
        mask2d = body if body.ndim == 2 else body[body.shape[0] // 2]
        return mask_overlay(inp.rgb, mask2d, path, caption=caption)

    return Measured(result, draw=draw)


def _body_rule(units: str) -> str:
    return "HU > -500, largest region, holes filled" if units == "HU" else "Otsu, largest region"


def _body_mask(values: np.ndarray, units: str) -> np.ndarray:
    """The patient (not the air around them): a threshold, the largest region, holes filled."""
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    if float(values.max()) == float(values.min()):
        return np.zeros(values.shape, bool)
    t = -500.0 if units == "HU" else threshold_otsu(values)
    mask = values > t
    lab, n = ndi.label(mask)
    if n > 1:
        sizes = np.bincount(lab.ravel())
        sizes[0] = 0
        mask = lab == sizes.argmax()
    return ndi.binary_fill_holes(mask)
