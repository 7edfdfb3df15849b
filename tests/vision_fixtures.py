"""Fixtures for the vision tool: a tiny PaliGemma that emits visible text, LoRA adapters, images.

    from vision_fixtures import make_adapter   # pytest puts tests/ on sys.path

``tiny_paligemma`` (conftest) is the standard-init model, whose untrained output is a repeated
newline; ``varied_paligemma`` uses ``init_std=1.0`` so that different inputs and adapters give
visibly different text, which the batch and adapter tests compare.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def make_adapter(base: Path, out: Path, *, seed: int, r: int = 4) -> Path:
    """A real LoRA adapter (random, non-zero B) for ``base``, saved with peft."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(base)
    torch.manual_seed(seed)
    cfg = LoraConfig(
        r=r, lora_alpha=2 * r, target_modules=["q_proj", "v_proj"], init_lora_weights=False
    )
    get_peft_model(model, cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def varied_paligemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tools.tiny_models import build_tiny_paligemma

    return build_tiny_paligemma(tmp_path_factory.mktemp("varied_paligemma"), init_std=1.0)


@pytest.fixture(scope="session")
def lora_adapters(varied_paligemma: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("adapters")
    return {
        "a1": make_adapter(varied_paligemma, root / "a1", seed=1),
        "a2": make_adapter(varied_paligemma, root / "a2", seed=2),
    }


@pytest.fixture(scope="session")
def cell_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-image's real fluorescence cell image, saved as PNG."""
    from PIL import Image
    from skimage import data

    path = tmp_path_factory.mktemp("images") / "cell.png"
    Image.fromarray(data.cell()).save(path)
    return path


class _Gated(http.server.BaseHTTPRequestHandler):
    """Answers every request the way the hub answers for a gated repo without access."""

    def _refuse(self) -> None:
        self.send_response(401)
        self.send_header("X-Error-Code", "GatedRepo")
        self.send_header("X-Error-Message", "Access to this model is restricted. Please log in.")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _refuse

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def gated_hub() -> Iterator[str]:
    """A local stand-in for huggingface.co (set HF_ENDPOINT to the URL it yields)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Gated)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
