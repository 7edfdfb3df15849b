"""The chat UI in a real browser: Debian's Chromium driven by Playwright, against the real app
(``litevlm chat`` in a subprocess) with the real agent, the tiny vision model, the local
literature fixture server and a temporary data directory. Screenshots of each step go to
``artifacts/tests/ui/``.
"""

from __future__ import annotations

import csv
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from literature_fixtures import serve_fixtures
from playwright.sync_api import expect
from ui_fixtures import (
    ASSISTANT,
    CHROMIUM,
    UIServer,
    agent_env,
    attach,
    login,
    open_chat,
    send,
    wait_idle,
    write_samples,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)",
    ),
]

VIEW = {"width": 1280, "height": 1000}


@pytest.fixture(scope="module")
def lit():
    with serve_fixtures() as server:
        yield server


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> dict[str, Path]:
    return write_samples(tmp_path_factory.mktemp("ui_samples"))


@pytest.fixture(scope="module")
def app_env(tmp_path_factory, tiny_paligemma, lit) -> dict[str, str]:
    from agent_fixtures import build_case_index

    from litevlm.config import load_settings

    root = tmp_path_factory.mktemp("ui_cases")
    settings = load_settings(
        data_dir=root / "data",
        retrieval={"uri": str(root / "lancedb"), "embedder": "classical:color-texture-v1"},
    )
    build_case_index(root / "cases", settings)
    return agent_env(
        tiny_paligemma, lit.config(sources=["pubmed", "arxiv"]), Path(settings.retrieval.uri)
    )


@pytest.fixture(scope="module")
def shots(artifacts_dir: Path) -> Path:
    folder = artifacts_dir / "ui"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _last_answer(page) -> str:
    return page.locator(ASSISTANT).last.inner_text()


