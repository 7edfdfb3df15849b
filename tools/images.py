"""One loader for every image the product accepts: PNG, JPEG, TIFF (16-bit too), DICOM, NIfTI.

``load_image`` returns a ``LoadedImage``: an 8-bit RGB PIL image for the models and the eye, the
data in stored units (``raw``: HU for CT, 16-bit counts for microscopy) for measurement, and
de-identified metadata. Patient identifiers from DICOM headers go to ``identifiers`` only, which
never serialises; they reach ``metadata`` only when the caller passes ``reveal_identifiers=True``.

``metadata["format"]`` is one of png, jpeg, tiff, bmp, webp, dicom, nifti.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from litevlm.errors import ImageLoadError
from litevlm.types import LoadedImage
from tools.slides.reader import OPENSLIDE_SUFFIXES

RASTER_SUFFIXES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".bmp": "bmp", ".webp": "webp"}
TIFF_SUFFIXES = {".tif", ".tiff"}
DICOM_SUFFIXES = {".dcm", ".dicom"}
NIFTI_SUFFIXES = (".nii", ".nii.gz")
# Whole-slide formats (tools.slides): loaded as their thumbnail, measured tile by tile.
SLIDE_SUFFIXES = OPENSLIDE_SUFFIXES
SUPPORTED_SUFFIXES = (
    tuple(RASTER_SUFFIXES)
    + tuple(TIFF_SUFFIXES)
    + tuple(DICOM_SUFFIXES)
    + NIFTI_SUFFIXES
    + SLIDE_SUFFIXES
)

# 100 megapixels: a 10k x 10k slide crop loads, a decompression bomb does not.
DEFAULT_MAX_PIXELS = 100_000_000
# Bytes a whole decoded file may take, per allowed pixel: a 100 MP plane of float64, or a stack
# of 8-bit planes. Checked from the header, before decoding, so that a small compressed file
# that declares a huge array is refused in milliseconds instead of filling memory.
BYTES_PER_PIXEL_LIMIT = 8

# DICOM attributes that identify a patient (or let one be found). They go to
# LoadedImage.identifiers, never to metadata, logs or outgoing queries.
IDENTIFYING_TAGS = (
    "PatientName",
    "PatientID",
    "OtherPatientIDs",
    "OtherPatientNames",
    "PatientBirthDate",
    "PatientBirthName",
    "PatientMotherBirthName",
    "PatientAddress",
    "PatientTelephoneNumbers",
    "MedicalRecordLocator",
    "AccessionNumber",
    "StudyID",
    "InstitutionName",
    "InstitutionAddress",
    "InstitutionalDepartmentName",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "PhysiciansOfRecord",
    "StationName",
    "DeviceSerialNumber",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
)

SUPPORTED_HINT = "supported: PNG, JPEG, TIFF, BMP, WebP, DICOM (.dcm), NIfTI (.nii, .nii.gz)"


def is_supported(path: str | Path) -> bool:
    name = Path(path).name.lower()
    return name.endswith(SUPPORTED_SUFFIXES)


def iter_images(folder: str | Path, *, recursive: bool = True) -> list[Path]:
    """Supported image files under ``folder``, sorted, hidden files skipped."""
    root = Path(folder)
    if not root.is_dir():
        raise ImageLoadError(root, "not a directory")
    pattern = "**/*" if recursive else "*"
    return sorted(
        p
        for p in root.glob(pattern)
        if p.is_file() and is_supported(p) and not any(s.startswith(".") for s in p.parts)
    )


def load_image(
    path: str | Path,
    *,
    frame: int | None = None,
    slice_index: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    reveal_identifiers: bool = False,
) -> LoadedImage:
    """Load an image file; raise ``ImageLoadError`` naming the file and the cause.

    ``frame`` picks a frame of a multi-frame DICOM or multi-page TIFF, ``slice_index`` a slice of
    a NIfTI volume (both default to the middle one).
    """
    p = Path(path)
    if not p.exists():
        raise ImageLoadError(p, "file not found")
    from tools.slides import is_slide

    if is_slide(p):  # a whole-slide image: its thumbnail; tools read the slide by region
        from tools.slides.loaded import load_slide_image

        return load_slide_image(p)
    if p.is_dir():
        raise ImageLoadError(p, "is a directory, not an image file")
    if p.stat().st_size == 0:
        raise ImageLoadError(p, "empty file (0 bytes)", "re-export or re-copy the image")

    kind = _sniff(p)
    index = frame if frame is not None else slice_index
    if kind == "dicom":
        # pydicom warns (and logs) once per malformed value it still reads: the file loads, or
        # fails with one line, without a screenful of warnings before it.
        with warnings.catch_warnings(), _quiet("pydicom"):
            warnings.simplefilter("ignore", UserWarning)
            loaded = _load_dicom(p, index, max_pixels)
    elif kind == "nifti":
        loaded = _load_nifti(p, index, max_pixels)
    elif kind == "tiff":
        loaded = _load_tiff(p, index, max_pixels)
    else:
        loaded = _load_raster(p, kind, max_pixels)
    if reveal_identifiers:
        loaded.metadata["identifiers"] = dict(loaded.identifiers)
    return loaded


def _sniff(p: Path) -> str:
    name = p.name.lower()
    with open(p, "rb") as f:
        head = f.read(132)
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if head[128:132] == b"DICM" or p.suffix.lower() in DICOM_SUFFIXES:
        return "dicom"
    if p.suffix.lower() in TIFF_SUFFIXES:
        return "tiff"
    if p.suffix.lower() in RASTER_SUFFIXES:
        return RASTER_SUFFIXES[p.suffix.lower()]
    raise ImageLoadError(
        p, f"unsupported file type '{p.suffix or '(no extension)'}'", SUPPORTED_HINT
    )


def _check_size(p: Path, shape: Iterable[int], max_pixels: int) -> None:
    dims = [int(d) for d in shape]
    if any(d <= 0 for d in dims):  # 0 x 4294901856 is "0 pixels" but no image either
        size = "x".join(str(d) for d in dims)
        raise ImageLoadError(p, f"header declares an empty image ({size})", "re-export the image")
    n = int(np.prod(dims, dtype=np.int64))
    if n > max_pixels:
        size = "x".join(str(d) for d in dims)
        raise ImageLoadError(
            p,
            f"image is {size} = {n / 1e6:.0f} megapixels, above the limit of "
            f"{max_pixels / 1e6:.0f} (possible decompression bomb)",
            "crop or downsample it, or raise [measure] max_pixels if it is genuine",
        )


def _check_bytes(p: Path, shape: Iterable[int], itemsize: int, max_pixels: int) -> None:
    """Refuse, from the header, data that would take more memory than the pixel limit allows."""
    dims = [int(d) for d in shape]
    if any(d < 0 for d in dims):
        raise ImageLoadError(p, f"header declares a negative dimension {dims}")
    n = int(np.prod(dims, dtype=np.float64) * max(int(itemsize), 1))
    limit = max_pixels * BYTES_PER_PIXEL_LIMIT
    if n > limit:
        size = "x".join(str(d) for d in dims)
        raise ImageLoadError(
            p,
            f"header declares {size} x {itemsize} bytes = {n / 1e9:.1f} GB of pixel data, above "
            f"the limit of {limit / 1e9:.1f} GB (possible decompression bomb)",
            "crop or downsample it, or raise [measure] max_pixels if it is genuine",
        )


def cmyk_to_rgb(cmyk: Any, icc_profile: bytes | None = None) -> np.ndarray:
    """A CMYK PIL image (or (H, W, 4) uint8 array) as sRGB uint8, through its ICC profile.

    Without a profile (or with one LittleCMS cannot use) PIL's device conversion is used. Adobe's
    inverted CMYK JPEGs are already un-inverted by PIL's JPEG decoder, so ink values arrive here
    the same way from JPEG and TIFF.
    """
    import io

    from PIL import Image, ImageCms

    im = cmyk if isinstance(cmyk, Image.Image) else Image.fromarray(np.asarray(cmyk), "CMYK")
    if icc_profile:
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
            dst = ImageCms.createProfile("sRGB")
            out = ImageCms.profileToProfile(
                im, src, dst, renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode="RGB"
            )
            if out is not None:
                return np.asarray(out)
        except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
            pass  # a broken profile: the device conversion is still far better than raw inks
    return np.asarray(im.convert("RGB"))


def _describe_content(p: Path) -> str:
    with open(p, "rb") as f:
        head = f.read(512)
    try:
        head.decode("utf-8")
        return "content is text, not image data"
    except UnicodeDecodeError:
        return "content is not a recognised image format"


def to_uint8(
    values: np.ndarray, lo: float | None = None, hi: float | None = None
) -> tuple[np.ndarray, float, float]:
    """Scale to 0..255. Without bounds, the 0.5-99.5 percentiles: one hot pixel must not
    darken the whole picture."""
    a = np.asarray(values, dtype=np.float32)
    if lo is None or hi is None:
        finite = a[np.isfinite(a)]
        if finite.size == 0:
            return np.zeros(a.shape, np.uint8), 0.0, 0.0
        lo, hi = (float(v) for v in np.percentile(finite, [0.5, 99.5]))
        if hi <= lo:
            lo, hi = float(finite.min()), float(finite.max())
    if hi <= lo:
        return np.zeros(a.shape, np.uint8), float(lo), float(hi)
    scaled = np.clip((np.nan_to_num(a, nan=lo) - lo) / (hi - lo), 0, 1) * 255
    return scaled.round().astype(np.uint8), float(lo), float(hi)


def _rgb(arr8: np.ndarray):
    from PIL import Image

    if arr8.ndim == 2:
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if arr8.shape[-1] == 4:
        return Image.fromarray(arr8, mode="RGBA").convert("RGB")
    if arr8.shape[-1] == 3:
        return Image.fromarray(arr8, mode="RGB")
    if arr8.shape[-1] == 2:  # two-channel fluorescence: red + green
        pad = np.zeros((*arr8.shape[:2], 1), np.uint8)
        return Image.fromarray(np.concatenate([arr8, pad], axis=-1), mode="RGB")
    return Image.fromarray(arr8[..., 0], mode="L").convert("RGB")


# --- PNG / JPEG / BMP / WebP ---------------------------------------------------------------


def _load_raster(p: Path, fmt: str, max_pixels: int) -> LoadedImage:
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(p) as im:
                # Image.open reads only the header: the size is checked before any decoding.
                _check_size(p, (im.height, im.width), max_pixels)
                mode, bits, bands = im.mode, _bits(im.mode), len(im.getbands())
                im.load()
                arr = _raster_array(im)
        except ImageLoadError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageLoadError(
                p, f"image too large ({e})", "crop or downsample it (possible decompression bomb)"
            ) from None
        except UnidentifiedImageError:
            raise ImageLoadError(
                p, f"not a valid {fmt.upper()} image: {_describe_content(p)}"
            ) from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError) as e:
            # PIL's decoders report damaged files with any of these.
            raise ImageLoadError(
                p, f"corrupt or truncated {fmt.upper()} file ({e})", "re-export the image"
            ) from None

    raw = arr
    if arr.dtype != np.uint8:  # 16-bit or 32-bit greyscale
        arr, _, _ = to_uint8(arr)
    image = _rgb(arr)
    meta = {
        "format": fmt,
        "width": image.width,
        "height": image.height,
        "mode": mode,
        "bit_depth": bits,
        "channels": bands,
    }
    if mode == "CMYK":
        meta["colour_space"] = "CMYK, converted to sRGB" + (
            " with the embedded ICC profile" if im.info.get("icc_profile") else ""
        )
    return LoadedImage(image=image, source_path=p, modality="unknown", metadata=meta, raw=raw)


def _raster_array(im: Any) -> np.ndarray:
    """Pixels of a decoded PIL image: greyscale at its own depth, everything else as RGB."""
    if im.mode in ("L", "RGB", "I", "F") or im.mode.startswith("I;16"):
        return np.asarray(im)
    if im.mode == "CMYK":  # inks, not colours: RGBA-reading them inverts the picture
        return cmyk_to_rgb(im, im.info.get("icc_profile"))
    if im.mode in ("1", "LA", "La"):
        return np.asarray(im.convert("L"))
    return np.asarray(im.convert("RGB"))  # P, PA, RGBA, YCbCr, LAB, HSV...


def _bits(mode: str) -> int:
    return {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I": 32, "F": 32}.get(mode, 8)


# --- TIFF (microscopy: 16-bit, multi-channel, stacks) -----------------------------------------


def _load_tiff(p: Path, index: int | None, max_pixels: int) -> LoadedImage:
    import tifffile

    try:
        with _quiet("tifffile"), tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            shape, axes = tuple(series.shape), series.axes
            # From the IFDs only, before decoding: one plane within the pixel limit, the whole
            # series within the byte limit (a 3 MB zlib file can declare 3 GB of float64).
            _check_size(p, _tiff_plane_shape(shape, axes), max_pixels)
            _check_bytes(p, shape, series.dtype.itemsize, max_pixels)
            page = tif.pages[0]
            photometric = int(getattr(page, "photometric", 0) or 0)
            icc = page.tags.get("InterColorProfile")
            icc_profile = bytes(icc.value) if icc is not None else None
            data = series.asarray()
            pixel_um = _tiff_pixel_size_um(tif, page)
            imagej = tif.imagej_metadata or {}
    except ImageLoadError:
        raise
    except Exception as e:  # tifffile raises many types for damaged files
        raise ImageLoadError(
            p, f"corrupt or unreadable TIFF ({type(e).__name__}: {e})", "re-export the image"
        ) from None

    try:
        plane, chosen, n_planes = _tiff_plane(data, axes, index)
    except ValueError as e:
        raise ImageLoadError(p, str(e)) from None
    _check_size(p, plane.shape[:2], max_pixels)
    if plane.size == 0:
        raise ImageLoadError(p, f"TIFF plane of shape {plane.shape} holds no pixels")
    if plane.ndim != 2 and not (plane.ndim == 3 and plane.shape[-1] <= 4):
        raise ImageLoadError(p, f"TIFF plane has shape {plane.shape}: not an image")
    cmyk = photometric == 5 and plane.ndim == 3 and plane.shape[-1] == 4  # SEPARATED, 4 inks
    if cmyk:
        inks = plane if plane.dtype == np.uint8 else _planes_to_uint8(plane)
        plane = cmyk_to_rgb(inks, icc_profile)  # measure and show colours, not ink amounts
    arr8 = _planes_to_uint8(plane)
    image = _rgb(arr8)
    meta: dict[str, Any] = {
        "format": "tiff",
        "width": image.width,
        "height": image.height,
        "axes": axes,
        "shape": list(shape),
        "dtype": str(data.dtype),
        "bit_depth": int(data.dtype.itemsize * 8),
        "channels": 4 if cmyk else 1 if plane.ndim == 2 else int(plane.shape[-1]),
    }
    if cmyk:
        meta["colour_space"] = "CMYK, converted to sRGB" + (
            " with the embedded ICC profile" if icc_profile else ""
        )
    if n_planes > 1:
        meta.update(frame=chosen, frames=n_planes)
    if imagej.get("unit"):
        meta["unit"] = imagej["unit"]
    pixel_mm = (pixel_um / 1000.0, pixel_um / 1000.0) if pixel_um else None
    if pixel_um:
        meta["pixel_size_um"] = pixel_um
    return LoadedImage(
        image=image, source_path=p, modality="microscopy", pixel_size_mm=pixel_mm,
        metadata=meta, raw=plane,
    )  # fmt: skip


@contextmanager
def _quiet(logger: str) -> Iterator[None]:
    """tifffile logs a line per damaged tag before raising; the error is reported once."""
    import logging

    log = logging.getLogger(logger)
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        log.setLevel(level)


def _tiff_plane_shape(shape: tuple[int, ...], axes: str) -> tuple[int, int]:
    """(rows, columns) of one plane of a series, from its declared shape and axes."""
    if "Y" in axes and "X" in axes:
        return shape[axes.index("Y")], shape[axes.index("X")]
    return (shape[-2], shape[-1]) if len(shape) >= 2 else (1, shape[0] if shape else 0)


def _tiff_plane(data: np.ndarray, axes: str, index: int | None) -> tuple[np.ndarray, int, int]:
    """Reduce a TIFF series to one (H, W) or (H, W, C) plane."""
    a, ax = data, axes
    if a.ndim < 2 or len(ax) != a.ndim:
        raise ValueError(f"TIFF series of shape {a.shape}, axes {ax!r}: not an image")
    # Move channels (C or S) last, and pick a plane along any Z/T/Q/I axis.
    for name in ("S", "C"):
        if name in ax and ax.index(name) != len(ax) - 1:
            a = np.moveaxis(a, ax.index(name), -1)
            ax = ax.replace(name, "") + name
    n_planes, chosen = 1, 0
    while a.ndim > (3 if ax[-1] in "SC" else 2):
        n = a.shape[0]
        n_planes *= n
        chosen = n // 2 if index is None else index
        if not 0 <= chosen < n:
            raise ValueError(f"frame {chosen} out of range 0..{n - 1}")
        a, ax = a[chosen], ax[1:]
    if a.ndim == 3 and a.shape[-1] > 4:  # unknown leading axis: treat as channels-first
        a = np.moveaxis(a, 0, -1) if a.shape[0] <= 4 else a[..., 0]
    return a, chosen, n_planes


def _planes_to_uint8(plane: np.ndarray) -> np.ndarray:
    if plane.dtype == np.uint8:
        return plane
    if plane.ndim == 2:
        return to_uint8(plane)[0]
    # Each fluorescence channel has its own dynamic range.
    return np.stack([to_uint8(plane[..., c])[0] for c in range(plane.shape[-1])], axis=-1)


def _tiff_pixel_size_um(tif: Any, page: Any) -> float | None:
    tags = page.tags
    ij = tif.imagej_metadata or {}
    xres = tags.get("XResolution")
    if xres is None:
        return None
    num, den = xres.value
    if not num or not den:
        return None
    per_unit = num / den  # pixels per unit
    unit = tags.get("ResolutionUnit")
    unit_val = int(unit.value) if unit is not None else 1
    ij_unit = str(ij.get("unit", "")).lower()
    if ij_unit in {"micron", "um", "µm", "\\u00b5m"}:
        return 1.0 / per_unit
    if unit_val == 3:  # centimetre
        return 1e4 / per_unit
    if unit_val == 2 and per_unit > 1000:  # inch; below ~1000 dpi it is a screen, not a scope
        return 25400.0 / per_unit
    return None


# --- DICOM --------------------------------------------------------------------------------------


def _load_dicom(p: Path, index: int | None, max_pixels: int) -> LoadedImage:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(p)
    except InvalidDicomError:
        try:  # a file without the 128-byte preamble can still be DICOM
            ds = pydicom.dcmread(p, force=True)
        except Exception:
            raise ImageLoadError(p, f"not a DICOM file: {_describe_content(p)}") from None
        if "SOPClassUID" not in ds and "PixelData" not in ds:
            raise ImageLoadError(p, f"not a DICOM file: {_describe_content(p)}") from None
    except Exception as e:
        raise ImageLoadError(p, f"corrupt or truncated DICOM file ({e})") from None
    try:  # pydicom parses elements lazily: parse them all here, so a damaged one fails here
        for _ in ds.iterall():
            pass
    except Exception as e:
        raise ImageLoadError(p, f"corrupt DICOM header ({type(e).__name__}: {e})") from None

    identifiers = {
        tag: str(ds.get(tag)) for tag in IDENTIFYING_TAGS if tag in ds and str(ds.get(tag)).strip()
    }
    if not any(t in ds for t in ("PixelData", "FloatPixelData", "DoubleFloatPixelData")):
        sop = ds.get("SOPClassUID")
        what = f" ({sop.name})" if sop is not None and hasattr(sop, "name") else ""
        raise ImageLoadError(
            p, f"DICOM file has no pixel data{what}", "open the image series, not this object"
        )
    try:  # the header, before any pixel is decoded
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
        bits = int(ds.get("BitsAllocated", 8) or 8)
    except (TypeError, ValueError) as e:
        raise ImageLoadError(p, f"DICOM header has an unreadable image size ({e})") from None
    _check_size(p, (rows, cols), max_pixels)
    _check_size(p, (frames, rows, cols), max_pixels * 8)
    _check_bytes(p, (frames, rows, cols, samples), max(1, (bits + 7) // 8), max_pixels)
    chosen: int | None = None
    if frames > 1:
        chosen = frames // 2 if index is None else index
        if not 0 <= chosen < frames:
            raise ImageLoadError(p, f"frame {chosen} out of range 0..{frames - 1}")

    try:
        if frames > 1:  # decode the one frame shown, not the whole cine loop
            from pydicom.pixels import pixel_array

            arr = pixel_array(ds, index=chosen)
        else:
            arr = ds.pixel_array
    except Exception as e:
        tsyntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(tsyntax, "name", str(tsyntax))
        raise ImageLoadError(
            p,
            f"cannot decode pixel data ({name}): {e}",
            "install the decoders: pip install pylibjpeg pylibjpeg-openjpeg pylibjpeg-libjpeg",
        ) from None

    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))

    meta: dict[str, Any] = {
        "format": "dicom",
        "modality": str(ds.get("Modality", "OT")),
        "body_part": str(ds.get("BodyPartExamined", "")) or None,
        "photometric_interpretation": photometric,
        "frames": frames,
        "rows": rows,
        "columns": cols,
        "bits_stored": int(ds.get("BitsStored", 8)),
        "bits_allocated": int(ds.get("BitsAllocated", 8)),
        "transfer_syntax": getattr(ds.file_meta.TransferSyntaxUID, "name", None)
        if hasattr(ds, "file_meta") and "TransferSyntaxUID" in ds.file_meta
        else None,
        "manufacturer": str(ds.get("Manufacturer", "")) or None,
    }
    if chosen is not None:
        meta["frame"] = chosen
    for key in ("SliceThickness", "KVP"):
        if key in ds and str(ds.get(key)).strip():
            meta[_snake(key)] = _plain(ds.get(key))
    meta.update(_dicom_descriptions(ds, identifiers))
    spacing = _dicom_spacing(ds)
    if spacing:
        meta["pixel_spacing_mm"] = list(spacing)

    if samples > 1 or photometric.startswith(("RGB", "YBR")):
        rgb8 = arr if arr.dtype == np.uint8 else to_uint8(arr)[0]
        image, raw = _rgb(rgb8), arr
        meta["window"] = None
    else:
        try:
            raw, arr8, window = _dicom_grey(ds, arr)
        except (AttributeError, IndexError, KeyError, NotImplementedError, TypeError,
                ValueError) as e:  # fmt: skip
            raise ImageLoadError(
                p, f"DICOM rescale or VOI LUT is malformed ({type(e).__name__}: {e})"
            ) from None
        if photometric == "MONOCHROME1":  # high values are dark: invert for display
            arr8 = 255 - arr8
        image = _rgb(arr8)
        meta["window"] = window
        # RescaleType "US" means unspecified; CT without a type is in HU by definition.
        units = str(ds.get("RescaleType", "")).replace("US", "") or None
        units = units or ("HU" if meta["modality"] == "CT" else None)
        meta["units"] = units
        meta["rescale_slope"] = float(ds.get("RescaleSlope", 1) or 1)
        meta["rescale_intercept"] = float(ds.get("RescaleIntercept", 0) or 0)

    meta = {k: v for k, v in meta.items() if v is not None}
    return LoadedImage(
        image=image, source_path=p, modality=meta["modality"], pixel_size_mm=spacing,
        metadata=meta, identifiers=identifiers, raw=raw,
    )  # fmt: skip


# Free-text descriptions kept under DICOM PS3.15 E.1-1's Clean Descriptors Option: cleaned of
# the header's identifiers (in any spelling, tools.privacy), never shown raw. The profile's other
# free-text attributes (ImageComments, PatientComments, AdditionalPatientHistory,
# RequestedProcedureDescription, ...) are removed: they are never read into metadata.
CLEANED_DESCRIPTIONS = ("StudyDescription", "SeriesDescription", "ProtocolName")


def _dicom_descriptions(ds: Any, identifiers: dict[str, str]) -> dict[str, str]:
    from tools.privacy import clean, remember

    remember(identifiers)  # log lines of this process are cleaned of them too
    out = {}
    for key in CLEANED_DESCRIPTIONS:
        value = " ".join(str(ds.get(key, "")).split())
        if value and (value := clean(value, identifiers)):
            out[_snake(key)] = value
    return out


def _dicom_grey(ds: Any, arr: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Stored values -> modality units (rescale) -> display window -> 8 bits."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    modality = apply_modality_lut(arr, ds)
    values = np.asarray(modality, dtype=np.float32)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        center = float(_first(ds.WindowCenter))
        width = max(float(_first(ds.WindowWidth)), 1.0)
        lo, hi = center - width / 2, center + width / 2
        arr8, _, _ = to_uint8(values, lo, hi)
        return values, arr8, {"center": center, "width": width, "source": "header"}
    if "VOILUTSequence" in ds:
        # PS3.3 C.11: the VOI LUT takes the modality LUT's output (rescaled values), not the
        # stored ones; its first-value-mapped is in those units.
        lut_input = np.rint(modality).astype(np.int64) if modality.dtype.kind == "f" else modality
        voi = np.asarray(apply_voi_lut(lut_input, ds), dtype=np.float32)
        arr8, lo, hi = to_uint8(voi, float(voi.min()), float(voi.max()))
        return values, arr8, {"source": "VOI LUT"}
    arr8, lo, hi = to_uint8(values)
    return values, arr8, {"center": (lo + hi) / 2, "width": hi - lo, "source": "auto (percentiles)"}


def _dicom_spacing(ds: Any) -> tuple[float, float] | None:
    for key in ("PixelSpacing", "ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        if key in ds and ds.get(key):
            try:
                row, col = (float(v) for v in ds.get(key)[:2])
            except (TypeError, ValueError):
                continue
            if row > 0 and col > 0:
                return (row, col)
    # Ultrasound: the first calibrated region, in cm.
    for region in ds.get("SequenceOfUltrasoundRegions", []) or []:
        dx, dy = region.get("PhysicalDeltaX"), region.get("PhysicalDeltaY")
        if dx and dy and int(region.get("PhysicalUnitsXDirection", 0)) == 3:
            return (abs(float(dy)) * 10, abs(float(dx)) * 10)
    return None


def _first(v: Any) -> Any:
    try:
        return v[0] if not isinstance(v, str | bytes) and len(v) else v
    except TypeError:
        return v


def _plain(v: Any) -> Any:
    try:
        return float(v) if not isinstance(v, str) and float(v) == float(v) else str(v)
    except (TypeError, ValueError):
        return str(v)


def _snake(name: str) -> str:
    out = "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")
    return out.replace("k_v_p", "kvp")


# --- NIfTI --------------------------------------------------------------------------------------


def _load_nifti(p: Path, index: int | None, max_pixels: int) -> LoadedImage:
    import nibabel as nib

    try:
        img = nib.load(str(p))
        shape = tuple(int(s) for s in img.shape)
    except Exception as e:
        raise ImageLoadError(p, f"not a readable NIfTI file ({e})") from None
    if len(shape) < 2:
        raise ImageLoadError(p, f"NIfTI data has shape {shape}: not an image")
    # From the header only: nibabel maps the data lazily and reads one slice below.
    _check_size(p, shape[:2], max_pixels)
    try:
        itemsize = int(img.get_data_dtype().itemsize)
    except Exception as e:
        raise ImageLoadError(p, f"NIfTI header has an unreadable data type ({e})") from None
    _check_bytes(p, shape, itemsize, max_pixels)
    n_slices = shape[2] if len(shape) >= 3 else 1
    chosen = n_slices // 2 if index is None else index
    if not 0 <= chosen < n_slices:
        raise ImageLoadError(p, f"slice {chosen} out of range 0..{n_slices - 1}")
    try:
        proxy = img.dataobj
        if len(shape) == 2:
            sl = np.asarray(proxy[:, :], dtype=np.float32)
        elif len(shape) == 3:
            sl = np.asarray(proxy[:, :, chosen], dtype=np.float32)
        else:  # 4D: first volume
            sl = np.asarray(proxy[:, :, chosen, 0], dtype=np.float32)
    except Exception as e:
        raise ImageLoadError(p, f"corrupt or truncated NIfTI data ({e})") from None
    # NIfTI stores (x, y) with y up; show rows top-down.
    sl = np.rot90(sl)
    arr8, lo, hi = to_uint8(sl)
    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    spacing = (zooms[1], zooms[0]) if len(zooms) >= 2 and zooms[0] > 0 and zooms[1] > 0 else None
    descrip = img.header.get("descrip")
    meta: dict[str, Any] = {
        "format": "nifti",
        "shape": list(shape),
        "slice": chosen,
        "slices": n_slices,
        "voxel_size_mm": zooms,
        "dtype": str(img.get_data_dtype()),
        "window": {"center": (lo + hi) / 2, "width": hi - lo, "source": "auto (percentiles)"},
    }
    if spacing:
        meta["pixel_spacing_mm"] = list(spacing)
    if descrip is not None and bytes(descrip).strip(b"\x00 "):
        meta["description"] = bytes(descrip).strip(b"\x00 ").decode("latin-1")
    return LoadedImage(
        image=_rgb(arr8), source_path=p, modality="unknown", pixel_size_mm=spacing,
        metadata=meta, raw=sl,
    )  # fmt: skip
