"""Measure what a vision-language model cannot be trusted to count.

``measure(image, kind=...)`` returns a ``Measurement``: object counts and shape/intensity
statistics for cell and nucleus images, haematoxylin/DAB quantities for IHC and H&E, intensity
statistics in stored units (HU for CT) for radiology, always in physical units when the pixel
size is known, with the parameters used, plausibility warnings, and an overlay PNG and exports
(object table, label TIFF, QuPath GeoJSON) when asked for.

One module per job, scikit-image style (arrays in, arrays and results out, explicit keywords):
``inputs`` (normalisation), ``kinds`` (what the image is), ``segmentation`` (the classical
pipeline), ``fluorescence`` (cells, nuclei), ``brightfield`` (H&E, IHC), ``radiology``,
``field`` (images where counting does not apply), ``plausibility``, ``features``, ``exports``,
``matching`` (object-level accuracy against annotations). This module is the edge: it applies
the app's ``MeasureConfig``. Heavy imports (skimage, scipy) happen inside the functions.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np

from litevlm.config import MeasureConfig
from litevlm.errors import MeasurementError
from litevlm.types import LoadedImage, Measurement
from tools.measure.features import Measured
from tools.measure.inputs import ImageInput, as_input, resolve_pixel_size
from tools.measure.kinds import COUNTING_KINDS, colour_profile, detect_kind, image_type

KINDS = ("auto", "cells", "nuclei", "ihc", "he", "radiology", "fundus", "unknown")

__all__ = [
    "KINDS", "Measured", "analyse", "colour_profile", "detect_kind", "measure", "segment_kwargs",
]  # fmt: skip


def measure(
    image: LoadedImage | np.ndarray | str | Path,
    *,
    kind: str = "auto",
    pixel_size_um: float | None = None,
    overlay_path: Path | None = None,
    settings: MeasureConfig | None = None,
    objects_path: Path | None = None,
    labels_path: Path | None = None,
    geojson_path: Path | None = None,
) -> Measurement:
    """Measure ``image`` and return a ``Measurement`` (see ``docs/measure.md`` for kinds).

    ``pixel_size_um`` overrides the pixel size from metadata or settings. ``overlay_path``, when
    given, receives a PNG with contours and object numbers (or the body outline in radiology);
    ``objects_path`` (.csv/.parquet), ``labels_path`` (.tif) and ``geojson_path`` (QuPath) the
    exports. Bad input raises ``MeasurementError`` (too small, a 3D stack, too large) or returns
    a result whose ``warnings`` say what is wrong (blank, saturated, implausible, not countable).
    """
    settings = settings or MeasureConfig()
    res = analyse(image, kind=kind, pixel_size_um=pixel_size_um, settings=settings)
    m = res.measurement
    if overlay_path is not None and res.draw is not None:
        m.overlay_path = res.draw(Path(overlay_path))
        if settings.exports_with_overlay and res.labels is not None:
            from tools.measure.exports import sidecar_paths

            side = sidecar_paths(m.overlay_path)
            objects_path = objects_path or side["objects"]
            labels_path = labels_path or side["labels"]
            geojson_path = geojson_path or side["geojson"]
    if any(p is not None for p in (objects_path, labels_path, geojson_path)):
        export(res, objects_path=objects_path, labels_path=labels_path, geojson_path=geojson_path)
    return m


def analyse(
    image: LoadedImage | np.ndarray | str | Path,
    *,
    kind: str = "auto",
    pixel_size_um: float | None = None,
    settings: MeasureConfig | None = None,
) -> Measured:
    """Like ``measure`` but returns the arrays too (``Measured``: labels, classes, overlay)."""
    settings = settings or MeasureConfig()
    if kind not in KINDS:
        raise MeasurementError(f"unknown kind {kind!r}", f"use one of {', '.join(KINDS)}")
    inp = as_input(image, max_pixels=settings.max_pixels, volume_ok=kind == "radiology")
    reason = "requested"
    if kind == "auto":
        kind, reason = detect_kind(inp)
    ps_um, ps_source, ps_warnings = resolve_pixel_size(inp, pixel_size_um, settings.pixel_size_um)
    res = _dispatch(inp, kind, reason, ps_um, settings)
    m = res.measurement
    m.warnings[:0] = inp.warnings + ps_warnings
    m.params.update({"kind_reason": reason, "pixel_size_source": ps_source})
    m.params.setdefault("backend", settings.backend)
    m.summary.setdefault("counting_applies", kind in COUNTING_KINDS)
    m.summary.setdefault("image_type", image_type(kind, inp))
    return res


def segment_kwargs(settings: MeasureConfig) -> dict:
    """The classical segmentation's keywords from ``[measure]``."""
    return {
        "polarity": settings.object_polarity,
        "smooth_sigma": settings.smooth_sigma,
        "threshold_method": settings.threshold_method,
        "clip_percentile": settings.threshold_clip_percentile,
        "min_area": settings.min_object_area_px,
        "exclude_border": settings.exclude_border,
        "split": settings.split_touching,
        "split_h": settings.split_h,
        "seed_distance": settings.seed_distance,
        "refine_fraction": settings.refine_fraction,
        "background_tile": settings.background_tile_px,
    }


