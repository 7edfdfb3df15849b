"""The chat UI as a researcher feels it: page load, first streamed token, finished answer.

Everything runs for real, in one run: ``litevlm chat`` in a subprocess (SQLite persistence in a
temporary data directory), Debian's Chromium driven by Playwright, the agent with the tiny
random PaliGemma built locally (the hub is offline here; ``--model`` for a real checkpoint),
scikit-image measurement, a LanceDB index of sample images (classical embedder) and the local
literature fixture server.

1. Page load: navigation to the first screen with the disclaimer shown (the socket session is
   then ready), cold (first visit) and warm (reloads); median of N; in the page's clock (the
   navigation's start to the DOM commit that shows it; Playwright's view, whose waits poll at
   up to 500 ms intervals, is kept as ``*_wall_s``).
2. A scripted turn: attach scikit-image's ``cell`` as PNG, ask "Describe this image. How many
   cells are there?"; time from the click on send to the first streamed answer token and to
   the finished answer (stop button gone), in the page's own clock (the click event, the DOM
   commit; Playwright's view, which adds its pre-click checks and polling, is kept in the JSON
   as ``*_wall_s``). The first turn after a start is cold (the models load); then R warm
   turns, each in a new chat. A literature-only question is timed too. Playwright's own share
   of its view is measured on a page that answers at once (``instrument_floor``).
3. Baseline, same run: the agent's own time for each of those turns (``Answer.timings.total``,
   read from the UI's database). Browser time minus agent time is what the UI adds (socket,
   rendering, persistence, the upload's loading and preview).
4. With ``--baseline REV``: the same measures against the app of another git revision (its
   whole tree, exported to a temporary folder), served beside this one in the same run, the
   warm turns interleaved (this, baseline, this, ...) so that both see the same load; the
   table gives the UI's share of both and their ratio.

    .venv/bin/python benchmarks/ui.py            # prints a table, writes results/ui.json
    .venv/bin/python benchmarks/ui.py --repeats 5 --baseline main
    .venv/bin/python benchmarks/ui.py --repeats 5 --model google/paligemma-3b-mix-224
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sqlite3
import statistics
import subprocess
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

# In the page's own clock: the click event on send, and the first DOM commit at which the
# answer has text (first token) and the turn is over (the stop button gone). Playwright's own
# timing adds its pre-click checks (tens of ms: the button must be stable for two frames) and
# its polling interval; this one does not. textContent, not innerText: no forced layout.
PAGE_TIMER_JS = """(n) => {
  const t = window.__turnTimes = {};
  const answer = () => {
    const m = document.querySelectorAll("[data-step-type='assistant_message']");
    if (m.length <= n) return null;
    const text = m[m.length - 1].textContent.trim();
    return text.length > 0 && !/^Image \\d+: /.test(text) ? text : null;
  };
  const check = () => {
    if (t.click === undefined) return;
    const now = performance.now();
    if (t.first === undefined && answer() !== null) t.first = now;
    if (t.done === undefined && t.first !== undefined && !document.querySelector("#stop-button")) {
      t.done = now;
      observer.disconnect();
    }
  };
  const observer = new MutationObserver(check);
  observer.observe(document.body, {subtree: true, childList: true, characterData: true,
                                   attributes: true});
  document.addEventListener("click", (e) => {
    if (t.click === undefined && e.target.closest("#chat-submit")) t.click = performance.now();
  }, {capture: true});
}"""


# The page's own clock for a page load: performance.now() is 0 at the navigation's start; the
# first DOM commit that shows the welcome message with its disclaimer (an init script: it runs
# in every new document before the page's own scripts).
WELCOME_TIMER_JS = """(() => {
  const shown = () => [...document.querySelectorAll("[data-step-type='assistant_message']")]
    .some((m) => m.textContent.includes("Research use only"));
  const observer = new MutationObserver(() => {
    if (shown()) {
      window.__welcomeAt = performance.now();
      observer.disconnect();
    }
  });
  observer.observe(document, {subtree: true, childList: true, characterData: true});
})();"""

# A page with the chat's composer that answers at once: Playwright's clock on it is the
# instrument's own share (its pre-click checks, input events, polls, round trips).
INSTANT_PAGE = """<!doctype html><html><body>
<textarea id="chat-input"></textarea><button id="chat-submit">send</button><div id="chat"></div>
<script>
document.getElementById("chat-submit").addEventListener("click", () => {
  const m = document.createElement("div");
  m.dataset.stepType = "assistant_message";
  m.textContent = "The answer.";
  document.getElementById("chat").append(m);
});
</script></body></html>"""
INSTANT_URL = "http://instrument.invalid/thread/0"


def ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


def page_load(page: Any, url: str) -> dict[str, float]:
    """The page's clock and Playwright's for one load (``page`` has WELCOME_TIMER_JS)."""
    from ui_fixtures import open_chat

    t0 = time.perf_counter()
    open_chat(page, url)
    wall = time.perf_counter() - t0
    page.wait_for_function("() => window.__welcomeAt !== undefined", timeout=60_000)
    return {"s": page.evaluate("() => window.__welcomeAt") / 1000, "wall_s": wall}


def instrument_floor(page: Any, repeats: int) -> list[float]:
    """Playwright's clock, as ``timed_turn`` takes it, on a page that answers the click at
    once: what its view adds to any turn."""
    from ui_fixtures import ASSISTANT

    page.route(INSTANT_URL, lambda r: r.fulfill(body=INSTANT_PAGE, content_type="text/html"))
    out = []
    for _ in range(repeats):
        page.goto(INSTANT_URL)
        page.fill("#chat-input", QUESTION)
        page.wait_for_selector("#chat-submit:not([disabled])")
        out.append(click_and_wait(page, page.locator(ASSISTANT).count())[1])
    return out


def click_and_wait(page: Any, n: int) -> tuple[float, float]:
    """Click send; Playwright's clock to the first answer token and to the turn's end."""
    from ui_fixtures import wait_idle

    t0 = time.perf_counter()
    page.click("#chat-submit")
    page.wait_for_function(FIRST_TOKEN_JS, arg=n, timeout=600_000, polling=20)
    first = time.perf_counter() - t0
    wait_idle(page, n, timeout_ms=600_000)
    return first, time.perf_counter() - t0


def timed_turn(page: Any, url: str, question: str, image: Path | None) -> dict[str, float]:
    from ui_fixtures import ASSISTANT, attach, open_chat

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
    page.evaluate(PAGE_TIMER_JS, n)
    first, done = click_and_wait(page, n)
    page.wait_for_function("() => window.__turnTimes.done !== undefined", timeout=60_000)
    t = page.evaluate("() => window.__turnTimes")
    return {
        "upload_s": upload_s,
        "first_token_s": (t["first"] - t["click"]) / 1000,
        "answer_s": (t["done"] - t["click"]) / 1000,
        # Playwright's view: from the call to click to its polls seeing the end.
        "first_token_wall_s": first,
        "answer_wall_s": done,
    }


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


def export_revision(rev: str, dest: Path) -> Path:
    """The tree of git revision ``rev`` in ``dest`` (for a baseline server)."""
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def run_turns(pages: dict[str, Any], urls: dict[str, str], repeats: int, image: Path) -> dict:
    """Page loads and turns on each server, interleaved; the measures of each, by label."""
    out: dict[str, dict[str, Any]] = {k: {"warm_loads": [], "warm": []} for k in pages}
    for k, page in pages.items():
        out[k]["cold_load"] = page_load(page, urls[k])
    for _ in range(repeats):
        for k, page in pages.items():
            out[k]["warm_loads"].append(page_load(page, urls[k]))
    for k, page in pages.items():
        out[k]["cold"] = timed_turn(page, urls[k], QUESTION, image)
    for _ in range(repeats):
        for k, page in pages.items():
            out[k]["warm"].append(timed_turn(page, urls[k], QUESTION, image))
    for k, page in pages.items():
        out[k]["lit"] = timed_turn(page, urls[k], LIT_QUESTION, None)
    return out


def summarise(m: dict[str, Any], db: Path) -> dict[str, Any]:
    """Add the agent's own time to each turn; the rows of the table."""
    cold, warm, lit_turn = m["cold"], m["warm"], m["lit"]
    for turn, total in zip([cold, *warm, lit_turn], agent_totals(db), strict=False):
        turn["agent_s"] = total
        turn["ui_overhead_s"] = turn["answer_s"] - total
        turn["ui_overhead_wall_s"] = turn["answer_wall_s"] - total

    def med(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    m["rows"] = [
        ("page load, cold", m["cold_load"]["s"], None),
        ("page load, warm (median)", med(m["warm_loads"], "s"), None),
        ("  the same, Playwright's clock", med(m["warm_loads"], "wall_s"), None),
        ("upload + preview of cell.png (warm median)", med(warm, "upload_s"), None),
        ("cold turn: first token", cold["first_token_s"], None),
        ("cold turn: finished answer", cold["answer_s"], cold.get("agent_s")),
        ("warm turn: first token (median)", med(warm, "first_token_s"), None),
        ("warm turn: finished answer (median)", med(warm, "answer_s"), med(warm, "agent_s")),
        ("warm turn: UI's share (median of turns)", med(warm, "ui_overhead_s"), None),
        ("  the same, Playwright's clock", med(warm, "ui_overhead_wall_s"), None),
        ("  Playwright's clock, a page answering at once", m["floor"], None),
        ("literature turn: first token", lit_turn["first_token_s"], None),
        ("literature turn: finished answer", lit_turn["answer_s"], lit_turn.get("agent_s")),
    ]
    m["agent_share_warm"] = med(warm, "agent_s") / med(warm, "answer_s")
    m["agent_share_cold"] = cold["agent_s"] / cold["answer_s"]
    return m


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="warm turns and page reloads")
    ap.add_argument("--model", default=None, help="vision model (default: tiny, built here)")
    ap.add_argument(
        "--baseline", default=None, help="git revision to serve beside this tree and compare"
    )
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
    trees = {"this tree": ROOT}
    if args.baseline:
        trees[f"baseline {args.baseline}"] = export_revision(args.baseline, tmp / "baseline")

    with serve_fixtures() as lit:
        env = agent_env(Path(model), lit.config(sources=["pubmed", "arxiv"]), tmp / "lancedb")
        if args.model:
            env["LITEVLM_VISION__LOCAL_FILES_ONLY"] = "false"
        servers: dict[str, Any] = {}
        start_s: dict[str, float] = {}
        try:
            for i, (label, tree) in enumerate(trees.items()):
                t0 = time.perf_counter()
                tree_env = {**env, "PYTHONPATH": str(tree)}
                servers[label] = UIServer(tmp / f"ui-data-{i}", tree_env, repo=tree).start()
                start_s[label] = time.perf_counter() - t0
            with sync_playwright() as p:
                browser = launch_chromium(p)
                pages = {
                    k: browser.new_page(viewport={"width": 1280, "height": 1000}) for k in servers
                }
                for page in pages.values():
                    page.add_init_script(WELCOME_TIMER_JS)
                urls = {k: s.url for k, s in servers.items()}
                measures = run_turns(pages, urls, args.repeats, samples["cell"])
                floor = instrument_floor(browser.new_page(), max(args.repeats, 5))
                browser.close()
        finally:
            for server in servers.values():
                server.stop()
    for i, label in enumerate(trees):
        measures[label]["server_start_s"] = start_s[label]
        measures[label]["floor"] = statistics.median(floor)
        summarise(measures[label], tmp / f"ui-data-{i}" / "ui" / "chainlit.db")

    labels = list(trees)
    print(f"\nUI benchmark ({platform.node()}, {os.cpu_count()} CPUs, model {model})")
    header = f"{'measure':46} {'browser ms':>11} {'agent ms':>9} {'UI adds':>8}"
    if len(labels) > 1:
        header += f" {'baseline':>9} {'UI adds':>8} {'ratio':>6}"
    print(header)
    this = measures[labels[0]]
    base = measures[labels[1]] if len(labels) > 1 else None
    print(f"{'server start (litevlm chat -> /health)':46} {ms(this['server_start_s']):>11}")
    for j, (name, value, agent) in enumerate(this["rows"]):
        line = f"{name:46} {ms(value):>11}"
        ui_adds = value - agent if agent is not None else None
        line += f" {ms(agent):>9} {ms(ui_adds):>8}" if ui_adds is not None else " " * 19
        if base is not None:
            b_value, b_agent = base["rows"][j][1], base["rows"][j][2]
            b_ui = b_value - b_agent if b_agent is not None else None
            line += f" {ms(b_value):>9}"
            line += f" {ms(b_ui):>8} {b_ui / ui_adds:>5.1f}x" if ui_adds else f" {'':8}"
            if not ui_adds and "share" in name:
                line += f" {b_value / value:>5.1f}x"
        print(line.rstrip())
    for label in labels:
        m = measures[label]
        print(
            f"{label}: agent share of the finished answer: cold {m['agent_share_cold']:.0%}, "
            f"warm {m['agent_share_warm']:.0%} (the rest is the UI: socket, rendering, "
            "persistence)"
        )

    def record(m: dict[str, Any]) -> dict[str, Any]:
        return {
            "server_start_s": m["server_start_s"],
            "page_load_cold_s": m["cold_load"]["s"],
            "page_load_cold_wall_s": m["cold_load"]["wall_s"],
            "page_load_warm_s": [x["s"] for x in m["warm_loads"]],
            "page_load_warm_wall_s": [x["wall_s"] for x in m["warm_loads"]],
            "cold_turn": m["cold"],
            "warm_turns": m["warm"],
            "literature_turn": m["lit"],
            "ui_share_warm_median_s": statistics.median(t["ui_overhead_s"] for t in m["warm"]),
            "ui_share_warm_median_wall_s": statistics.median(
                t["ui_overhead_wall_s"] for t in m["warm"]
            ),
            "agent_share_cold": m["agent_share_cold"],
            "agent_share_warm": m["agent_share_warm"],
        }

    result = {
        "machine": {"node": platform.node(), "cpus": os.cpu_count()},
        "model": model,
        "repeats": args.repeats,
        # Playwright's clock on a page that answers at once (its own share of *_wall_s).
        "instrument_floor_wall_s": floor,
        **record(this),
    }
    if base is not None:
        result["baseline"] = {"revision": args.baseline, **record(base)}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
