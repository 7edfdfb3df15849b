"""Scoring modes: llava-med against LLaVA-Med's own scorer, medgemma, strict's fixed bugs, and
``litevlm score`` on answer files (no model loaded)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from finetune.evaluate import llava_med
from finetune.evaluate.data import AnswerRow, EvalDataError, load_answers, make_example
from finetune.evaluate.scoring import score_answers, score_one, score_predictions, squad_f1
from finetune.metrics import closed_correct, normalize_answer, summarize

FIXTURE = Path(__file__).parent / "fixtures" / "llava_med" / "scorer_b9a98a7.json"


@pytest.fixture(scope="module")
def reference():
    """Cases with the scores LLaVA-Med's b9a98a7 scorer gave them (see the file's note)."""
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def test_llava_med_normalize_matches_their_normalize_word(reference):
    for c in reference["cases"]:
        assert llava_med.normalize(c["answer"].lower()) == c["normalized_answer"], c
        assert llava_med.normalize(c["prediction"].lower()) == c["normalized_prediction"], c


def test_llava_med_per_case_scores_match_their_script(reference):
    assert len(reference["cases"]) >= 300
    for c in reference["cases"]:
        got = llava_med.score(c["prediction"], c["answer"], c["answer_type"])
        for k, v in c["expected"].items():
            assert got[k] == pytest.approx(v), (c, k, got)


def test_llava_med_aggregate_matches_their_table(reference):
    rows = [AnswerRow.model_validate(c) for c in reference["cases"]]
    got = score_answers(rows, "llava-med")
    agg = reference["aggregate"]
    assert got["closed_accuracy"] == pytest.approx(agg["closed_accuracy"])
    assert got["open_recall"] == pytest.approx(agg["open_recall"])
    assert got["open_f1"] == pytest.approx(agg["open_f1"])
    assert got["open_exact_match"] == pytest.approx(agg["open_exact_match"])


def test_llava_med_quirks():
    assert llava_med.closed_hit("It looks normal", "no")  # "no" inside "normal"
    assert llava_med.closed_hit("yes or no", "yes") and llava_med.closed_hit("yes or no", "no")
    assert not llava_med.closed_hit("left", "left")  # neither "yes" nor "no" in it
    assert not llava_med.closed_hit("none", "no")  # "none" becomes "0" first
    # open recall counts each repeated predicted word: tp = 3, fn = 1 ("left")
    _, p, r = llava_med.f1_precision_recall("lung lung lung", "left lung")
    assert (p, r) == (1.0, 0.75)
    # a digit-comma-digit anywhere deletes the marks instead of spacing them: "x-ray" -> "xray"
    assert llava_med.normalize("x-ray, 1,000 cells.") == "xray 1000 cells"
    assert llava_med.normalize("x-ray, many cells.") == "x ray many cells"


def test_medgemma_tokenised_f1():
    # SQuAD: punctuation deleted (not spaced), articles dropped, multiset F1
    assert squad_f1("The left lung.", "left lung") == 1.0
    assert squad_f1("left lung opacity", "opacity in the left lung") == pytest.approx(6 / 7)
    assert squad_f1("x-ray", "x ray") == 0.0  # "xray" vs "x", "ray"
    s = score_one("Yes.", "yes", "closed", scoring="medgemma")
    assert s.closed_correct and s.token_f1 == 1.0
    assert not score_one("yes, there is", "yes", "closed", scoring="medgemma").closed_correct
    rows = [
        AnswerRow(question="q", answer="yes", prediction="yes", answer_type="closed"),
        AnswerRow(question="q", answer="left lung", prediction="lung", answer_type="open"),
    ]
    got = score_answers(rows, "medgemma")
    assert got["tokenized_f1"] == pytest.approx((1 + 2 / 3) / 2)  # over all questions


def test_strict_options_reach_the_summary():
    e = make_example("img.png", "left or right?", "right", options=["left", "right"])
    overall, *_ = score_predictions([e], ["left or right"])
    assert overall.closed_accuracy == 0.0
    s = summarize(["left or right"], ["right"], ["closed"], options=[["left", "right"]])
    assert s.closed_accuracy == 0.0


def test_strict_hedges_and_numbers():
    assert not closed_correct("left or right", "right")  # no options: a hedge is not rewarded
    assert not closed_correct("yes or no", "yes")
    assert closed_correct("the right kidney", "right")
    assert closed_correct("Yes, there is no fracture.", "yes")
    assert normalize_answer("two nodules") == "2 nodules"
    assert normalize_answer("1,000") == normalize_answer("1000") == "1000"
    assert normalize_answer("twenty-one") == "21"
    assert normalize_answer("one hundred and five cells") == "105 cells"
    assert normalize_answer("bread and butter") == "bread and butter"
    assert score_one("two", "2", "open").exact_match == 1.0


def test_strict_differs_from_llava_med_on_the_same_answers(reference):
    rows = [AnswerRow.model_validate(c) for c in reference["cases"]]
    strict, ours = score_answers(rows, "strict"), score_answers(rows, "llava-med")
    assert strict["closed_accuracy"] != pytest.approx(ours["closed_accuracy"])


def test_answer_file_errors_name_line_and_field(tmp_path):
    p = tmp_path / "answers.jsonl"
    good = {"question": "q", "answer": "yes", "prediction": "yes", "answer_type": "closed"}
    p.write_text(json.dumps(good) + "\n" + json.dumps({**good, "prediction": None}) + "\n")
    with pytest.raises(EvalDataError, match=r"answers.jsonl: line 2: field 'prediction'"):
        load_answers(p)
    p.write_text(json.dumps({**good, "answer_type": "maybe"}) + "\n")
    with pytest.raises(EvalDataError, match=r"line 1: field 'answer_type'"):
        load_answers(p)
    p.write_text("{nope\n")
    with pytest.raises(EvalDataError, match="line 1 is not valid JSON"):
        load_answers(p)
    bad = {k: v for k, v in good.items() if k != "answer"}
    p.write_text(json.dumps(bad) + "\n")
    with pytest.raises(EvalDataError, match="field 'answer': missing"):
        load_answers(p)


def _cli(*args: str) -> subprocess.CompletedProcess:
    code = (
        "import sys; from litevlm.cli import main; sys.argv = ['litevlm', *sys.argv[1:]]\n"
        "try:\n    main()\nfinally:\n"
        "    heavy = [m for m in ('torch', 'transformers', 'matplotlib') if m in sys.modules]\n"
        "    print('HEAVY', heavy, file=sys.stderr)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
    )


def test_cli_score_json_and_errors(reference, tmp_path):
    p = tmp_path / "answers.jsonl"
    p.write_text("\n".join(json.dumps(c) for c in reference["cases"]) + "\n")
    res = _cli("score", str(p), "--scoring", "llava-med", "--json")
    assert res.returncode == 0, res.stderr
    assert "HEAVY []" in res.stderr  # no model library imported
    out = json.loads(res.stdout)
    assert out["closed_accuracy"] == pytest.approx(reference["aggregate"]["closed_accuracy"])
    assert out["open_recall"] == pytest.approx(reference["aggregate"]["open_recall"])
    assert out["n_closed"] + out["n_open"] == len(reference["cases"]) == len(out["examples"])
    assert 0 <= out["open_f1"] <= 1
    res = _cli("score", str(p))
    assert res.returncode == 0 and "closed accuracy" in res.stdout
    p.write_text('{"question": "q", "answer": "a", "answer_type": "open"}\n')
    res = _cli("score", str(p))
    assert res.returncode != 0
    assert "line 1: field 'prediction': missing" in res.stderr
    res = _cli("score", str(p), "--scoring", "bleu")
    assert res.returncode != 0 and "unknown scoring" in res.stderr


def test_llava_med_bleu_as_their_script_calls_nltk():
    # NLTK's sentence_bleu on the normalised words, 4-gram without smoothing: a two-word exact
    # answer has BLEU ~0 but BLEU-1 = BLEU-2 = 1; the article is dropped before counting
    assert llava_med.bleu("the left lung lower lobe", "left lung lower lobe")["bleu"] == 1.0
    two = llava_med.bleu("Left lung.", "left lung")
    assert two["bleu"] < 1e-100 and two["bleu_1"] == two["bleu_2"] == 1.0
    half = llava_med.bleu("right lung", "left lung")
    assert half["bleu_1"] == pytest.approx(0.5) and half["bleu_2"] < 1e-100
    rows = [
        AnswerRow(question="q", answer="left lung", prediction="left lung", answer_type="open"),
        AnswerRow(question="q", answer="left lung", prediction="right lung", answer_type="open"),
        AnswerRow(question="q", answer="yes", prediction="yes", answer_type="closed"),
    ]
    got = score_answers(rows, "llava-med")
    assert got["open_bleu"]["bleu_1"] == pytest.approx(0.75)  # over the open questions only
    assert "bleu" in got["examples"][0] and "bleu" not in got["examples"][2]
    assert "open_bleu" not in score_answers(rows, "strict")
