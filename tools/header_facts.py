"""Image facts from the de-identified header: modality, acquisition, geometry, microscopy.

``header_facts(loaded)`` turns what ``tools.images`` kept about an image (and, for DICOM, a
fixed allow-list of acquisition attributes read again from the file without its pixels) into
typed ``Fact``s the agent cites as ``(image header)``. Only attributes on ``ACQUISITION_TAGS``
are read, and free text that contains an identifier's words is dropped too: an identifier can
never become a fact, whatever the file holds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from litevlm.types import Fact, LoadedImage

PROVENANCE = "image header"

MODALITY_NAMES = {
    "CR": "computed radiography (CR)",
    "DX": "digital radiography (DX)",
    "CT": "computed tomography (CT)",
    "MR": "magnetic resonance (MR)",
    "US": "ultrasound (US)",
    "XA": "X-ray angiography (XA)",
    "MG": "mammography (MG)",
    "PT": "positron emission tomography (PET)",
    "NM": "nuclear medicine (NM)",
    "RF": "radiofluoroscopy (RF)",
    "OT": "other (OT)",
    "microscopy": "microscopy",
    "histology": "histology",
    "fluorescence": "fluorescence microscopy",
    "photo": "photograph",
}

# DICOM attributes that describe the acquisition, never the patient: (keyword, fact name,
# label, unit). Nothing outside this list is read.
ACQUISITION_TAGS: tuple[tuple[str, str, str, str], ...] = (
    ("KVP", "kvp", "tube voltage", "kV"),
    ("XRayTubeCurrent", "tube_current", "tube current", "mA"),
    ("Exposure", "exposure", "exposure", "mAs"),
    ("ExposureTime", "exposure_time", "exposure time", "ms"),
    ("SliceThickness", "slice_thickness", "slice thickness", "mm"),
    ("SpacingBetweenSlices", "slice_spacing", "spacing between slices", "mm"),
    ("RepetitionTime", "repetition_time", "repetition time (TR)", "ms"),
    ("EchoTime", "echo_time", "echo time (TE)", "ms"),
    ("InversionTime", "inversion_time", "inversion time (TI)", "ms"),
    ("FlipAngle", "flip_angle", "flip angle", "deg"),
    ("MagneticFieldStrength", "field_strength", "magnetic field strength", "T"),
    ("ConvolutionKernel", "convolution_kernel", "reconstruction kernel", ""),
    ("ScanningSequence", "scanning_sequence", "scanning sequence", ""),
    ("ViewPosition", "view_position", "view position", ""),
    ("PatientPosition", "patient_position", "patient position", ""),
    ("Manufacturer", "manufacturer", "manufacturer", ""),
    ("ManufacturerModelName", "scanner_model", "scanner model", ""),
)


def _num(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _g(v: float) -> str:
    return f"{v:.4g}"


def _fact(name: str, label: str, value: Any, unit: str = "", text: str = "") -> Fact:
    if not text:
        shown = " x ".join(_g(x) for x in value) if isinstance(value, list) else value
        shown = _g(shown) if isinstance(shown, float) else shown
        text = f"{label} {shown}{' ' + unit if unit else ''}"
    return Fact(name=name, label=label, value=value, unit=unit, provenance=PROVENANCE, text=text)


def _mentions_identifier(text: str, identifiers: dict[str, str]) -> bool:
    low = text.lower()
    for value in identifiers.values():
        parts = [p for p in str(value).replace("^", " ").lower().split() if len(p) >= 4]
        if any(p in low for p in parts):
            return True
    return False


def _dicom_acquisition(path: Path) -> dict[str, Any]:
    """The allow-listed attributes of a DICOM file (header only, pixels not read)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:
        return {}
    out: dict[str, Any] = {}
    for keyword, *_ in ACQUISITION_TAGS:
        if keyword in ds:
            v = ds.get(keyword)
            if v is None or str(v).strip() == "":
                continue
            out[keyword] = list(v) if isinstance(v, pydicom.multival.MultiValue) else v
    return out


