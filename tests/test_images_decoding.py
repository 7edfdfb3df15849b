"""Decoding the loader must get right: CMYK colours, header size checks before decoding, the
DICOM VOI LUT after the modality LUT. Real samples (scikit-image IHC, pydicom-data, nibabel)."""

from __future__ import annotations

import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from litevlm.errors import ImageLoadError
from tools.images import load_image

CMYK_PROFILES = (  # Debian's libgs-common; the ICC tests skip where it is not installed
    Path("/usr/share/color/icc/ghostscript/default_cmyk.icc"),
    Path("/usr/share/color/icc/ghostscript/ps_cmyk.icc"),
)


def dicom(name: str) -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file(name))


@pytest.fixture(scope="module")
def ihc() -> np.ndarray:
    from skimage import data

    return data.immunohistochemistry()


@pytest.fixture(scope="module")
def ihc_dab(ihc: np.ndarray, tmp_path_factory) -> float:
    from tools.measure import measure

    p = tmp_path_factory.mktemp("rgb") / "ihc.png"
    Image.fromarray(ihc).save(p)
    return measure(load_image(p), kind="ihc").summary["dab_positive_fraction_of_cells"]


def _dab(path: Path) -> float:
    from tools.measure import measure

    return measure(load_image(path), kind="ihc").summary["dab_positive_fraction_of_cells"]


def _cmyk_profile() -> bytes:
    for p in CMYK_PROFILES:
        if p.is_file():
            return p.read_bytes()
    pytest.skip("no CMYK ICC profile installed (apt-get install libgs-common)")


@pytest.mark.parametrize("fmt", ["jpeg", "pil-tiff", "tifffile-tiff"])
def test_cmyk_measures_like_the_rgb_original(fmt, ihc, ihc_dab, tmp_path: Path) -> None:
    import tifffile

    cmyk = Image.fromarray(ihc).convert("CMYK")
    if fmt == "jpeg":  # PIL writes Adobe APP14 (inverted CMYK), as Photoshop does
        p = tmp_path / "ihc_cmyk.jpg"
        cmyk.save(p, quality=95)
    elif fmt == "pil-tiff":
        p = tmp_path / "ihc_cmyk.tif"
        cmyk.save(p)
    else:
        p = tmp_path / "ihc_cmyk.tif"
        tifffile.imwrite(p, np.asarray(cmyk), photometric="separated")
    li = load_image(p)
    assert li.metadata["colour_space"].startswith("CMYK")
    assert np.abs(np.asarray(li.image).astype(int) - ihc).mean() < 3  # colours, not inks
    assert _dab(p) == pytest.approx(ihc_dab, abs=0.02)  # 0.57; RGBA-read inks gave 0.26


@pytest.mark.parametrize("fmt", ["jpeg", "tiff"])
def test_cmyk_with_icc_profile_goes_through_the_profile(fmt, ihc, ihc_dab, tmp_path) -> None:
    import io

    import tifffile
    from PIL import ImageCms

    icc = _cmyk_profile()
    profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
    cmyk = ImageCms.profileToProfile(
        Image.fromarray(ihc), ImageCms.createProfile("sRGB"), profile, outputMode="CMYK"
    )
    p = tmp_path / ("ihc_icc.jpg" if fmt == "jpeg" else "ihc_icc.tif")
    if fmt == "jpeg":
        cmyk.save(p, quality=95, icc_profile=icc)
    else:
        tifffile.imwrite(p, np.asarray(cmyk), photometric="separated", iccprofile=icc)
    li = load_image(p)
    assert "ICC" in li.metadata["colour_space"]
    assert np.abs(np.asarray(li.image).astype(int) - ihc).mean() < 5
    assert _dab(p) == pytest.approx(ihc_dab, abs=0.03)