def _export(data_dir: Path, out: Path) -> list[dict[str, str]]:
    """The CSV that ``litevlm feedback export`` writes (the CLI itself: tests/test_ui.py)."""
    from litevlm.config import load_settings
    from ui.data_layer import database_url
    from ui.feedback import export_feedback

    export_feedback(database_url(load_settings(data_dir=data_dir)), out)
    with open(out, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def app(app_env, tmp_path_factory):
    """One app for the ordered tests below; ``restart()`` keeps its data directory."""
    data_dir = tmp_path_factory.mktemp("ui_app") / "data"
    state: dict = {"data_dir": data_dir, "server": UIServer(data_dir, app_env).start()}

    def restart() -> UIServer:
        state["server"].stop()
        state["server"] = UIServer(data_dir, app_env).start()
        return state["server"]

    state["restart"] = restart
    yield state
    state["server"].stop()


def test_upload_png_and_dicom_ask_and_follow_up(app, browser, samples, shots):
    page = browser.new_page(viewport=VIEW)
    open_chat(page, app["server"].url)
    expect(page.get_by_text("not a medical device").first).to_be_visible()
    page.screenshot(path=shots / "01-first-screen.png")

    # A real microscopy image as PNG: shown back with its metadata, then answered.
    assert attach(page, samples["cell"]) == 200
    n = send(page, "Describe this image. How many cells are there?")
    wait_idle(page, n)
    expect(page.get_by_text("Image 1: cell.png")).to_be_visible()
    for tool in ("vision", "measure", "similar"):
        assert page.locator(f"[id^='step-{tool}']").count() >= 1, tool
    answer = _last_answer(page)
    assert "Sources" in answer and "[1]" in answer
    overlay = page.locator(f"{ASSISTANT} img[alt='overlay']")
    assert overlay.count() == 1 and overlay.first.evaluate("i => i.naturalWidth") > 0
    heat = page.locator(f"{ASSISTANT} img[alt='attention']")  # the heat-map switch is on
    assert heat.count() == 1 and heat.first.evaluate("i => i.naturalWidth") > 0
    assert "/thread/" in page.url
    app["thread_url"] = page.url
    page.locator("[id^='step-measure']").first.click()
    page.screenshot(path=shots / "02-answer-steps-sources-overlay.png")

    # A follow-up in the same thread; the literature fixtures give linked sources (a topic their
    # abstracts address: papers that do not address the question are left out of answers).
    n = send(page, "What is known about the heme irons of flavocytochrome C552 in the literature?")
    wait_idle(page, n)
    links = page.locator(f"{ASSISTANT} a[href*='pubmed.ncbi.nlm.nih.gov'], a[href*='arxiv']")
    assert links.count() >= 1
    page.screenshot(path=shots / "03-follow-up-literature.png")

    # A real DICOM: windowed, de-identified metadata, no patient identifier anywhere.
    assert attach(page, samples["ct"]) == 200
    n = send(page, "Describe this image.")
    wait_idle(page, n)
    expect(page.get_by_text("Image 2: CT_small.dcm")).to_be_visible()
    body = page.inner_text("body")
    assert "HU" in body and "CompressedSamples" not in body and "1CT1" not in body
    page.get_by_text("metadata-2").last.click()  # the full table opens beside the chat
    page.wait_for_selector("text=MONOCHROME2", timeout=10_000)
    page.screenshot(path=shots / "04-dicom.png")
    app["page"] = page


def test_feedback_is_stored_and_exported(app, tmp_path, shots, tiny_paligemma):
    page = app["page"]
    page.locator(".positive-feedback-off").last.click()
    page.get_by_placeholder("Your feedback...").fill("clear and well cited")
    with page.expect_response(lambda r: r.url.endswith("/feedback")) as resp:
        page.get_by_role("button", name="Submit feedback").click()
    assert resp.value.ok
    page.screenshot(path=shots / "05-feedback.png")
    rows = _export(app["data_dir"], tmp_path / "feedback.csv")
    assert len(rows) == 1
    row = rows[0]
    assert row["value"] == "1" and row["comment"] == "clear and well cited"
    assert row["vision_model"] == str(tiny_paligemma) and row["chat_model"] == "rules"
    assert row["thread_id"] in app["thread_url"] and row["user"] == "local"
    page.close()


def _copies(data_dir: Path, name: str) -> set[tuple[int, int]]:
    """Distinct files on disk (device, inode) under the data directory whose name ends so."""
    return {(p.stat().st_dev, p.stat().st_ino) for p in data_dir.rglob(f"*{name}") if p.is_file()}


# Waits on conditions, never on seconds: generous limits for a loaded 2-core CI machine.
LOADED_MS = 300_000


def test_bad_uploads_get_a_message_and_the_server_keeps_serving(app, browser, samples, shots):
    page = browser.new_page(viewport=VIEW)
    open_chat(page, app["server"].url, timeout_ms=LOADED_MS)
    assert attach(page, samples["corrupt"]) == 200
    n = send(page, "What is in this image?")
    wait_idle(page, n, timeout_ms=LOADED_MS)
    expect(page.get_by_text("corrupt.png could not be read")).to_be_visible(timeout=LOADED_MS)
    page.screenshot(path=shots / "06-corrupt-upload.png")
    open_chat(page, app["server"].url, timeout_ms=LOADED_MS)  # a new chat on the same server
    assert attach(page, samples["notes"]) == 200
    n = send(page, "And this one?")
    wait_idle(page, n, timeout_ms=LOADED_MS)
    expect(page.get_by_text("notes.txt: unsupported file type")).to_be_visible(timeout=LOADED_MS)
    page.screenshot(path=shots / "06-unsupported-upload.png")
    # Rejected uploads leave nothing behind; an accepted one is one file on disk.
    assert _copies(app["data_dir"], "corrupt.png") == set()
    assert _copies(app["data_dir"], "notes.txt") == set()
    assert len(_copies(app["data_dir"], "cell.png")) == 1
    # The same server and session go on answering.
    n = send(page, "What is known about magnetic studies of flavocytochrome?")
    wait_idle(page, n, timeout_ms=LOADED_MS)
    expect(page.locator(ASSISTANT).last).to_contain_text("[1]", timeout=LOADED_MS)
    page.screenshot(path=shots / "07-after-bad-uploads.png")
    page.close()


def test_restart_resumes_the_thread_with_its_history(app, browser, shots):
    server = app["restart"]()
    page = browser.new_page(viewport=VIEW)
    open_chat(page, server.url)
    page.locator("#thread-history").get_by_text("Describe this image. How many").click()
    page.wait_for_selector("text=Image 2: CT_small.dcm", timeout=30_000)
    expect(page.get_by_text("Image 1: cell.png")).to_be_visible()
    assert page.locator("[id^='step-vision']").count() >= 1
    assert page.locator(f"{ASSISTANT} img[alt='overlay']").count() >= 1
    page.screenshot(path=shots / "08-resumed-after-restart.png")
    # The same question about the same image: the agent reuses its checkpointed results.
    n = send(page, "Describe this image.")
    wait_idle(page, n)
    assert "[1]" in _last_answer(page)
    page.screenshot(path=shots / "09-resumed-follow-up.png")
    page.close()


def _status(url: str, method: str = "GET", body: bytes | None = None) -> int:
    req = urllib.request.Request(url, method=method, data=body)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_auth_refuses_wrong_password_and_keeps_threads_apart(browser, app_env, tmp_path, shots):
    users = {"alice": "alice-pass-1", "bob": "bob-pass-2"}
    env = {**app_env, "LITEVLM_UI__AUTH": "true", "LITEVLM_UI__USERS": json.dumps(users)}
    with UIServer(tmp_path / "ui-data", env) as server:
        threads = json.dumps({"pagination": {"first": 20}, "filter": {}}).encode()
        assert _status(server.url + "/project/threads", "POST", threads) == 401
        assert _status(server.url + "/litevlm/files/x/y/z.png") == 401

        alice = browser.new_context(viewport=VIEW)
        page = alice.new_page()
        login(page, server.url, "alice", "not-her-password")
        page.wait_for_selector("text=/unable to sign in|unauthorized/i", timeout=15_000)
        assert "/login" in page.url
        page.screenshot(path=shots / "10-wrong-password.png")
        login(page, server.url, "alice", users["alice"])
        page.wait_for_selector(f"{ASSISTANT} >> text=Research use only", timeout=30_000)
        n = send(page, "What is known about magnetic studies of flavocytochrome?")
        wait_idle(page, n)
        alice_thread = page.url
        page.wait_for_selector("#thread-history >> text=What is known about magnetic")
        page.screenshot(path=shots / "11-alice.png")

        bob = browser.new_context(viewport=VIEW)
        page_b = bob.new_page()
        login(page_b, server.url, "bob", users["bob"])
        page_b.wait_for_selector(f"{ASSISTANT} >> text=Research use only", timeout=30_000)
        page_b.wait_for_timeout(1000)
        assert page_b.locator("#thread-history").get_by_text("nuclei").count() == 0
        thread_id = alice_thread.rstrip("/").rsplit("/", 1)[-1]
        got = page_b.request.get(f"{server.url}/project/thread/{thread_id}")
        assert got.status in (401, 403, 404)
        page_b.screenshot(path=shots / "12-bob-sees-no-alice-thread.png")
        alice.close()
        bob.close()
