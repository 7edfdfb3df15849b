"""LLM-judged factuality: the rubric's replies parsed, an unreachable judge, and a real local
model (llama.cpp's OpenAI-compatible server) grading an answer file and an evaluation."""

from __future__ import annotations

import json
import socket

import pytest
from llm_fixtures import LLMServer

from finetune.evaluate.judge import Judge, parse_verdict
from litevlm.errors import ServiceUnavailable

ANSWERS = [  # reference, prediction, type: right, wrong, hedged, partly right
    ("is there a pleural effusion?", "yes", "Yes, a small left pleural effusion.", "closed"),
    ("is the heart enlarged?", "no", "Yes, the heart is markedly enlarged.", "closed"),
    ("which side is the fracture on?", "left", "left or right", "closed"),
    ("what organ is shown?", "liver", "The liver.", "open"),
    ("what imaging modality is this?", "MRI", "This is a CT scan of the abdomen.", "open"),
    ("where is the mass?", "right upper lobe", "in the right lung", "open"),
]


def test_parse_verdict():
    v = parse_verdict('```json\n{"verdict": "partially_correct", "errors": 1, "reasons": "x"}\n```')
    assert (v.verdict, v.score, v.errors, v.reasons) == ("partially_correct", 0.5, 1, "x")
    assert parse_verdict("The answer is incorrect because ...").score == 0.0
    assert parse_verdict("Correct.").verdict == "correct"
    assert parse_verdict("no idea").verdict == "unparsed" and parse_verdict("?").score is None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_judge_is_one_clear_error():
    judge = Judge.from_spec(f"http://127.0.0.1:{_closed_port()}/v1#m", retries=2, backoff_s=0.01)
    with pytest.raises(ServiceUnavailable, match=r"judge http://127.0.0.1:\d+/v1#m did not answer"):
        judge.grade("q", "yes", "yes")


@pytest.mark.llm
@pytest.mark.slow
def test_real_judge_grades_an_answer_file(llm_server: LLMServer, tmp_path):
    from typer.testing import CliRunner

    from litevlm.cli import app

    path = tmp_path / "answers.jsonl"
    rows = [dict(question=q, answer=a, prediction=p, answer_type=t) for q, a, p, t in ANSWERS]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    spec = f"{llm_server.base_url}#{llm_server.model}"
    # a generous timeout: the model runs on the test machine's CPU, shared with other tests
    args = ["score", str(path), "--judge", spec, "--judge-timeout", "900", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    verdicts = [ex["judge"]["verdict"] for ex in out["examples"]]
    assert len(verdicts) == len(ANSWERS)
    assert set(verdicts) <= {"correct", "partially_correct", "incorrect", "unparsed"}
    assert all(isinstance(ex["judge"]["reasons"], str) for ex in out["examples"])
    j = out["judge"]
    assert j["n"] == len(ANSWERS) and j["model"] == spec
    assert j["n_compared"] >= 1 and 0.0 <= j["agreement"] <= 1.0
    print(f"judge agreement with token metrics: {j['agreement']:.2f} (n={j['n_compared']})")
    print("verdicts:", verdicts)
