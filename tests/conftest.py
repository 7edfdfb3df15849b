"""Fixtures shared across areas. Area-specific fixtures live in tests/<area>_fixtures.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# One real LLM server per test session: a fixture imported into several modules would be a
# separate "session" fixture in each, and start a server each.
pytest_plugins = ["llm_fixtures"]

# Tests never touch the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts" / "tests"


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Where tests save files a person may want to look at (overlays, screenshots)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def tiny_paligemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Directory of a tiny random PaliGemma (model, trained tokenizer, processor), seed 0.

    Loads with the real code: ``AutoModelForImageTextToText`` / ``AutoProcessor``
    ``.from_pretrained(dir)`` or ``tools.vision.VisionModel(model=str(dir))``.
    """
    from tools.tiny_models import build_tiny_paligemma

    return build_tiny_paligemma(tmp_path_factory.mktemp("tiny_paligemma"), seed=0)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright, one per test module (tests/ui_fixtures.py)."""
    from playwright.sync_api import sync_playwright
    from ui_fixtures import launch_chromium

    with sync_playwright() as p:
        b = launch_chromium(p)
        yield b
        b.close()


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch) -> None:
    """Every test gets its own data directory and no user config file."""
    monkeypatch.setenv("LITEVLM_DATA_DIR", str(tmp_path_factory.mktemp("data")))
    monkeypatch.delenv("LITEVLM_CONFIG", raising=False)