def header_facts(loaded: LoadedImage) -> list[Fact]:
    """Typed, citable facts about an image from its de-identified header and metadata."""
    meta = loaded.metadata
    facts: list[Fact] = []
    fmt = str(meta.get("format", ""))
    modality = loaded.modality or "unknown"
    if modality != "unknown":
        facts.append(
            _fact("modality", "modality", modality, text=MODALITY_NAMES.get(modality, modality))
        )
    if fmt and fmt != "dicom":
        facts.append(_fact("format", "file format", fmt, text=f"{fmt.upper()} file"))
    if meta.get("body_part"):
        facts.append(_fact("body_part", "body part", str(meta["body_part"]).lower()))
    if meta.get("stain"):
        facts.append(_fact("stain", "stain", str(meta["stain"])))

    if fmt == "dicom" and loaded.source_path is not None:
        acq = _dicom_acquisition(Path(loaded.source_path))
        for keyword, name, label, unit in ACQUISITION_TAGS:
            if keyword not in acq:
                continue
            raw = acq[keyword]
            value: Any = _num(raw) if unit else str(raw).strip()
            if isinstance(raw, list):
                value = "\\".join(str(x) for x in raw)
            if value is None or value == "":
                continue
            if unit and name in {"kvp", "tube_current", "exposure"} and value == 0:
                continue
            if not unit and _mentions_identifier(str(value), loaded.identifiers):
                continue  # e.g. a manufacturer that spells the institution's name
            # Free text in quotes: "G.E. Medical Systems" must not read as two sentences.
            text = f'{label} "{value}"' if not unit and "." in str(value) else ""
            facts.append(_fact(name, label, value, unit, text=text))

    # Geometry: spacing, field of view, matrix, frames/slices.
    rows = meta.get("rows") or meta.get("height")
    cols = meta.get("columns") or meta.get("width")
    if not (rows and cols) and loaded.image is not None:
        cols, rows = loaded.image.size
    if rows and cols:
        facts.append(
            _fact("matrix", "matrix", [int(rows), int(cols)], "px",
                  text=f"matrix {int(rows)} x {int(cols)} pixels (rows x columns)")
        )  # fmt: skip
    spacing = meta.get("pixel_spacing_mm") or (
        list(loaded.pixel_size_mm) if loaded.pixel_size_mm else None
    )
    if spacing and fmt in {"dicom", "nifti"}:
        r, c = (float(x) for x in spacing[:2])
        facts.append(
            _fact("pixel_spacing", "in-plane pixel spacing", [r, c], "mm",
                  text=f"in-plane pixel spacing {_g(r)} x {_g(c)} mm (row x column)")
        )  # fmt: skip
        if rows and cols:
            fov = [round(r * int(rows), 2), round(c * int(cols), 2)]
            facts.append(
                _fact("field_of_view", "field of view", fov, "mm",
                      text=f"field of view {_g(fov[0])} x {_g(fov[1])} mm")
            )  # fmt: skip
    if meta.get("voxel_size_mm"):
        vox = [float(v) for v in meta["voxel_size_mm"]]
        facts.append(
            _fact("voxel_size", "voxel size", vox, "mm",
                  text="voxel size " + " x ".join(_g(v) for v in vox) + " mm")
        )  # fmt: skip
    if fmt == "nifti" and meta.get("shape"):
        shape = [int(s) for s in meta["shape"]]
        facts.append(
            _fact("volume_shape", "volume dimensions", shape, "voxels",
                  text="volume of " + " x ".join(map(str, shape)) + " voxels")
        )  # fmt: skip
    if meta.get("slices"):
        n = int(meta["slices"])
        shown = f", slice {meta['slice'] + 1} shown" if meta.get("slice") is not None else ""
        facts.append(_fact("slices", "slices", n, text=f"{n} slices{shown}"))
    frames = meta.get("frames")
    if frames and int(frames) >= 1 and fmt in {"dicom", "tiff"}:
        n = int(frames)
        shown = f", frame {meta['frame'] + 1} shown" if meta.get("frame") is not None else ""
        facts.append(_fact("frames", "frames", n, text=f"{n} frame{'s' if n > 1 else ''}{shown}"))

    # Microscopy.
    mpp = meta.get("pixel_size_um") or meta.get("mpp")
    if _num(mpp):
        facts.append(
            _fact("pixel_size", "pixel size", float(mpp), "um",
                  text=f"pixel size {_g(float(mpp))} um ({_g(float(mpp))} microns per pixel)")
        )  # fmt: skip
    for key in ("objective_power", "objective", "magnification"):
        if _num(meta.get(key)):
            facts.append(_fact("objective", "objective", float(meta[key]), "x",
                               text=f"objective {_g(float(meta[key]))}x"))  # fmt: skip
            break
    if meta.get("channels"):
        facts.append(_fact("channels", "channels", int(meta["channels"])))
    bits = meta.get("bits_stored") or meta.get("bit_depth")
    if bits:
        facts.append(_fact("bit_depth", "bit depth", int(bits), "bit",
                           text=f"bit depth {int(bits)} bits"))  # fmt: skip
    if meta.get("photometric_interpretation"):
        facts.append(
            _fact("photometric", "photometric interpretation",
                  str(meta["photometric_interpretation"]))
        )  # fmt: skip
    if meta.get("units"):
        facts.append(_fact("value_units", "stored value units", str(meta["units"]),
                           text=f"values in {meta['units']}"))  # fmt: skip
    return facts
