"""A real OpenAI-compatible vision server for tests: ``transformers serve`` (transformers' own
server) on 127.0.0.1 serving a tiny random PaliGemma built here (``tools.tiny_models``), with a
chat template so the server can turn ``image_url`` messages into PaliGemma's input."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

# PaliGemma has no chat template; the server needs one: the image first, then the prompt.
CHAT_TEMPLATE = (
    "{% for m in messages %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>"
    "{% endif %}{% endfor %}{% for c in m['content'] %}{% if c['type'] == 'text' %}"
    "{{ c['text'] }}{% endif %}{% endfor %}{% endfor %}"
)
START_TIMEOUT_S = 300


@dataclass(frozen=True)
class VisionServer:
    base_url: str  # http://127.0.0.1:PORT/v1
    model: str  # the served model's name (the checkpoint directory)


def build_served_tiny_vlm(out: Path) -> Path:
    from transformers import AutoProcessor

    from tools.tiny_models import build_tiny_paligemma

    path = build_tiny_paligemma(out, seed=0, init_std=1.0)  # varied text, not one token
    processor = AutoProcessor.from_pretrained(path)
    processor.chat_template = CHAT_TEMPLATE
    processor.save_pretrained(path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_vision_server(model_dir: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = _free_port()
    exe = Path(sys.executable).with_name("transformers")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen(
        [str(exe), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port),
         "--device", "cpu"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:  # the condition (health 200), not a number of seconds
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("transformers serve did not become healthy")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def vision_server(tmp_path_factory) -> Iterator[VisionServer]:
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        pytest.skip("transformers serve needs fastapi and uvicorn: pip install -e '.[ui]'")
    model_dir = build_served_tiny_vlm(tmp_path_factory.mktemp("served_vlm"))
    proc, url = start_vision_server(model_dir)
    try:
        yield VisionServer(base_url=f"{url}/v1", model=str(model_dir))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
