"""The vision backends behind one protocol; the OpenAI-compatible one against a real server
(``transformers serve`` with a tiny random PaliGemma on 127.0.0.1)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from pathlib import Path

import pytest
from vision_server_fixtures import VisionServer, vision_server  # noqa: F401

from litevlm.config import VisionConfig
from litevlm.errors import ModelLoadError, ServiceUnavailable
from tools.vision_backend import (
    UnavailableMemo,
    VisionBackend,
    attention_unavailable,
    load_backend,
)
from tools.vision_openai import OpenAIVisionBackend


def _image():
    from PIL import Image
    from skimage import data

    return Image.fromarray(data.immunohistochemistry()).resize((64, 64))


@pytest.mark.slow
def test_openai_backend_against_transformers_serve(vision_server: VisionServer) -> None:  # noqa: F811
    cfg = VisionConfig(
        backend="openai", base_url=vision_server.base_url, model="google/paligemma-tiny",
        served_model=vision_server.model, max_new_tokens=6, concurrency=2,
    )  # fmt: skip
    vm = load_backend(cfg)
    assert isinstance(vm, VisionBackend) and isinstance(vm, OpenAIVisionBackend)
    res = vm.answer(_image(), "how many nuclei?")
    assert res.model_id == vision_server.model and res.tokens > 0 and res.text
    assert res.prompt == "answer en how many nuclei?"  # PaliGemma's prefix, by the served name
    batch = vm.answer_batch([_image()] * 4, ["a?", "b?", "c?", "d?"])
    assert [r.prompt for r in batch] == [f"answer en {q}" for q in "abcd" for q in [q + "?"]]
    assert all(r.tokens > 0 for r in batch)
    assert attention_unavailable(vm) and "server backend" in attention_unavailable(vm)


def test_unreachable_server_is_found_out_once(tmp_path: Path) -> None:
    cfg = VisionConfig(backend="openai", base_url="http://127.0.0.1:9/v1", timeout_s=2)
    memo = UnavailableMemo(tmp_path / "memo.json")
    t0 = time.perf_counter()
    with pytest.raises(ModelLoadError, match="not reachable"):
        load_backend(cfg, memo)
    with pytest.raises(ModelLoadError, match="remembered"):
        load_backend(cfg, memo)  # no second try: answered from the memo
    assert time.perf_counter() - t0 < 10
    assert UnavailableMemo(tmp_path / "memo.json", ttl_s=0).get("x") is None  # expired


def test_missing_base_url_is_one_line() -> None:
    with pytest.raises(ModelLoadError, match="base_url"):
        OpenAIVisionBackend(VisionConfig(backend="openai"))


class _Flaky(http.server.BaseHTTPRequestHandler):
    """Plumbing only: answers 503 (then 429 with Retry-After) before a good answer."""

    calls: list[str] = []  # noqa: RUF012

    def log_message(self, *a) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b'{"data": []}')

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        n = len(self.calls)
        self.calls.append("post")
        if n < 2:
            self.send_response(503 if n == 0 else 429)
            if n == 1:
                self.send_header("Retry-After", "0.1")
            self.end_headers()
            return
        body = {"choices": [{"message": {"content": "ok"}}], "usage": {"completion_tokens": 1}}
        self.send_response(200)
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())


def test_retries_on_429_and_5xx_then_gives_a_clear_error() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    try:
        vm = OpenAIVisionBackend(VisionConfig(backend="openai", base_url=url, model="m"))
        assert vm.describe(_image()).text == "ok" and len(_Flaky.calls) == 3
        _Flaky.calls.clear()
        vm = OpenAIVisionBackend(
            VisionConfig(backend="openai", base_url=url, model="m", max_retries=1)
        )
        with pytest.raises(ServiceUnavailable, match="HTTP 429"):
            vm.describe(_image())
    finally:
        server.shutdown()
