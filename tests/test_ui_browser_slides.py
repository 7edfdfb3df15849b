"""Slides and per-word attention in the chat, in a real browser (Debian's Chromium, Playwright)
against the real app with the real agent and a tiny vision model that emits text
(``varied_paligemma``): the real CMU SVS uploaded, its thumbnail shown (never its label or
macro), a region typed and one clicked, each with its density heat-map; then a question about
the region and a word of the vision model's answer picked, its attention map shown with its
attention-on-objects score. Screenshots go to ``artifacts/tests/ui/``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from literature_fixtures import serve_fixtures
from playwright.sync_api import expect
from slide_fixtures import cmu_svs  # noqa: F401
from ui_fixtures import (
    ASSISTANT,
    CHROMIUM,
    UIServer,
    agent_env,
    attach,
    launch_chromium,
    open_chat,
    send,
    wait_idle,
)
from vision_fixtures import varied_paligemma  # noqa: F401

pytestmark = [
    pytest.mark.browser,
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]

VIEW = {"width": 1280, "height": 1000}
LOADED_MS = 300_000  # conditions, not seconds: generous for a loaded 2-core machine
# What the CMU SVS's properties and associated images carry that must never be shown: the
# scanning user, original file name, scan date, image and scanner ids.
SVS_IDENTIFIERS = ("b414003d-95c6-48b0-9369-8010ed517ba7", "CMU-1", "12/29/09", "1004486",
                   "CPAPERIOCS")  # fmt: skip


@pytest.fixture(scope="module")
def server(tmp_path_factory, varied_paligemma):  # noqa: F811
    from agent_fixtures import build_case_index

    from litevlm.config import load_settings

    root = tmp_path_factory.mktemp("ui_slides")
    settings = load_settings(
        data_dir=root / "data",
        retrieval={"uri": str(root / "lancedb"), "embedder": "classical:color-texture-v1"},
    )
    build_case_index(root / "cases", settings)
    with serve_fixtures() as lit:
        env = agent_env(
            varied_paligemma, lit.config(sources=["pubmed"]), Path(settings.retrieval.uri)
        )
        with UIServer(root / "app", env) as ui:
            yield ui


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        page = browser.new_page(viewport=VIEW)
        open_chat(page, server.url)
        yield page
        browser.close()


def _act(page, button) -> None:
    """Click an action button and wait for its callback to have run (the request returns when
    it has); the action's answer is then on its way through the socket."""
    button.scroll_into_view_if_needed()
    with page.expect_response(lambda r: "/project/action" in r.url, timeout=LOADED_MS) as resp:
        button.click()
    assert resp.value.ok, resp.value.text()


def _img_ok(locator) -> bool:
    """The last matching image has loaded (waits for it; a new image may still be on its way)."""
    if locator.count() < 1:
        return False
    locator.last.scroll_into_view_if_needed()  # the chat's images load lazily
    locator.page.wait_for_function(
        "i => i.complete && i.naturalWidth > 0", arg=locator.last.element_handle()
    )
    return True


