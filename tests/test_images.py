"""The image loader on the real sample images that ship in pip packages, and on bad input."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from litevlm.errors import ImageLoadError
from tools.images import iter_images, load_image


def dicom(name: str) -> Path:
    from pydicom.data import get_testdata_file

    return Path(get_testdata_file(name))


def nifti(name: str) -> Path:
    import nibabel.testing

    return Path(nibabel.testing.data_path) / name


@pytest.fixture(scope="module")
def cell_png(tmp_path_factory) -> Path:
    from skimage import data

    p = tmp_path_factory.mktemp("img") / "cell.png"
    Image.fromarray(data.cell()).save(p)
    return p


def test_png_greyscale_becomes_rgb(cell_png: Path) -> None:
    li = load_image(cell_png)
    assert li.image.mode == "RGB"
    assert li.image.size == (Image.open(cell_png).width, Image.open(cell_png).height)
    assert li.metadata["format"] == "png" and li.metadata["channels"] == 1


def test_jpeg_colour(tmp_path: Path) -> None:
    from skimage import data

    p = tmp_path / "ihc.jpg"
    Image.fromarray(data.immunohistochemistry()).save(p, quality=90)
    li = load_image(p)
    assert li.metadata["format"] == "jpeg"
    arr = np.asarray(li.image)
    assert arr.shape == (512, 512, 3) and arr.std() > 10


def test_16bit_tiff_keeps_raw_and_pixel_size(tmp_path: Path) -> None:
    import tifffile
    from skimage import data

    counts = (data.cell().astype(np.uint16) * 200).astype(np.uint16)  # 16-bit range
    p = tmp_path / "cells16.tif"
    tifffile.imwrite(p, counts, imagej=True, resolution=(1 / 0.325, 1 / 0.325),
                     metadata={"unit": "micron"})  # fmt: skip
    li = load_image(p)
    assert li.raw.dtype == np.uint16 and li.raw.max() > 255
    assert li.metadata["bit_depth"] == 16
    assert li.pixel_size_mm == pytest.approx((0.000325, 0.000325), rel=1e-3)
    assert np.asarray(li.image).max() == 255  # stretched for display


def test_16bit_png(tmp_path: Path) -> None:
    from skimage import data

    p = tmp_path / "cells16.png"
    Image.fromarray(data.cell().astype(np.uint16) * 250).save(p)
    li = load_image(p)
    assert li.metadata["bit_depth"] == 16 and np.asarray(li.image).max() == 255


def test_multichannel_tiff_stack_takes_middle_plane(tmp_path: Path) -> None:
    import tifffile

    stack = np.zeros((5, 2, 64, 64), np.uint16)  # Z, C, Y, X
    for z in range(5):
        stack[z, 0, 10:20, 10:20] = 1000 * (z + 1)
        stack[z, 1, 30:40, 30:40] = 500
    p = tmp_path / "stack.tif"
    tifffile.imwrite(p, stack, imagej=True, metadata={"axes": "ZCYX"})
    li = load_image(p)
    assert li.metadata["frame"] == 2 and li.metadata["frames"] == 5
    assert li.raw.shape == (64, 64, 2) and li.raw[15, 15, 0] == 3000
    assert load_image(p, frame=0).raw[15, 15, 0] == 1000


def test_dicom_cr_monochrome1_inverted_and_deidentified() -> None:
    li = load_image(dicom("RG1_UNCR.dcm"))
    assert li.modality == "CR" and li.metadata["photometric_interpretation"] == "MONOCHROME1"
    raw = li.raw
    grey = np.asarray(li.image)[..., 0].astype(float)
    # MONOCHROME1: higher stored values display darker.
    assert np.corrcoef(raw.ravel()[::97], grey.ravel()[::97])[0, 1] < -0.5
    assert li.metadata["window"]["source"] == "header"
    dumped = li.model_dump_json()
    assert "CompressedSamples" not in dumped and "PatientName" not in dumped
    assert "CompressedSamples" not in repr(li)
    assert li.identifiers["PatientName"].startswith("CompressedSamples")


def test_reveal_identifiers_only_on_request() -> None:
    li = load_image(dicom("CT_small.dcm"), reveal_identifiers=True)
    assert "PatientName" in li.metadata["identifiers"]


def test_dicom_ct_in_hounsfield_units() -> None:
    li = load_image(dicom("CT_small.dcm"))
    assert li.metadata["units"] == "HU"
    assert li.pixel_size_mm == pytest.approx((0.661468, 0.661468))
    assert li.raw.min() < -500 and li.raw.max() > 500  # air and bone, in HU


def test_compressed_dicom_equals_uncompressed() -> None:
    a = load_image(dicom("MR2_UNCR.dcm"))
    b = load_image(dicom("MR2_J2KR.dcm"))  # JPEG 2000 lossless
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_dicom_rgb_kept() -> None:
    li = load_image(dicom("US1_UNCR.dcm"))
    arr = np.asarray(li.image).astype(int)
    assert li.metadata["photometric_interpretation"] == "RGB"
    assert np.abs(arr[..., 0] - arr[..., 2]).max() > 20  # real colour, not grey
    ybr = load_image(dicom("US1_J2KR.dcm"))  # YBR_RCT, decoded to RGB
    assert np.abs(np.asarray(ybr.image).astype(int) - arr).mean() < 2


def test_multiframe_dicom_frame_choice() -> None:
    mid = load_image(dicom("emri_small.dcm"))
    assert mid.metadata["frames"] == 10 and mid.metadata["frame"] == 5
    first = load_image(dicom("emri_small.dcm"), frame=0)
    assert not np.array_equal(first.raw, mid.raw)
    with pytest.raises(ImageLoadError, match="out of range"):
        load_image(dicom("emri_small.dcm"), frame=10)


def test_nifti_middle_slice_and_spacing() -> None:
    li = load_image(nifti("anatomical.nii"))
    assert li.metadata["format"] == "nifti"
    assert li.metadata["slice"] == li.metadata["slices"] // 2
    assert li.pixel_size_mm == (2.0, 2.0)
    li4 = load_image(nifti("example4d.nii.gz"), slice_index=0)
    assert li4.metadata["slice"] == 0 and li4.image.size[0] > 0


def test_iter_images(tmp_path: Path, cell_png: Path) -> None:
    (tmp_path / "a.png").write_bytes(cell_png.read_bytes())
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.dcm").write_bytes(dicom("CT_small.dcm").read_bytes())
    assert [p.name for p in iter_images(tmp_path)] == ["a.png", "b.dcm"]


# --- bad input: a typed error that names the file and the cause --------------------------------


def _big_png_header(path: Path, w: int, h: int) -> None:
    """A PNG that claims w x h pixels but carries a few bytes: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
        + chunk(b"IEND", b"")
    )  # fmt: skip


