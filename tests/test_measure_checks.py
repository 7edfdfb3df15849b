"""tools.measure on StarDist's annotated nuclei, kind detection on real samples, plausibility
warnings and the exports (CSV/Parquet table, label TIFF, QuPath GeoJSON).

StarDist's sample images come from its wheel (``tools.measure.sample_data``: ``pip download``
into a cache, stardist is never installed); without network and cache those tests skip.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tools.measure import analyse, measure
from tools.measure.matching import match_objects
from tools.synthetic_cells import synthetic_discs


@pytest.fixture(scope="session")
def stardist():
    import tifffile

    from tools.measure.sample_data import SampleDataUnavailable, stardist_images

    try:
        p = stardist_images()
    except SampleDataUnavailable as e:
        pytest.skip(f"StarDist sample images unavailable: {e}")
    return {k: tifffile.imread(v) for k, v in p.items()}


@pytest.fixture(scope="session")
def stardist_result(stardist):
    return analyse(stardist["img2d"])


def test_stardist_nuclei_meet_the_target_and_beat_the_baselines(stardist, stardist_result):
    from scipy import ndimage as ndi
    from skimage.filters import threshold_otsu

    gt = stardist["mask2d"]
    m = stardist_result.measurement
    assert m.kind == "cells" and m.summary["image_type"] == "fluorescence"
    ours = match_objects(gt, stardist_result.labels, threshold=0.5)
    # 0.91 and -4.5% measured (before the notch cutting and dim recovery: 0.87, -15%)
    assert ours["f1"] >= 0.85 and abs(ours["count_error"]) <= 0.10, ours
    img = ndi.gaussian_filter(stardist["img2d"].astype(np.float32), 1)
    baseline = match_objects(gt, ndi.label(img > threshold_otsu(img))[0], threshold=0.5)
    assert ours["f1"] > baseline["f1"] + 0.2
    assert not any(w.startswith("implausible") for w in m.warnings), m.warnings


def test_a_few_very_bright_nuclei_do_not_capture_the_threshold(stardist):
    img, gt = stardist["img2d"].astype(np.float32), stardist["mask2d"]
    ids = [i for i in np.unique(gt)[1:] if (gt == i).sum() > 150][::20][:6]
    for i in ids:
        img[gt == i] *= 10  # mitotic-like outliers: a global Otsu finds ~5 objects
    res = analyse(img)
    r = match_objects(gt, res.labels, threshold=0.5)
    assert r["f1"] >= 0.85 and abs(r["count_error"]) <= 0.10, r  # 0.89, -5.4% measured


def _disc(shape, centre, radius):
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


def test_touching_discs_are_cut_at_their_notches_and_one_ellipse_is_not():
    from tools.measure.segmentation import split_concave

    shape = (60, 240)  # objects are cut when larger than the field's median: give it singles
    labels = (_disc(shape, (30, 28), 12) | _disc(shape, (30, 48), 12)).astype(np.int32)
    labels[_disc(shape, (30, 100), 12)] = 2
    labels[_disc(shape, (30, 140), 12)] = 3
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    labels[((yy - 30) / 12) ** 2 + ((xx - 200) / 22) ** 2 <= 1] = 4  # one elongated nucleus
    parts = split_concave(labels, radius=12, min_area=20)  # the pair's contact is wide: no neck
    assert parts.max() == 5 and len(np.unique(parts[labels == 1])) == 2
    assert (np.unique(parts[labels == 1], return_counts=True)[1] > 300).all()
    assert (parts[labels == 4] == 4).all()


def test_a_dim_nucleus_beside_a_bright_one_is_kept_and_a_halo_is_not():
    from tools.measure.segmentation import dim_neighbours

    shape = (60, 80)
    bright, dim = _disc(shape, (30, 25), 10), _disc(shape, (30, 46), 10)
    signal = np.where(bright, 1.0, 0.0) + np.where(dim, 0.25, 0.0)
    merged = (bright | dim).astype(np.int32)  # one watershed region
    refined = bright.astype(np.int32)  # what refine_objects keeps (> 0.5 x the peak)
    got = dim_neighbours(merged, refined, signal, radius=10, threshold=0.1, min_area=20)
    assert got.max() == 1 and (got > 0)[dim].mean() > 0.9
    halo = _disc(shape, (30, 25), 13) & ~bright  # a 3 px ring at the threshold level
    ring = dim_neighbours((bright | halo).astype(np.int32), refined, np.where(halo, 0.12, signal),
                          radius=10, threshold=0.1, min_area=20)  # fmt: skip
    assert ring.max() == 0


def test_dim_objects_below_the_threshold_are_flagged():
    truth = synthetic_discs(60, seed=21, noise=0.02)
    img = truth.image.copy()
    img[: img.shape[0] // 2] *= 0.15  # half the field ~7x dimmer: a global threshold drops it
    m = measure(img)
    # Known limit: the dim half is not counted (adding blobs above noise would also count the
    # faint structures around skimage's cell), but the result says it is likely low.
    assert m.count < 45 and any("dim objects" in w for w in m.warnings), (m.count, m.warnings)


def test_good_results_carry_no_plausibility_warning():
    m = measure(synthetic_discs(80, seed=5).image)
    assert m.count == 80 and not any("implausible" in w or "two groups" in w for w in m.warnings)


def test_bimodal_sizes_and_one_huge_object_are_flagged():
    small = synthetic_discs(60, radius=(4, 5), seed=1, size=400, touching_fraction=0)
    large = synthetic_discs(25, radius=(16, 18), seed=2, size=400, touching_fraction=0)
    m = measure(np.maximum(small.image, large.image))
    assert any("two groups" in w for w in m.warnings), m.warnings
    img = np.zeros((200, 200), np.float32)
    img[20:150, 20:150] = 1.0  # 42% of the field, one blob
    img += np.random.default_rng(0).normal(0, 0.02, img.shape).astype(np.float32)
    big = measure(img)
    assert big.count == 1 and any("one object covers" in w for w in big.warnings)


# ------------------------------------------------------------------ what the image is


def test_kinds_of_real_samples():
    from skimage import data

    assert measure(data.immunohistochemistry()).kind == "ihc"
    assert measure(data.cell()).summary["counting_applies"] is True
    fundus = measure(data.retina())
    assert fundus.kind == "fundus" and fundus.count is None
    assert fundus.summary["counting_applies"] is False
    assert any("cell counting does not apply" in w for w in fundus.warnings)
    for photo in (data.astronaut(), data.chelsea(), data.coffee()):
        m = measure(photo)
        assert m.kind == "unknown" and m.count is None and m.summary["counting_applies"] is False
    forced = measure(data.retina(), kind="cells")  # the user can still insist
    assert forced.kind == "cells" and forced.count is not None


def test_radiology_says_counting_does_not_apply():
    from pydicom.data import get_testdata_file

    m = measure(get_testdata_file("CT_small.dcm"))
    assert m.summary["counting_applies"] is False and m.summary["image_type"] == "radiology"


# ------------------------------------------------------------------ exports


def test_exports_table_labels_geojson(tmp_path):
    import pandas as pd
    import tifffile

    truth = synthetic_discs(30, seed=8)
    m = measure(
        truth.image, pixel_size_um=0.5, objects_path=tmp_path / "cells.csv",
        labels_path=tmp_path / "labels.tif", geojson_path=tmp_path / "cells.geojson",
    )  # fmt: skip
    table = pd.read_csv(tmp_path / "cells.csv")
    assert len(table) == m.count == 30
    assert {"id", "row_px", "col_px", "x_um", "y_um", "area_um2", "equivalent_diameter_um"} <= set(
        table.columns
    )
    assert table["area_um2"].mean() == pytest.approx(m.summary["area"]["mean"], rel=1e-3)
    labels = tifffile.imread(tmp_path / "labels.tif")
    assert labels.shape == truth.image.shape and labels.max() == 30
    with tifffile.TiffFile(tmp_path / "labels.tif") as tif:
        x_res = tif.pages[0].tags["XResolution"].value
        assert x_res[0] / x_res[1] == pytest.approx(2.0)  # pixels per um
    gj = json.loads((tmp_path / "cells.geojson").read_text())
    assert gj["type"] == "FeatureCollection" and len(gj["features"]) == 30
    f = gj["features"][0]
    assert f["geometry"]["type"] == "Polygon" and f["properties"]["objectType"] == "detection"
    ring = np.array(f["geometry"]["coordinates"][0])
    assert (ring[0] == ring[-1]).all()
    # The polygon encloses the object's area (shoelace) and sits on its centroid (x=col, y=row).
    x, y = ring[:, 0], ring[:, 1]
    area = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    row = table.iloc[0]
    assert area == pytest.approx(row["area_um2"] / 0.25, rel=0.15)
    assert x.mean() == pytest.approx(row["col_px"] + 0.5, abs=2)
    assert m.params["exports"]["geojson"].endswith("cells.geojson")
    measure(truth.image, objects_path=tmp_path / "cells.parquet")
    assert "area_px2" in pd.read_parquet(tmp_path / "cells.parquet").columns


def test_ihc_exports_carry_dab_classes_and_h_score_thresholds(tmp_path):
    from skimage import data

    m = measure(data.immunohistochemistry(), geojson_path=tmp_path / "ihc.geojson")
    assert m.summary["h_score_thresholds_od"] == {"1+": 0.04, "2+": 0.08, "3+": 0.15}
    assert "ring" in m.summary["h_score_basis"]
    gj = json.loads((tmp_path / "ihc.geojson").read_text())
    names = {f["properties"]["classification"]["name"] for f in gj["features"]}
    assert names <= {"DAB 0", "DAB 1+", "DAB 2+", "DAB 3+"} and len(names) >= 3


def test_cli_writes_exports(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from litevlm.cli import app

    path = tmp_path / "cells.png"
    Image.fromarray((synthetic_discs(20, seed=3).image * 255).astype(np.uint8)).save(path)
    res = CliRunner().invoke(
        app, ["measure", str(path), "--objects", str(tmp_path / "o.csv"), "--labels",
              str(tmp_path / "l.tif"), "--geojson", str(tmp_path / "g.geojson"), "--table"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert all((tmp_path / n).is_file() for n in ("o.csv", "l.tif", "g.geojson"))
    res = CliRunner().invoke(app, ["measure", str(path), "--objects", str(tmp_path / "o.xlsx")])
    assert res.exit_code != 0


# ------------------------------------------------------------------ cellpose backend


@pytest.mark.slow
def test_cellpose_backend_with_a_network_saved_and_loaded_back(tmp_path, monkeypatch):
    # No weights can be downloaded: a Cellpose network initialised here, saved, and loaded back
    # by name from the model directory proves the backend end to end (its masks are untrained).
    pytest.importorskip("cellpose")
    import torch
    from cellpose.resnet_torch import CPnet

    from litevlm.config import MeasureConfig
    from litevlm.errors import MeasurementError

    torch.manual_seed(0)
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path))
    with pytest.raises(MeasurementError, match="never downloaded"):
        measure(synthetic_discs(5, seed=1).image, settings=MeasureConfig(backend="cellpose"))
    net = CPnet([2, 32, 64, 128, 256], 3, sz=3, diam_mean=30.0)
    net.save_model(str(tmp_path / "tinytorch_0"))
    cfg = MeasureConfig(backend="cellpose", cellpose_model="tiny", cellpose_diameter_px=20)
    truth = synthetic_discs(10, seed=4)
    res = analyse(truth.image, settings=cfg)
    m = res.measurement
    assert m.params["backend"] == "cellpose" and m.params["cellpose_weights"] == "tinytorch_0"
    assert res.labels.shape == truth.image.shape and m.count == int(res.labels.max())
    assert m.summary["counting_applies"] is True


def test_overlay_comes_with_downloadable_exports(tmp_path):
    from litevlm.config import MeasureConfig
    from tools.measure.exports import sidecar_paths

    img = synthetic_discs(12, seed=6).image
    m = measure(img, overlay_path=tmp_path / "ov.png")
    side = sidecar_paths(m.overlay_path)
    assert all(p.is_file() for p in side.values()) and side["geojson"].name == "ov.geojson"
    quiet = measure(img, overlay_path=tmp_path / "q.png",
                    settings=MeasureConfig(exports_with_overlay=False))  # fmt: skip
    assert not any(p.exists() for p in sidecar_paths(quiet.overlay_path).values())
