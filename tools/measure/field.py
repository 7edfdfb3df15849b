"""Images where counting cells does not apply (fundus photographs, unrecognised pictures).

Reporting "0 cells" for a retina would be a wrong fact; ``measure_field`` says instead that
counting does not apply (``summary["counting_applies"] = False``, ``count = None``, a warning
naming what the image looks like and how to force a count) and gives the few measures that are
true of any picture: size, mean colour, the lit field of view.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from litevlm.types import Measurement
from tools.measure.features import Measured, stats
from tools.measure.inputs import ImageInput

WHAT = {
    "fundus": "a fundus (retinal) photograph",
    "unknown": "not recognised as microscopy, histology or radiology",
}


def not_applies(kind: str, reason: str = "") -> str:
    """What the answer says of such an image (one clause: it is quoted in one cited sentence)."""
    why = f" ({reason})" if reason else ""
    return f"cell counting does not apply: the image is {WHAT.get(kind, kind)}{why}"


def measure_field(
    inp: ImageInput, *, kind: str, reason: str = "", pixel_size_um: float | None = None
) -> Measured:
    rgb = inp.rgb
    lit = rgb.max(axis=-1) > 25
    summary = {
        "counting_applies": False,
        "image_type": kind,
        "shape": list(inp.data.shape),
        "mean_rgb": [round(float(v), 2) for v in rgb.reshape(-1, 3).mean(axis=0)],
        "lit_fraction": round(float(lit.mean()), 4),
        "brightness": stats(rgb.mean(axis=-1).ravel()),
    }
    if kind == "fundus" and lit.any():
        rows = np.flatnonzero(lit.any(axis=1))
        cols = np.flatnonzero(lit.any(axis=0))
        summary["field_of_view_diameter_px"] = int(max(np.ptp(rows), np.ptp(cols)) + 1)
    warning = (
        f"{not_applies(kind, reason)}; no count is reported; pass kind='cells', 'nuclei', 'he' "
        "or 'ihc' (--kind) to count anyway"
    )
    m = Measurement(
        kind=kind, count=None, units="um" if pixel_size_um else "px",
        pixel_size_um=pixel_size_um, summary=summary, warnings=[warning],
        params={"counting_applies": False},
    )  # fmt: skip

    def draw(path: Path) -> Path:
        from tools.overlay import label_overlay

        return label_overlay(rgb, np.zeros(rgb.shape[:2], np.int32), path,
                             caption=f"{kind}: counting does not apply")  # fmt: skip

    return Measured(m, draw=draw)