@pytest.mark.parametrize(
    ("name", "make", "cause"),
    [
        ("empty.png", lambda p: p.write_bytes(b""), "empty file"),
        ("notes.png", lambda p: p.write_text("hello, I am text\n" * 10), "content is text"),
        ("bomb.png", lambda p: _big_png_header(p, 50000, 50000), "megapixels|too large"),
        ("scan.xyz", lambda p: p.write_bytes(b"\0" * 64), "unsupported file type"),
        ("notes.dcm", lambda p: p.write_text("not dicom at all\n" * 20), "not a DICOM file"),
        ("broken.nii", lambda p: p.write_bytes(b"\1" * 100), "NIfTI"),
    ],
)
def test_bad_input_names_file_and_cause(tmp_path: Path, name, make, cause) -> None:
    p = tmp_path / name
    make(p)
    with pytest.raises(ImageLoadError, match=cause) as err:
        load_image(p)
    assert str(p) in str(err.value)


def test_truncated_png(tmp_path: Path, cell_png: Path) -> None:
    p = tmp_path / "truncated.png"
    data = cell_png.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageLoadError, match="truncated|corrupt"):
        load_image(p)


def test_truncated_dicom(tmp_path: Path) -> None:
    p = tmp_path / "truncated.dcm"
    data = dicom("MR2_UNCR.dcm").read_bytes()
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageLoadError, match=str(p.name)):
        load_image(p)


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    import pydicom

    ds = pydicom.dcmread(dicom("CT_small.dcm"))
    del ds.PixelData
    p = tmp_path / "nopixels.dcm"
    ds.save_as(p)
    with pytest.raises(ImageLoadError, match="no pixel data"):
        load_image(p)


def test_missing_file() -> None:
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image("/nonexistent/x.png")


def test_inspect_cli_one_line_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    p = tmp_path / "notes.png"
    p.write_text("text")
    exe = Path(sys.executable).parent / "litevlm"
    r = subprocess.run([exe, "inspect", str(p)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and str(p) in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

    ok = subprocess.run([exe, "inspect", str(dicom("CT_small.dcm")), "--json"],
                        capture_output=True, text=True)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    meta = json.loads(ok.stdout)
    assert meta["modality"] == "CT" and "CompressedSamples" not in ok.stdout
