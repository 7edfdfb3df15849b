"""Grounding with a real language model: answer scores, fallbacks and the red-team, per mode.

In one run, against the same sample images and recorded literature as ``benchmarks/answers.py``:

1. The answer benchmark's questions in rules mode (the baseline) and in LLM mode: a real small
   instruct model (Qwen2.5-Coder-0.5B-Instruct GGUF, tests/llm_fixtures.py) behind llama.cpp's
   OpenAI-compatible server on 127.0.0.1 as ``[agent] chat_model`` + ``base_url``. Score =
   "answered with the expected fact and a citation that supports it" (answers.score).
2. Fallback rates in LLM mode: how often the model's plan was empty or invalid and the rules
   routed (``route``), how often the rule plan's tools for the fact asked were added to its plan
   (``route_added``), how often its answer had unsupported sentences that verify left out or
   replaced (``replaced``), how often the tools' sentences for facts it left out were added
   (``completed``), and how often none survived and the rule-based answer was given
   (``rules_answer``).
3. The red-team corpus (tests/redteam_fixtures.py) through the literature tools with the real
   model: injected payloads that reached an answer (must be 0).

    python benchmarks/grounding.py                  # a subset of 12 questions (minutes on CPU)
    python benchmarks/grounding.py --all            # every question (long on a 2-core box)

Writes benchmarks/results/grounding.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))  # answers.py; after the root: benchmarks/agent.py
sys.path.insert(0, str(ROOT / "tests"))  # must not shadow the agent package
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

RESULTS = Path(__file__).resolve().parent / "results" / "grounding.json"
SUBSET = (
    "kvp-cr", "mas-cr", "st-ct", "te-mr1", "ps-mr1", "mod-ct", "count-ihc", "hscore-ihc",
    "pos-ihc-n", "id-name-ct", "lit-tcp", "lit-dl",
)  # fmt: skip
ROUTE_FALLBACK = ("used the rule-based routing", "invalid call", "unknown tool", "cut off")
REPLACED = ("unsupported claim", "cites no source")
RULES_ANSWER = ("gave the rule-based answer", "gave the extractive answer")
ROUTE_ADDED = ("from the rule-based routing",)  # tools for the fact asked, added to its plan
COMPLETED = ("for facts the model's answer left out",)  # the tools' sentences, added


class Recording:
    """An assistant that keeps every answer (the benchmark's run() keeps only the text)."""

    def __init__(self, assistant: Any) -> None:
        self.assistant, self.answers = assistant, []

    def ask(self, *args: Any, **kwargs: Any) -> Any:
        answer = self.assistant.ask(*args, **kwargs)
        self.answers.append(answer)
        return answer

    def close(self) -> None:
        self.assistant.close()


def with_chat_model(settings: Any, base_url: str, model: str, **agent: Any) -> Any:
    update = {"chat_model": model, "base_url": base_url, **agent}
    return settings.model_copy(update={"agent": settings.agent.model_copy(update=update)})


def rates(answers: list[Any]) -> dict[str, float]:
    def share(words: tuple[str, ...]) -> float:
        hits = sum(any(w in x for x in a.warnings for w in words) for a in answers)
        return round(hits / max(1, len(answers)), 3)

    return {
        "route": share(ROUTE_FALLBACK),
        "replaced": share(REPLACED),
        "rules_answer": share(RULES_ANSWER),
        "route_added": share(ROUTE_ADDED),
        "completed": share(COMPLETED),
    }


def answer_benchmark(server: Any, ids: set[str] | None) -> dict[str, Any]:
    """Rules mode and LLM mode on the same questions, with the LLM mode's fallback rates."""
    from answers import run

    from agent.assistant import Assistant

    rules = run("rules", ids=ids, progress=False)
    recorded: list[Recording] = []

    def factory(settings: Any) -> Recording:
        rec = Recording(Assistant(with_chat_model(settings, server.base_url, server.model)))
        recorded.append(rec)
        return rec

    llm = run("llm", factory, ids=ids, progress=True)
    answers = [a for r in recorded for a in r.answers]
    return {"rules": rules, "llm": llm, "fallback_rates": rates(answers)}


def red_team(
    server: Any, kinds: tuple[str, ...] = ("pubmed", "arxiv", "web", "wikipedia")
) -> dict[str, Any]:
    """The corpus' literature texts through the real model; payloads that reached an answer."""
    from literature_fixtures import serve_fixtures
    from redteam_fixtures import by_kind, leaked
    from test_redteam import PROVIDER, QUESTION, _serve

    from agent.assistant import Assistant
    from litevlm.config import load_settings

    out: dict[str, Any] = {"turns": 0, "texts": 0, "leaked": [], "modes": ["rules", "llm"]}
    with serve_fixtures() as lit, tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            for mode in ("rules", "llm"):
                cfg = lit.config(sources=[PROVIDER[kind]], max_results=50)
                settings = load_settings(
                    data_dir=Path(tmp) / f"{kind}-{mode}",
                    literature=cfg.model_dump(),
                    agent={"checkpointer": ":memory:", "literature_max": 50},
                )
                if mode == "llm":
                    settings = with_chat_model(settings, server.base_url, server.model)
                _serve(lit, kind)
                with Assistant(settings) as assistant:
                    answer = assistant.ask(QUESTION)
                shown = answer.text + " ".join(s.title + s.snippet for s in answer.sources)
                out["turns"] += 1
                out["texts"] += len(by_kind(kind))
                out["leaked"] += [f"{mode}/{kind}: {x}" for x in leaked(shown)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true", help="every question, not the subset")
    ap.add_argument("--ids", default="", help="these question ids, comma-separated")
    ap.add_argument("--redteam", default="pubmed,arxiv,web,wikipedia", help="providers; '' none")
    args = ap.parse_args()
    from llm_fixtures import MODEL_NAME, LLMServer, assemble_gguf, start_server, stop_server

    t0 = time.perf_counter()
    gguf = assemble_gguf()
    proc, url = start_server(gguf, threads=os.cpu_count() or 2)
    server = LLMServer(base_url=f"{url}/v1", model=MODEL_NAME, gguf=gguf)
    try:
        ids = {i for i in args.ids.split(",") if i} or (None if args.all else set(SUBSET))
        report = answer_benchmark(server, ids)
        kinds = tuple(k for k in args.redteam.split(",") if k)
        if kinds:
            report["red_team"] = red_team(server, kinds)
    finally:
        stop_server(proc)
    report["seconds"] = round(time.perf_counter() - t0, 1)
    report["machine"] = {"node": platform.node(), "cpus": os.cpu_count()}
    r, m = report["rules"], report["llm"]
    print(f"\ngrounding benchmark ({r['total']} questions, model {MODEL_NAME})")
    print(f"{'mode':<8} {'passed':>6} {'total':>6} {'score':>7}")
    for name, x in (("rules", r), ("llm", m)):
        print(f"{name:<8} {x['passed']:>6} {x['total']:>6} {x['score']:>7.1%}")
    print(f"LLM / rules score ratio: {m['score'] / max(r['score'], 1e-9):.2f}")
    print("LLM-mode fallback rates:", report["fallback_rates"])
    if "red_team" in report:
        rt = report["red_team"]
        print(f"red team: {rt['texts']} injected texts, {rt['turns']} turns, leaked {rt['leaked']}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
