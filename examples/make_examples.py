"""Write the example images (real sample data that ships in pip packages) to examples/images/.

Each image gets an honest caption in ``captions.jsonl``: what the image is, taken from its source's
own documentation and its metadata, nothing invented. The retrieval index, the demo report and
the tests read this folder. Run: ``python examples/make_examples.py [--out DIR]``.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _skimage_images(out: Path) -> list[dict]:
    import numpy as np
    import tifffile
    from PIL import Image
    from skimage import data

    # skimage documents the cell image's pixel spacing (0.107 um): keep it in the TIFF so that
    # measurements come out in micrometres.
    tifffile.imwrite(
        out / "cell.tif", np.asarray(data.cell(), dtype=np.uint8), imagej=True,
        resolution=(1 / 0.107, 1 / 0.107), metadata={"unit": "micron"},
    )  # fmt: skip
    Image.fromarray(data.immunohistochemistry()).save(out / "ihc_colon.png")
    Image.fromarray(data.retina()).save(out / "retina.jpg", quality=92)
    Image.fromarray(data.microaneurysms()).save(out / "microaneurysms.png")
    lic = "CC0 (scikit-image sample data)"
    return [
        {
            "image": "cell.tif",
            "caption": "Quantitative phase image of a single cell floating in saline, retrieved "
            "from a digital hologram; the background shows a banding artifact. "
            "Pixel spacing 0.107 um.",
            "modality": "microscopy", "stain": "none (label-free phase imaging)", "organ": "cell",
            "source": "scikit-image data.cell() (Mueller et al.)", "license": lic,
        },
        {
            "image": "ihc_colon.png",
            "caption": "Immunohistochemistry of colonic glands: FHL2 protein expression revealed "
            "with DAB (brown), haematoxylin counterstain (blue).",
            "modality": "histology", "stain": "IHC (DAB, haematoxylin)", "organ": "colon",
            "source": "scikit-image data.immunohistochemistry() (CMMI)",
            "license": "no known copyright restrictions",
        },
        {
            "image": "retina.jpg",
            "caption": "Colour fundus photograph of a normal left eye (human retina).",
            "modality": "photo", "stain": None, "organ": "eye",
            "source": "scikit-image data.retina() (Wikimedia, M. Haggstrom)", "license": "CC0",
        },
        {
            "image": "microaneurysms.png",
            "caption": "Green-channel crop of a fundus image of a retina with diabetic "
            "retinopathy showing microaneurysms.",
            "modality": "photo", "stain": None, "organ": "eye",
            "source": "scikit-image data.microaneurysms() (HRF database)", "license": "CC0",
        },
    ]  # fmt: skip


def _he_tile(out: Path) -> list[dict]:
    import wsidicom_data

    tile = Path(wsidicom_data.__file__).parent / "data" / "test_tile.png"
    shutil.copyfile(tile, out / "he_tile.png")
    return [
        {
            "image": "he_tile.png",
            "caption": "Tile from a whole-slide image of haematoxylin and eosin (H&E) stained "
            "tissue, used as wsidicom's test tile.",
            "modality": "histology", "stain": "H&E", "organ": None,
            "source": "wsidicom-data test_tile.png", "license": "Apache-2.0 (wsidicom-data)",
        }
    ]  # fmt: skip


def _dicom_images(out: Path) -> list[dict]:
    from pydicom.data import get_testdata_file

    items = [
        ("RG1_UNCR.dcm", "chest_xray.dcm", "Computed radiography (CR) of the chest (thorax), "
         "stored as MONOCHROME1.", "CR", "chest"),
        ("CT_small.dcm", "ct_small.dcm", "Small axial CT slice (128x128), values in Hounsfield "
         "units.", "CT", None),
        ("MR2_UNCR.dcm", "mr_shoulder.dcm", "T1-weighted spin-echo MR image of the shoulder "
         "(1024x1024).", "MR", "shoulder"),
        ("US1_UNCR.dcm", "ultrasound.dcm", "Colour ultrasound image (small parts), RGB.",
         "US", None),
    ]  # fmt: skip
    rows = []
    for name, target, caption, modality, organ in items:
        shutil.copyfile(get_testdata_file(name), out / target)
        rows.append(
            {
                "image": target, "caption": caption, "modality": modality, "stain": None,
                "organ": organ, "source": f"pydicom-data {name} (synthetic test identifiers)",
                "license": "MIT (pydicom test data)",
            }
        )  # fmt: skip
    return rows


def _nifti_images(out: Path) -> list[dict]:
    import nibabel.testing

    shutil.copyfile(Path(nibabel.testing.data_path) / "anatomical.nii", out / "anatomical.nii")
    return [
        {
            "image": "anatomical.nii",
            "caption": "Low-resolution anatomical MR brain volume (NIfTI, 2 mm voxels) from "
            "nibabel's test data; the middle slice is shown.",
            "modality": "MR", "stain": None, "organ": "brain",
            "source": "nibabel test data anatomical.nii", "license": "MIT (nibabel)",
        }
    ]  # fmt: skip


def make_examples(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    rows = _skimage_images(out) + _he_tile(out) + _dicom_images(out) + _nifti_images(out)
    with open(out / "captions.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=HERE / "images")
    args = parser.parse_args()
    out = make_examples(args.out)
    print(f"wrote {len(list(out.iterdir())) - 1} example images and captions.jsonl to {out}")


if __name__ == "__main__":
    main()
