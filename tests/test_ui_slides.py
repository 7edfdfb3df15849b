"""The chat's slide and per-word attention helpers (ui/slides.py, ui/attention.py) on the real
CMU SVS and the committed DICOM WSI; the browser side is tests/test_ui_browser_slides.py."""

from __future__ import annotations

import base64
import io
import shutil
from types import SimpleNamespace

import pytest
from PIL import Image
from slide_fixtures import DICOM_WSI, cmu_svs  # noqa: F401
from vision_fixtures import varied_paligemma  # noqa: F401

from litevlm.config import load_settings
from litevlm.errors import ImageLoadError
from tools.images import load_image
from ui import attention, slides


def test_region_command_is_parsed_with_an_optional_question():
    cmd = slides.parse_command
    assert cmd("region 800,1200,1024,1024") == slides.RegionCommand("800,1200,1024,1024")
    assert cmd("Region: 1, 2, 30, 40@2 how many nuclei?") == slides.RegionCommand(
        "1,2,30,40@2", "how many nuclei?"
    )
    assert cmd("region 5,6,7,8 of slide 3: is it dense?") == slides.RegionCommand(
        "5,6,7,8", "is it dense?", 3
    )
    assert cmd("what region is this?") is None
    assert cmd("region of interest") is None


def test_slide_shows_its_thumbnail_only_with_its_scale(cmu_svs):  # noqa: F811
    loaded = load_image(cmu_svs)
    assert slides.is_slide(loaded)
    text = slides.slide_summary("cmu.svs", 1, loaded.metadata["slide"])
    assert "2220 x 2967 px" in text and "0.499 µm/px" in text and "20x" in text
    props = slides.thumbnail_props(loaded, 1)
    assert (props["width"], props["height"], props["box"]) == (2220, 2967, 1024)
    jpeg = base64.b64decode(props["src"].split(",", 1)[1])
    w, h = Image.open(io.BytesIO(jpeg)).size
    # the slide's shape: not the label (387 x 463) nor the macro (1280 x 431)
    assert max(w, h) == slides.THUMB_JPEG_PX and abs(w / h - 2220 / 2967) < 0.01


def test_region_is_measured_with_a_heatmap_and_kept_with_its_pixel_size(cmu_svs, tmp_path):  # noqa: F811
    res = slides.measure_region(
        cmu_svs, "800,1200,512,512", tmp_path, "2-region", load_settings(data_dir=tmp_path)
    )
    assert res.region == "800,1200,512,512" and res.downsample == 1.0
    assert res.heatmap and res.heatmap.is_file()
    assert "per mm²" in res.text and "255 x 255 µm" in res.text
    crop = load_image(res.crop)
    assert crop.image.size == (512, 512)
    assert crop.pixel_size_mm == pytest.approx((0.000499, 0.000499))


def test_a_region_outside_the_slide_is_one_line(cmu_svs, tmp_path):  # noqa: F811
    settings = load_settings(data_dir=tmp_path)
    with pytest.raises(ImageLoadError, match="outside the slide"):
        slides.measure_region(cmu_svs, "2000,2900,512,512", tmp_path, "r", settings)
    with pytest.raises(ValueError, match="no area"):
        slides.measure_region(cmu_svs, "1,2,0,5", tmp_path, "r", settings)


def test_dicom_wsi_instances_uploaded_together_are_one_slide(tmp_path):
    uploads = []
    for p in sorted(DICOM_WSI.glob("*.dcm")):
        copy = tmp_path / "upload" / p.name
        copy.parent.mkdir(exist_ok=True)
        shutil.copyfile(p, copy)
        assert slides.is_dicom_slide_file(copy, p.name)
        uploads.append((copy, p.name))
    folder = slides.store_dicom_slide(uploads, tmp_path / "thread" / "1-dicom-slide")
    loaded = load_image(folder)
    assert slides.is_slide(loaded) and loaded.metadata["slide"]["width"] > 1000