def test_slide_upload_thumbnail_typed_and_clicked_regions(page, cmu_svs, artifacts_dir):  # noqa: F811
    shots = artifacts_dir / "ui"
    shots.mkdir(parents=True, exist_ok=True)
    assert attach(page, cmu_svs) == 200
    n = send(page, "region 800,1200,512,512")  # the upload and a typed region together
    wait_idle(page, n, timeout_ms=LOADED_MS)
    expect(page.get_by_text("Slide 1: cmu_small_region.svs")).to_be_visible()
    thumb = page.locator("img[alt='slide thumbnail']")
    expect(thumb).to_have_count(1)
    page.wait_for_function("i => i.naturalWidth > 0", arg=thumb.element_handle())
    # The thumbnail has the slide's shape (2220 x 2967), not the label's or the macro's.
    w, h = thumb.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert abs(w / h - 2220 / 2967) < 0.01
    expect(page.get_by_text("Region 800,1200,512,512 of slide 1")).to_be_visible()
    assert _img_ok(page.locator(f"{ASSISTANT} img[alt='heatmap']"))
    assert "per mm²" in page.locator(ASSISTANT).last.inner_text()
    page.screenshot(path=shots / "20-slide-typed-region.png")

    # A click on the thumbnail picks the square around the point.
    n = page.locator(ASSISTANT).count()
    box = thumb.bounding_box()
    thumb.click(position={"x": box["width"] * 0.5, "y": box["height"] * 0.75})
    wait_idle(page, n, timeout_ms=LOADED_MS)
    expect(page.locator(ASSISTANT).last).to_contain_text("of slide 1")
    assert page.locator(f"{ASSISTANT} img[alt='heatmap']").count() == 2
    assert _img_ok(page.locator(f"{ASSISTANT} img[alt='heatmap']"))
    page.screenshot(path=shots / "21-slide-clicked-region.png")
    body = page.inner_text("body")
    assert not [s for s in SVS_IDENTIFIERS if s in body]


def test_question_on_the_region_and_a_word_of_the_answer(page, artifacts_dir):
    n = send(page, "What stain is this?")  # header and vision only: quick
    wait_idle(page, n, timeout_ms=LOADED_MS)
    assert page.locator("[id^='step-vision']").count() >= 1
    open_words = page.get_by_role("button", name="Where did the model look, per word?")
    expect(open_words.last).to_be_visible()
    _act(page, open_words.last)
    expect(page.get_by_text("Pick a word:").last).to_be_visible(timeout=LOADED_MS)
    words = page.locator(f"{ASSISTANT}").last.get_by_role("button")
    assert words.count() >= 1, page.locator(ASSISTANT).last.inner_text()
    word = words.first.inner_text().strip()
    _act(page, words.first)
    expect(page.get_by_text(f"“{word}”: where the vision model looked")).to_be_visible(
        timeout=LOADED_MS
    )
    assert _img_ok(page.locator(f"{ASSISTANT} img[alt='attention-{word}']"))
    expect(page.locator(ASSISTANT).last).to_contain_text("attention on objects")
    page.screenshot(path=artifacts_dir / "ui" / "22-attention-per-word.png")
    body = page.inner_text("body")
    assert not [s for s in SVS_IDENTIFIERS if s in body]


def test_dicom_wsi_instances_together_are_one_slide_and_all_tissue_heatmap(page, artifacts_dir):
    from slide_fixtures import DICOM_WSI

    files = sorted(DICOM_WSI.glob("*.dcm"))
    with page.expect_response(lambda r: "/project/file" in r.url, timeout=LOADED_MS):
        page.set_input_files("#upload-button-input", [str(f) for f in files])
    n = send(page, "region 800,1200,512,512")  # waits for the uploads; the latest slide
    wait_idle(page, n, timeout_ms=LOADED_MS)
    expect(page.get_by_text("Slide 4: instance0.dcm")).to_be_visible()
    expect(page.get_by_text("Region 800,1200,512,512 of slide 4")).to_be_visible()
    assert page.locator("img[alt='slide thumbnail']").count() == 2
    assert page.locator(f"{ASSISTANT} img[alt='heatmap']").count() == 3
    page.screenshot(path=artifacts_dir / "ui" / "23-dicom-wsi.png")
    # The first slide's all-tissue heat-map, from the action on its message.
    _act(page, page.get_by_role("button", name="Density heat-map of all tissue").first)
    expect(page.get_by_text("All tissue of slide 1")).to_be_visible(timeout=LOADED_MS)
    expect(page.locator(f"{ASSISTANT} img[alt='heatmap']")).to_have_count(4)
    assert _img_ok(page.locator(f"{ASSISTANT} img[alt='heatmap']"))
    page.screenshot(path=artifacts_dir / "ui" / "24-all-tissue-heatmap.png")