def _segmenter(settings: MeasureConfig):
    if settings.backend == "cellpose":
        from tools.measure.cellpose_backend import cellpose_segment, resolve_weights

        resolve_weights(settings.cellpose_model)  # a missing file fails before any work
        segment = partial(
            cellpose_segment, model=settings.cellpose_model,
            diameter_px=settings.cellpose_diameter_px, gpu=settings.cellpose_gpu,
        )  # fmt: skip
        base = {
            "min_area": settings.min_object_area_px,
            "exclude_border": settings.exclude_border,
            "polarity": settings.object_polarity,
        }
    else:
        from tools.measure.segmentation import segment

        base = segment_kwargs(settings)

    def run(grey: np.ndarray, **overrides):
        return segment(grey, **(base | overrides))

    return run


def _dispatch(
    inp: ImageInput, kind: str, reason: str, ps_um: float | None, settings: MeasureConfig
) -> Measured:
    if kind == "radiology":
        from tools.measure.radiology import measure_radiology

        return measure_radiology(inp, pixel_size_um=ps_um)
    if inp.data.ndim == 3 and inp.data.shape[-1] not in (1, 3, 4):
        raise MeasurementError(
            f"{inp.source}: a 3D stack of shape {inp.data.shape} cannot be segmented",
            "pass one plane (e.g. image[k]) or a projection (image.max(axis=0))",
        )
    if kind in ("fundus", "unknown"):
        from tools.measure.field import measure_field

        return measure_field(inp, kind=kind, reason=reason, pixel_size_um=ps_um)
    common = {
        "pixel_size_um": ps_um,
        "segment": _segmenter(settings),
        "min_area_px": settings.min_object_area_px,
        "max_objects_listed": settings.max_objects_listed,
    }
    if kind in ("ihc", "he"):
        from tools.measure.brightfield import measure_stain

        return measure_stain(
            inp, kind=kind, dab_threshold=settings.dab_threshold,
            dab_bins=tuple(settings.dab_bins), cell_expansion_px=settings.cell_expansion_px,
            **common,
        )  # fmt: skip
    from tools.measure.fluorescence import measure_objects

    return measure_objects(inp, kind=kind, **common)


def export(
    res: Measured,
    *,
    objects_path: Path | None = None,
    labels_path: Path | None = None,
    geojson_path: Path | None = None,
) -> dict[str, Path]:
    """Write the exports asked for; record them in ``measurement.params["exports"]``."""
    from tools.measure import exports

    m = res.measurement
    if res.labels is None and (labels_path or geojson_path):
        raise MeasurementError(
            f"a {m.kind} measurement has no objects to export as labels or outlines",
            "export labels/GeoJSON from cells, nuclei, he or ihc measurements",
        )
    table = exports.object_table(
        res.rows or m.objects, units=m.units, pixel_size_um=m.pixel_size_um, classes=res.classes
    )
    written: dict[str, Path] = {}
    if objects_path is not None:
        written["objects"] = exports.write_objects(table, objects_path)
    if labels_path is not None:
        written["labels"] = exports.write_labels(
            res.labels, labels_path, pixel_size_um=m.pixel_size_um
        )
    if geojson_path is not None:
        collection = exports.geojson(res.labels, table=table, classes=res.classes)
        written["geojson"] = exports.write_geojson(collection, geojson_path)
    m.params["exports"] = {k: str(v) for k, v in written.items()}
    return written