def test_content_words_and_the_server_backend_line():
    words = ["The", "nuclei", "are", "dense", "nuclei", "in", "3", "stroma"]
    assert attention.content_words(words) == ["nuclei", "dense", "stroma"]
    calls = attention.VisionCalls()
    calls.see(SimpleNamespace(type="step_start", name="vision", input={"image": "a.png"}))
    calls.see(SimpleNamespace(type="step_start", name="measure", input={"image": "a.png"}))
    assert len(calls.calls) == 1
    msg = SimpleNamespace(content="answer", actions=[])
    attention.offer(msg, calls, [{"n": 1, "name": "a.png"}], "openai")
    assert "not available from a server backend" in msg.content and not msg.actions
    msg = SimpleNamespace(content="answer", actions=[])
    attention.offer(msg, attention.VisionCalls(), [{"n": 1, "name": "a.png"}], "local")
    assert msg.content == "answer" and not msg.actions  # no vision call: nothing to offer


def test_the_per_word_action_names_the_image_and_the_vision_call():
    calls = attention.VisionCalls()
    call = {"image": "b.png", "question": "Is it dense?", "model": "m", "adapter": None}
    calls.see(SimpleNamespace(type="step_start", name="vision", input=call))
    msg = SimpleNamespace(content="answer", actions=[])
    images = [{"n": 1, "name": "a.png"}, {"n": 2, "name": "b.png"}, {"n": 3, "name": "c.png"}]
    attention.offer(msg, calls, images, "local")
    (action,) = msg.actions
    assert action.name == attention.OPEN_ACTION
    assert action.payload["image"] == 2 and action.payload["question"] == "Is it dense?"


def test_word_attention_is_what_explain_reports(varied_paligemma, cmu_svs):  # noqa: F811
    """The UI's word map is tools.explain's: the word's tokens, scored on the objects."""
    from tools.explain import attention_map, object_mask, objects_sentence, word_attention
    from tools.vision import VisionModel

    vm = VisionModel(model=str(varied_paligemma), device="cpu", dtype="float32")
    image = load_image(cmu_svs).image  # the slide's thumbnail, as the chat gives it
    full = attention_map(vm, image, "What is shown in this image?", max_new_tokens=6)
    mask, n = object_mask(image)
    amap, score = word_attention(full, None, mask, n)
    assert amap is full and score is not None
    assert "attention on objects" in objects_sentence(score.as_dict())
    (w, *_) = attention.content_words(full.words())  # this model's answer has words
    amap, score = word_attention(full, w, mask, n)
    assert amap.word == w and 0 <= score.on_objects <= 1 and amap.grid.shape == full.grid.shape


def test_a_region_replaces_its_slide_in_what_the_assistant_is_given_next():
    images = [
        {"n": 1, "name": "a.png"},
        {"n": 2, "name": "s.svs", "slide": True},
        {"n": 3, "name": "s.svs region 0,0,9,9", "region_of": 2},
    ]
    new = {"n": 4, "name": "s.svs region 5,5,9,9", "region_of": 2}
    assert slides.pending_with_region([*images, new], [1, 2, 3], new) == [1, 4]
    assert slides.latest_slide(images)["n"] == 2 and slides.latest_slide(images, 1) is None


def test_slide_metadata_is_flat_rows(cmu_svs):  # noqa: F811
    rows = slides.slide_metadata(load_image(cmu_svs).metadata)
    assert rows["size (level 0)"] == "2220 x 2967 px" and rows["pixel size"] == "0.499 µm/px"
    assert rows["objective"] == "20x" and rows["pyramid levels"].startswith("0: 2220 x 2967")


def test_all_tissue_is_an_even_sample_with_its_heatmap(cmu_svs, tmp_path):  # noqa: F811
    settings = load_settings(data_dir=tmp_path, measure={"slide_max_tiles": 2})
    heatmap, text = slides.measure_tissue(cmu_svs, tmp_path, "1-tissue", settings)
    assert heatmap is not None and heatmap.is_file()
    assert "counted on 2 tiles" in text and "per mm²" in text and "spread evenly" in text
