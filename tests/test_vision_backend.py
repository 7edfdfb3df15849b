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


def _memo_probe(data_dir: Path, cache: Path) -> dict:
    """Load the default model in a fresh process, offline, with an empty Hugging Face cache."""
    import os
    import subprocess
    import sys

    code = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from litevlm.config import VisionConfig\n"
        "from litevlm.errors import ModelLoadError\n"
        "from tools.vision_backend import load_backend, memo_in\n"
        "try:\n"
        f"    load_backend(VisionConfig(), memo_in(Path({str(data_dir)!r})))\n"
        "except ModelLoadError as e:\n"
        "    print(json.dumps({'error': str(e), 'torch': 'torch' in sys.modules}))\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_missing_weights_found_out_once_then_answered_from_the_memo(tmp_path: Path) -> None:
    """`litevlm ask` without PaliGemma: known without importing torch, and the next process
    is answered from the memo; once the model is in the cache, it is tried again."""
    from tools.vision_backend import _hub_cache_state, memo_in

    cache = tmp_path / "hub"
    first = _memo_probe(tmp_path, cache)
    assert "not in the local Hugging Face cache" in first["error"] and not first["torch"]
    second = _memo_probe(tmp_path, cache)  # a new process: the memo answers
    assert "remembered from an earlier try" in second["error"] and not second["torch"]
    assert len(memo_in(tmp_path).entries()) == 1

    # the model arrives in the cache: another memo key, so it is tried again at once
    snap = cache / "models--google--paligemma-3b-mix-448"
    (snap / "refs").mkdir(parents=True)
    (snap / "refs" / "main").write_text("0" * 40)
    (snap / "snapshots" / ("0" * 40)).mkdir(parents=True)
    (snap / "snapshots" / ("0" * 40) / "config.json").write_text("{}")
    import os

    os.environ["HF_HUB_CACHE"], old = str(cache), os.environ.get("HF_HUB_CACHE")
    try:
        import huggingface_hub.constants as c

        saved, c.HF_HUB_CACHE = c.HF_HUB_CACHE, str(cache)
        assert _hub_cache_state(VisionConfig()) == "cached"
    finally:
        c.HF_HUB_CACHE = saved
        if old is None:
            os.environ.pop("HF_HUB_CACHE")
        else:
            os.environ["HF_HUB_CACHE"] = old


def test_doctor_reports_and_clears_the_memo(tmp_path: Path) -> None:
    from litevlm.commands.vision import _clear_vision_memo
    from tools.vision_backend import memo_in

    memo_in(tmp_path).put("local|x", "x: weights are not in the local Hugging Face cache")
    check = _clear_vision_memo(tmp_path)
    assert check.status == "warn" and "not in the local Hugging Face cache" in check.detail
    assert memo_in(tmp_path).entries() == {}
    assert _clear_vision_memo(tmp_path).status == "ok"


@pytest.mark.slow
def test_agent_eval_and_describe_use_the_server(
    vision_server: VisionServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """The Toolbox, evaluation and `litevlm describe` on `[vision] backend = "openai"`; the
    heat-map says plainly that a server gives no attention maps."""
    from agent.tools.toolbox import Toolbox
    from finetune.evaluate.vision import answer_batch, device_of, load_vision_model
    from litevlm.config import load_settings
    from litevlm.errors import LiteVLMError
    from tools.images import load_image

    vision = {
        "backend": "openai", "base_url": vision_server.base_url, "model": "google/paligemma-tiny",
        "served_model": vision_server.model, "max_new_tokens": 4,
    }  # fmt: skip
    s = load_settings(vision=vision, data_dir=tmp_path)
    tb = Toolbox(s)
    _image().save(tmp_path / "ihc.png")
    loaded = load_image(tmp_path / "ihc.png")
    res = tb.vision(loaded, "what stain is used?")
    assert res.text and res.prompt == "answer en what stain is used?"
    with pytest.raises(LiteVLMError, match="not available from a server backend"):
        tb.heatmap(loaded, "what stain?", tmp_path / "h.png")

    vm = load_vision_model(vision_server.model, s)
    assert isinstance(vm, OpenAIVisionBackend) and device_of(vm) == "server"
    out = answer_batch(vm, [_image()] * 2, ["any cells?", ""], prompt=None)
    assert [r.prompt for r in out] == ["answer en any cells?", "caption en"]
    out = answer_batch(vm, [_image()], ["any cells?"], prompt="Q: {question} A:")
    assert out[0].prompt == "Q: any cells? A:" and out[0].tokens > 0

    from typer.testing import CliRunner

    from litevlm.cli import app

    env = {f"LITEVLM_VISION__{k.upper()}": str(v) for k, v in vision.items()}
    r = CliRunner().invoke(app, ["describe", str(tmp_path / "ihc.png"), "--json"], env=env)
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout[r.stdout.index("{") :])
    assert got["model_id"] == vision_server.model and got["prompt"] == "describe en"