def _zlib_tiff_bomb(path: Path, side: int = 20000) -> Path:
    """A ~3 MB zlib TIFF whose header declares side x side float64 (3.2 GB decoded)."""
    import tifffile

    tile = zlib.compress(np.zeros((1024, 1024), np.float64).tobytes(), 9)
    n = ((side + 1023) // 1024) ** 2
    tifffile.imwrite(
        path, data=(tile for _ in range(n)), shape=(side, side), dtype=np.float64,
        tile=(1024, 1024), compression="zlib",
    )  # fmt: skip
    return path


def _refused_without_decoding(path: Path, match: str, **kw) -> str:
    tracemalloc.start()
    try:
        with pytest.raises(ImageLoadError, match=match) as err:
            load_image(path, **kw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64e6, f"{peak / 1e6:.0f} MB allocated before refusing"
    line = str(err.value)
    assert "\n" not in line and str(path) in line
    return line


def test_zlib_tiff_bomb_refused_from_the_header(tmp_path: Path) -> None:
    p = _zlib_tiff_bomb(tmp_path / "bomb.tif")
    assert p.stat().st_size < 4e6
    line = _refused_without_decoding(p, "20000x20000 = 400 megapixels")
    assert "decompression bomb" in line


def test_tiff_stack_over_the_byte_limit_refused(tmp_path: Path) -> None:
    import tifffile

    p = tmp_path / "stack.tif"
    tile = zlib.compress(np.zeros((256, 256), np.float64).tobytes())
    tifffile.imwrite(
        p, data=(tile for _ in range(3 * 64)), shape=(3, 2048, 2048), dtype=np.float64,
        tile=(256, 256), compression="zlib",
    )  # fmt: skip
    # each 4 MP plane is within 5 MP, but 3 x 4 MP x 8 bytes is above 5 MP x 8 bytes
    _refused_without_decoding(p, "GB of pixel data", max_pixels=5_000_000)


def test_dicom_size_checked_before_pixel_data(tmp_path: Path) -> None:
    import pydicom

    ds = pydicom.dcmread(dicom("emri_small.dcm"))  # 10 frames of 64 x 64, 16-bit
    ds.NumberOfFrames = 100_000
    p = tmp_path / "frames.dcm"
    ds.save_as(p)
    _refused_without_decoding(p, "decompression bomb", max_pixels=1_000_000)
    ds = pydicom.dcmread(dicom("CT_small.dcm"))
    ds.Rows, ds.Columns = 30000, 30000
    ds.save_as(p)
    _refused_without_decoding(p, "900 megapixels")


def test_multiframe_dicom_decodes_the_chosen_frame_only() -> None:
    import pydicom

    path = dicom("emri_small.dcm")
    li = load_image(path, frame=3)
    assert np.array_equal(li.raw, pydicom.dcmread(path).pixel_array[3].astype(li.raw.dtype))


def test_nifti_size_checked_from_the_header(tmp_path: Path) -> None:
    import nibabel as nib
    import nibabel.testing

    img = nib.load(Path(nibabel.testing.data_path) / "anatomical.nii")
    hdr = img.header.copy()
    hdr.set_data_shape((2000, 2000, 2000))
    p = tmp_path / "huge.nii"
    with open(p, "wb") as f:  # header only: the declared 8 GB of voxels are not there
        f.write(hdr.binaryblock + b"\0" * 4)
    _refused_without_decoding(p, "GB of pixel data")


def test_dicom_voi_lut_applies_to_rescaled_values(tmp_path: Path) -> None:
    """PS3.3 C.11: stored -> modality LUT (rescale) -> VOI LUT, checked against pydicom."""
    import warnings

    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    from tools.images import to_uint8

    ds = pydicom.dcmread(dicom("vlut_04.dcm"))
    ds.RescaleSlope, ds.RescaleIntercept = 2, 0
    p = tmp_path / "vlut_slope2.dcm"
    ds.save_as(p)
    ds = pydicom.dcmread(p)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns on its own float modality output
        right = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(np.float32)
        wrong = apply_voi_lut(ds.pixel_array, ds).astype(np.float32)
    right8 = to_uint8(right, float(right.min()), float(right.max()))[0].astype(int)
    wrong8 = to_uint8(wrong, float(wrong.min()), float(wrong.max()))[0].astype(int)
    assert np.abs(right8 - wrong8).max() > 100  # the orders really differ on this file
    li = load_image(p)
    assert li.metadata["window"]["source"] == "VOI LUT"
    assert np.array_equal(np.asarray(li.image)[..., 0].astype(int), right8)
    assert li.raw.max() == 2 * int(ds.pixel_array.max())  # raw is in modality units


def test_fuzz_findings_stay_one_line_errors(tmp_path: Path) -> None:
    """Regressions from benchmarks/fuzz_loader.py: a damaged element that pydicom parses
    lazily, and header bytes (newlines, control codes) quoted in an error."""
    from litevlm.errors import LiteVLMError

    data = dicom("CT_small.dcm").read_bytes()
    tag = b"\x08\x00\x80\x00LO"  # (0008,0080) InstitutionName, explicit VR little endian
    assert tag in data
    p = tmp_path / "bad_vr.dcm"
    p.write_bytes(data.replace(tag, b"\x08\x00\x80\x00L\x00", 1))
    with pytest.raises(ImageLoadError, match="corrupt DICOM header"):
        load_image(p)
    assert str(LiteVLMError("uid 1.2\n3\x80\x07", "hint\r\nmore")) == "uid 1.2 3?? (hint more)"


def test_tiff_declaring_a_zero_size_image_is_refused(tmp_path: Path) -> None:
    """Fuzz finding: 0 x 4294901856 passed the pixel limit (0 pixels) and crashed PIL."""
    import tifffile

    p = tmp_path / "empty.tif"
    tifffile.imwrite(p, np.zeros((0, 96), np.uint8))
    with pytest.raises(ImageLoadError, match="empty image"):
        load_image(p)
