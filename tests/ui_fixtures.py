"""Fixtures for the UI tests and benchmark: the real app in a subprocess, Chromium, helpers.

``UIServer`` starts ``python -m litevlm chat`` on 127.0.0.1 (a free port) with its own data
directory and settings from the environment, exactly as a user would, and stops it.
``launch_chromium`` drives Debian's Chromium through Playwright (never a downloaded browser).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class UIServer:
    """``litevlm chat`` in a subprocess; ``start()`` returns once ``/health`` answers."""

    def __init__(
        self,
        data_dir: Path,
        env: dict[str, str] | None = None,
        log: Path | None = None,
        repo: Path = REPO,
    ):
        self.data_dir = data_dir
        self.repo = repo  # whose code it runs (``python -m`` puts the working directory first)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env or {}
        self.log = log or data_dir / "server.log"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 90.0) -> UIServer:
        env = {**os.environ, **self.env, "LITEVLM_DATA_DIR": str(self.data_dir)}
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log, "ab")  # noqa: SIM115 - handed to the child
        cmd = [sys.executable, "-m", "litevlm", "chat", "--host", "127.0.0.1"]
        self.proc = subprocess.Popen(
            [*cmd, "--port", str(self.port)], cwd=self.repo, env=env, stdout=out, stderr=out
        )
        out.close()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"litevlm chat exited early:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"litevlm chat did not start in {timeout_s} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def __enter__(self) -> UIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def launch_chromium(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


# ---------------------------------------------------------------- page helpers (Playwright)

COMPOSER = "#chat-input"
ASSISTANT = "[data-step-type='assistant_message']"


def open_chat(page: Any, url: str, timeout_ms: int = 60_000) -> None:
    """Open the app and wait for the welcome message: the socket session is then ready."""
    page.goto(url)
    page.wait_for_selector(f"{ASSISTANT} >> text=Research use only", timeout=timeout_ms)


def login(page: Any, url: str, username: str, password: str) -> None:
    page.goto(url + "/login")
    page.fill("#email", username)
    page.fill("#password", password)
    page.click("button[type='submit']")


def attach(page: Any, path: Path) -> int:
    """Attach a file in the composer; return the upload's HTTP status."""
    with page.expect_response(
        lambda r: "/project/file" in r.url and r.request.method == "POST", timeout=120_000
    ) as info:
        page.set_input_files("#upload-button-input", str(path))
    return info.value.status


def send(page: Any, text: str) -> int:
    """Type and send a message; return how many assistant messages there were before."""
    page.fill(COMPOSER, text)
    page.wait_for_selector("#chat-submit:not([disabled])", timeout=120_000)
    before = page.locator(ASSISTANT).count()
    # The button can turn disabled again for a while (the chat still taking in the last turn's
    # end on a loaded machine): the click waits for it to be enabled, as long as the rest waits.
    page.click("#chat-submit", timeout=120_000)
    return before


# The stop button appears only once Chainlit has seen the thread's first interaction, which can
# come after the uploaded image's own message, or, on a loaded machine, after a fast turn's end;
# the chat then moves to /thread/<id>, and text typed before that move can be lost. So the last
# message must be past the image's, and the chat at its thread's address.
_TURN_ENDED = """(n) => {
  const m = [...document.querySelectorAll("[data-step-type='assistant_message']")];
  return m.length > n && !document.querySelector("#stop-button")
    && location.pathname.startsWith("/thread/")
    && !/^Image \\d+: /.test(m[m.length - 1].innerText.trim());
}"""


def wait_idle(page: Any, before: int, timeout_ms: int = 120_000) -> None:
    """Wait for the turn to end: a new assistant message is there and the stop button (shown
    while the app works) is gone."""
    page.wait_for_function(_TURN_ENDED, arg=before, timeout=timeout_ms, polling=50)


def assistant_texts(page: Any) -> list[str]:
    return page.locator(ASSISTANT).all_inner_texts()


def settings_env(section: str, values: dict[str, Any]) -> dict[str, str]:
    """``LITEVLM_<SECTION>__<KEY>`` variables for a settings section (JSON for non-strings)."""
    return {
        f"LITEVLM_{section.upper()}__{key.upper()}": v if isinstance(v, str) else json.dumps(v)
        for key, v in values.items()
        if v is not None
    }


def agent_env(vision_model: Path, literature: Any, retrieval_uri: Path) -> dict[str, str]:
    """Environment for the app: tiny vision model on CPU, local literature, a local case index."""
    env = settings_env(
        "vision",
        {
            "model": str(vision_model),
            "device": "cpu",
            "dtype": "float32",
            "max_new_tokens": 4,
            "local_files_only": True,
        },
    )
    env |= settings_env(
        "retrieval", {"uri": str(retrieval_uri), "embedder": "classical:color-texture-v1"}
    )
    env |= settings_env("literature", literature.model_dump(mode="json"))
    return env


def write_samples(folder: Path) -> dict[str, Path]:
    """Real images (scikit-image's cell, pydicom-data's CT) and two bad uploads."""
    import shutil

    import numpy as np
    import pydicom.data
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    cell = folder / "cell.png"
    Image.fromarray(np.asarray(data.cell(), dtype=np.uint8)).save(cell)
    ct = folder / "CT_small.dcm"
    shutil.copyfile(pydicom.data.get_testdata_file("CT_small.dcm"), ct)
    corrupt = folder / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 8)
    notes = folder / "notes.txt"
    notes.write_text("a text file is not an image\n")
    return {"cell": cell, "ct": ct, "corrupt": corrupt, "notes": notes}
