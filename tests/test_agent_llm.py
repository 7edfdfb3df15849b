"""The agent with a REAL language model: Qwen2.5-Coder-0.5B-Instruct behind llama.cpp's server.

Not a scripted fake: the model plans with the real tool schemas (raw llama.cpp writes its tool
calls as bare JSON in the content, which ``agent.toolcalls`` reads) and writes the answer from
the numbered sources, and the verify step checks every sentence. Whatever the small model does,
every answer must be grounded (each sentence cites a source that exists), carry no diagnosis,
and no injected payload may reach it. ``litevlm synth-qa`` runs on the example captions with
the same model; every pair it keeps must parse and be answerable from its caption.

Marked ``llm`` and ``slow``: ``pytest -m "not llm"`` skips them; the fixture skips with the
reason when xllamacpp or the model packages are missing. ``benchmarks/grounding.py`` runs the
same checks over more questions and reports the scores and fallback rates.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from llm_fixtures import LLMServer
from test_agent import assert_grounded

pytestmark = [pytest.mark.llm, pytest.mark.slow]

ROOT = Path(__file__).resolve().parent.parent
# A header fact, a measurement and an identifier question: CI runs a real 0.5B model on 2 CPU
# cores, so the suite stays under its time budget; `python benchmarks/grounding.py --all` runs
# every question of the answer benchmark in both modes.
QUESTIONS = ("kvp-cr", "count-ihc", "id-name-ct")


@pytest.fixture(scope="module")
def benchmarks_on_path():
    sys.path.append(str(ROOT / "benchmarks"))  # last: benchmarks/agent.py must not shadow agent/
    yield
    sys.path.remove(str(ROOT / "benchmarks"))


def test_answer_benchmark_questions_in_llm_mode(llm_server: LLMServer, benchmarks_on_path):
    from grounding import answer_benchmark

    report = answer_benchmark(llm_server, set(QUESTIONS))
    rules, llm = report["rules"], report["llm"]
    assert llm["total"] == rules["total"] == len(QUESTIONS)
    for case in llm["cases"]:
        assert "Error" not in case["why"], case  # a crash is never an answer
        assert not any(w in case["answer"].lower() for w in ("diagnosis is", "should start"))
    # The identifier is withheld in every mode, whatever the model writes.
    assert next(c for c in llm["cases"] if c["id"] == "id-name-ct")["passed"]
    rates = report["fallback_rates"]
    assert set(rates) == {"route", "route_added", "replaced", "completed", "rules_answer"}
    out = ROOT / "artifacts" / "tests"
    out.mkdir(parents=True, exist_ok=True)
    (out / "grounding_llm.json").write_text(json.dumps(report, indent=2, default=str))


def test_real_model_answers_are_grounded_and_injections_inert(llm_server: LLMServer, tmp_path):
    from literature_fixtures import serve_fixtures
    from redteam_fixtures import leaked
    from test_redteam import QUESTION, _serve

    from agent.assistant import Assistant
    from litevlm.config import load_settings

    with serve_fixtures() as lit:
        _serve(lit, "wikipedia")
        settings = load_settings(
            data_dir=tmp_path / "data",
            literature=lit.config(sources=["wikipedia"], max_results=50).model_dump(),
            agent={
                "checkpointer": ":memory:",
                "literature_max": 50,
                "chat_model": llm_server.model,
                "base_url": llm_server.base_url,
            },
        )
        with Assistant(settings) as assistant:
            answer = assistant.ask(QUESTION)
    assert not leaked(answer.text + " ".join(s.title + s.snippet for s in answer.sources))
    assert_grounded(answer)


def test_synth_qa_with_the_real_model_on_the_example_captions(llm_server: LLMServer, tmp_path):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        from make_examples import make_examples
    finally:
        sys.path.remove(str(ROOT / "examples"))
    from agent.grounding import check, source_support
    from litevlm.types import Source

    folder = make_examples(tmp_path / "examples")
    captions = folder / "captions.jsonl"
    # three captions keep the test within CI's budget (one model call each on 2 CPU cores)
    lines = [x for x in captions.read_text().splitlines() if x.strip()]
    captions.write_text("\n".join(lines[:3]) + "\n")
    out = tmp_path / "qa.jsonl"
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LITEVLM_AGENT__BASE_URL": llm_server.base_url,
        "LITEVLM_AGENT__MAX_TOKENS": "256",
    }
    cmd = [sys.executable, "-m", "litevlm", "synth-qa", str(captions), "-o", str(out)]
    cmd += ["--chat-model", llm_server.model, "--per-caption", "1"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(x) for x in captions.read_text().splitlines() if x.strip()]
    pairs = [json.loads(x) for x in out.read_text().splitlines() if x.strip()]
    assert pairs and {p["image"] for p in pairs} <= {r["image"] for r in rows}
    for p in pairs:
        assert p["question"].strip() and p["answer"].strip() and p["synthetic"] is True
        caption = Source(kind="case", id=p["image"], title="", snippet=p["source_caption"])
        assert check(p["answer"], source_support([caption]), p["question"]) is None, p
    summary = json.loads(done.stdout)
    assert summary["pairs"] == len(pairs)
