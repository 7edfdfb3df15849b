"""Exports researchers open elsewhere: the per-object table, the label image, QuPath outlines.

- ``write_objects``: one row per object, CSV or Parquet by suffix; lengths and areas carry their
  unit in the column name (``area_um2``, ``equivalent_diameter_um``; ``_px`` when the pixel size
  is unknown), positions in pixels (``row_px``, ``col_px``) and, when known, micrometres.
- ``write_labels``: the label image as a TIFF (0 background, ids as in the table), with the
  pixel size in the ImageJ resolution tags so Fiji/QuPath show micrometres.
- ``write_geojson``: a GeoJSON FeatureCollection of Polygon features as QuPath exports and
  imports them (File > Import objects): ``properties.objectType`` ("detection" by default, or
  "annotation"), ``properties.classification`` ``{"name", "color"}``, ``properties.measurements``;
  coordinates in pixels with the origin at the top-left corner of the image.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from litevlm.errors import MeasurementError

LENGTHS = {"equivalent_diameter", "major_axis_length", "minor_axis_length", "perimeter"}
AREAS = {"area"}
CLASS_COLOURS = {
    "DAB 0": [112, 112, 225], "DAB 1+": [255, 215, 0], "DAB 2+": [255, 128, 0],
    "DAB 3+": [200, 0, 0], "Nucleus": [0, 120, 255], "Cell": [0, 200, 0],
}  # fmt: skip


def sidecar_paths(overlay_path: str | Path) -> dict[str, Path]:
    """Where the exports that go with an overlay PNG are written: ``x.png`` ->
    ``x.objects.csv``, ``x.labels.tif``, ``x.geojson`` (the chat offers them as downloads)."""
    p = Path(overlay_path)
    stem = p.with_suffix("")
    return {
        "objects": stem.with_name(stem.name + ".objects.csv"),
        "labels": stem.with_name(stem.name + ".labels.tif"),
        "geojson": stem.with_name(stem.name + ".geojson"),
    }


def object_table(
    rows: list[dict[str, Any]], *, units: str, pixel_size_um: float | None,
    classes: dict[int, str] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """``Measurement.objects`` rows with units in the column names (and a class column)."""
    u = units if units in ("um", "mm") else "px"
    out = []
    for r in rows:
        row: dict[str, Any] = {}
        for k, v in r.items():
            if k in ("row", "col"):
                row[f"{k}_px"] = v
                if pixel_size_um:
                    row[f"{'y' if k == 'row' else 'x'}_um"] = round(float(v) * pixel_size_um, 3)
            elif k in AREAS:
                row[f"{k}_{u}2"] = v
            elif k in LENGTHS:
                row[f"{k}_{u}"] = v
            else:
                row[k] = v
        if classes:
            row["class"] = classes.get(int(r["id"]), "")
        out.append(row)
    return out


def write_objects(table: list[dict[str, Any]], path: str | Path) -> Path:
    """CSV (``.csv``) or Parquet (``.parquet``) by the suffix of ``path``."""
    import pandas as pd

    path = Path(path)
    frame = pd.DataFrame(table)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix in (".parquet", ".pq"):
        frame.to_parquet(path, index=False)
    else:
        raise MeasurementError(
            f"{path}: unknown table format {suffix!r}", "name the file .csv or .parquet"
        )
    return path


def write_labels(labels: np.ndarray, path: str | Path, *, pixel_size_um: float | None) -> Path:
    """The label image as TIFF; uint16 when the ids fit, else uint32."""
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        raise MeasurementError(f"{path}: the label image is a TIFF", "name the file .tif")
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.uint16 if labels.max() < 65536 else np.uint32
    kw: dict[str, Any] = {}
    if pixel_size_um:
        kw = {
            "imagej": dtype == np.uint16,  # ImageJ hyperstacks hold no uint32
            "resolution": (1 / pixel_size_um, 1 / pixel_size_um),
            "metadata": {"unit": "um"} if dtype == np.uint16 else None,
        }
        if not kw["imagej"]:
            kw.pop("imagej")
            kw.pop("metadata")
            kw["resolutionunit"] = "NONE"
    tifffile.imwrite(path, labels.astype(dtype), compression="zlib", **kw)
    return path


def outlines(labels: np.ndarray) -> dict[int, list[list[float]]]:
    """Outer boundary of each object as a closed ring of (x, y) pixel-corner coordinates."""
    from scipy import ndimage as ndi
    from skimage.measure import approximate_polygon, find_contours

    rings: dict[int, list[list[float]]] = {}
    for i, sl in enumerate(ndi.find_objects(labels), start=1):
        if sl is None:
            continue
        mask = np.pad(labels[sl] == i, 1)
        contours = find_contours(mask.astype(np.uint8), 0.5)
        if not contours:
            continue
        ring = max(contours, key=len)  # the outer boundary; holes are not exported
        ring = approximate_polygon(ring, tolerance=0.5)
        # find_contours works in pixel-centre coordinates: +0.5 puts them on pixel corners.
        r0, c0 = sl[0].start - 1 + 0.5, sl[1].start - 1 + 0.5
        pts = [[round(float(c + c0), 2), round(float(r + r0), 2)] for r, c in ring]
        if pts[0] != pts[-1]:
            pts.append(pts[0])
        if len(pts) >= 4:
            rings[i] = pts
    return rings


def geojson(
    labels: np.ndarray, *, table: list[dict[str, Any]] | None = None,
    classes: dict[int, str] | None = None, object_type: str = "detection",
) -> dict[str, Any]:  # fmt: skip
    """QuPath-compatible FeatureCollection of the objects in ``labels``."""
    if object_type not in ("detection", "annotation"):
        raise MeasurementError(f"objectType {object_type!r}", "use detection or annotation")
    by_id = {int(r["id"]): r for r in table or []}
    features = []
    for i, ring in outlines(labels).items():
        props: dict[str, Any] = {"objectType": object_type, "isLocked": False}
        name = (classes or {}).get(i)
        if name:
            props["classification"] = {"name": name, "color": CLASS_COLOURS.get(name, [0, 200, 0])}
        row = by_id.get(i)
        if row:
            props["measurements"] = {
                k: v
                for k, v in row.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            }
        features.append(
            {
                "type": "Feature",
                "id": str(uuid.uuid5(uuid.NAMESPACE_OID, f"litevlm-object-{i}")),
                "geometry": {"type": "Polygon", "coordinates": [ring]},
                "properties": props,
            }
        )
    return {"type": "FeatureCollection", "features": features}


def write_geojson(collection: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(collection))
    return path
