"""The chat UI as a researcher feels it: page load, first streamed token, finished answer.

Everything runs for real, in one run: ``litevlm chat`` in a subprocess (SQLite persistence in a
temporary data directory), Debian's Chromium driven by Playwright, the agent with the tiny
random PaliGemma built locally (the hub is offline here; ``--model`` for a real checkpoint),
scikit-image measurement, a LanceDB index of sample images (classical embedder) and the local
literature fixture server.

1. Page load: navigation to the first screen with the disclaimer shown (the socket session is
   then ready), cold (first visit) and warm (reloads); median of N.
2. A scripted turn: attach scikit-image's ``cell`` as PNG, ask "Describe this image. How many
   cells are there?"; time from the click on send to the first streamed answer token and to
   the finished answer (stop button gone). The first turn after a start is cold (the models
   load); then R warm turns, each in a new chat. A literature-only question is timed too.
3. Baseline, same run: the agent's own time for each of those turns (``Answer.timings.total``,
   read from the UI's database). Browser time minus agent time is what the UI adds (socket,
   rendering, persistence, the upload's loading and preview).

    .venv/bin/python benchmarks/ui.py            # prints a table, writes results/ui.json
    .venv/bin/python benchmarks/ui.py --repeats 5 --model google/paligemma-3b-mix-224
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).resolve().parent / "results" / "ui.json"
QUESTION = "Describe this image. How many cells are there?"
LIT_QUESTION = "What is known about nuclei segmentation in microscopy?"

FIRST_TOKEN_JS = """(n) => {
  const m = [...document.querySelectorAll("[data-step-type='assistant_message']")];
  if (m.length <= n) return false;
  const t = m[m.length - 1].innerText.trim();
  return t.length > 0 && !t.startsWith("Image ");
}"""


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def page_load(page: Any, url: str) -> float:
    from ui_fixtures import open_chat

    t0 = time.perf_counter()
    open_chat(page, url)
    return time.perf_counter() - t0


def timed_turn(page: Any, url: str, question: str, image: Path | None) -> dict[str, float]:
    from ui_fixtures import ASSISTANT, attach, open_chat, wait_idle

    open_chat(page, url)
    upload_s = 0.0
    if image is not None:
        t0 = time.perf_counter()
        attach(page, image)
        upload_s = time.perf_counter() - t0
    page.fill("#chat-input", question)
    page.wait_for_selector("#chat-submit:not([disabled])")
    # Messages already there, plus the image's own message that the upload will add.
    n = page.locator(ASSISTANT).count() + (1 if image is not None else 0)
    t0 = time.perf_counter()
    page.click("#chat-submit")
    page.wait_for_function(FIRST_TOKEN_JS, arg=n, timeout=600_000, polling=20)
    first = time.perf_counter() - t0
    wait_idle(page, n, timeout_ms=600_000)
    done = time.perf_counter() - t0
    return {"upload_s": upload_s, "first_token_s": first, "answer_s": done}


def agent_totals(db: Path) -> list[float]:
    """``Answer.timings.total`` of each answer, in order (the app stores it on the message)."""
    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT metadata FROM steps WHERE type = 'assistant_message' "
            "AND metadata LIKE '%\"timings\"%' ORDER BY createdAt"
        ).fetchall()
    finally:
        con.close()
    return [json.loads(r[0])["timings"].get("total", float("nan")) for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="warm turns and page reloads")
    ap.add_argument("--model", default=None, help="vision model (default: tiny, built here)")
    args = ap.parse_args()

    from agent_fixtures import build_case_index
    from literature_fixtures import serve_fixtures
    from playwright.sync_api import sync_playwright
    from ui_fixtures import CHROMIUM, UIServer, agent_env, launch_chromium, write_samples

    from litevlm.config import load_settings
    from tools.tiny_models import build_tiny_paligemma

    if not CHROMIUM.exists():
        sys.exit("needs Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium)")
    tmp = Path(tempfile.mkdtemp(prefix="litevlm-bench-ui-"))
    model = args.model or str(build_tiny_paligemma(tmp / "tiny", seed=0))
    samples = write_samples(tmp / "samples")
    settings = load_settings(
        data_dir=tmp / "cases-data",
        retrieval={"uri": str(tmp / "lancedb"), "embedder": "classical:color-texture-v1"},
    )
    build_case_index(tmp / "cases", settings)

    with serve_fixtures() as lit:
        env = agent_env(Path(model), lit.config(sources=["pubmed", "arxiv"]), tmp / "lancedb")
        if args.model:
            env["LITEVLM_VISION__LOCAL_FILES_ONLY"] = "false"
        t0 = time.perf_counter()
        server = UIServer(tmp / "ui-data", env).start()
        server_start_s = time.perf_counter() - t0
        try:
            with sync_playwright() as p:
                browser = launch_chromium(p)
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                cold_load = page_load(page, server.url)
                warm_loads = [page_load(page, server.url) for _ in range(args.repeats)]
                cold = timed_turn(page, server.url, QUESTION, samples["cell"])
                warm = [
                    timed_turn(page, server.url, QUESTION, samples["cell"])
                    for _ in range(args.repeats)
                ]
                lit_turn = timed_turn(page, server.url, LIT_QUESTION, None)
                browser.close()
        finally:
            server.stop()
    totals = agent_totals(tmp / "ui-data" / "ui" / "chainlit.db")
    turns = [cold, *warm, lit_turn]
    for turn, total in zip(turns, totals, strict=False):
        turn["agent_s"] = total
        turn["ui_overhead_s"] = turn["answer_s"] - total

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    table = [
        ("server start (litevlm chat -> /health)", server_start_s, None),
        ("page load, cold", cold_load, None),
        ("page load, warm (median)", statistics.median(warm_loads), None),
        ("upload + preview of cell.png (warm median)", med(warm, "upload_s"), None),
        ("cold turn: first token", cold["first_token_s"], None),
        ("cold turn: finished answer", cold["answer_s"], cold.get("agent_s")),
        ("warm turn: first token (median)", med(warm, "first_token_s"), None),
        ("warm turn: finished answer (median)", med(warm, "answer_s"), med(warm, "agent_s")),
        ("literature turn: first token", lit_turn["first_token_s"], None),
        ("literature turn: finished answer", lit_turn["answer_s"], lit_turn.get("agent_s")),
    ]
    print(f"\nUI benchmark ({platform.node()}, {os.cpu_count()} CPUs, model {model})")
    print(f"{'measure':46} {'browser ms':>11} {'agent ms':>9} {'UI adds':>8}")
    for name, value, agent in table:
        extra = f"{ms(agent):>9} {ms(value - agent):>8}" if agent is not None else ""
        print(f"{name:46} {ms(value):>11} {extra}")
    warm_share = med(warm, "agent_s") / med(warm, "answer_s")
    cold_share = cold["agent_s"] / cold["answer_s"]
    print(
        f"\nagent share of the finished answer: cold {cold_share:.0%}, warm {warm_share:.0%} "
        f"(the rest is the UI: socket, rendering, persistence)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {"node": platform.node(), "cpus": os.cpu_count()},
                "model": model,
                "repeats": args.repeats,
                "server_start_s": server_start_s,
                "page_load_cold_s": cold_load,
                "page_load_warm_s": warm_loads,
                "cold_turn": cold,
                "warm_turns": warm,
                "literature_turn": lit_turn,
                "agent_share_cold": cold_share,
                "agent_share_warm": warm_share,
            },
            indent=2,
        )
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
