"""finetune.metrics against hand-computed cases and the reference libraries."""

from __future__ import annotations

import math

import pytest

from finetune import metrics as m


def test_normalize_answer():
    assert m.normalize_answer("  The LEFT lung, isn't it?  ") == "left lung isn t it"
    assert m.normalize_answer("An opacity.") == "opacity"
    assert m.normalize_answer("size 3.5 cm.") == "size 3.5 cm"  # decimal point kept
    assert m.normalize_answer("Ｙｅｓ") == "yes"  # NFKC full-width
    assert m.normalize_answer("") == ""


@pytest.mark.parametrize(
    ("ref", "qt", "expected"),
    [
        ("Yes", None, "closed"),
        ("no.", None, "closed"),
        ("left lung", None, "open"),
        ("left lung", "CLOSED", "closed"),
        (
            "a large rounded opacity in the right upper lobe with air bronchograms",
            None,
            "description",
        ),
        ("lung", "description", "description"),
        ("yes", "open", "open"),
    ],
)
def test_infer_answer_type(ref, qt, expected):
    assert m.infer_answer_type(ref, qt) == expected


def test_closed_first_option_wins():
    assert m.closed_correct("Yes, there is a fracture.", "yes")
    assert not m.closed_correct("No.", "yes")
    # LLaVA-Med's "reference in prediction" rule would score this correct; we take the first.
    assert not m.closed_correct("no, or maybe yes", "yes")
    assert not m.closed_correct("cannot tell", "no")
    assert m.closed_correct("It is the CT scan", "CT", options=["MRI", "CT", "X-ray"])
    # "not" must not match "no": whole words only
    assert m.closed_choice("not sure") is None


def test_token_recall_llava_med():
    # reference tokens {left, lung}; both present
    assert m.token_recall("opacity in the left lung", "left lung") == 1.0
    assert m.token_recall("left side", "left lung") == 0.5
    assert m.token_recall("", "left lung") == 0.0
    assert m.token_recall("", "") == 1.0


def test_token_f1_hand_computed():
    # pred {left, lung, opacity} vs ref {opacity, in, left, lung}: P=1, R=3/4, F1=6/7
    assert m.token_f1("left lung opacity", "opacity in the left lung") == pytest.approx(6 / 7)
    # multiset: pred "lung lung" vs ref "lung": P=1/2, R=1 -> 2/3
    assert m.token_f1("lung lung", "lung") == pytest.approx(2 / 3)
    assert m.token_f1("heart", "lung") == 0.0
    assert m.token_f1("", "") == 1.0


def test_exact_match():
    assert m.exact_match("The Left Lung.", "left lung") == 1.0
    assert m.exact_match("left lungs", "left lung") == 0.0


def test_bleu4_hand_computed_and_sacrebleu():
    import sacrebleu

    hyp, ref = "the cat sat on the mat", "the cat sat on a mat"
    # clipped n-gram precisions 5/6, 3/5, 2/4, 1/3; same length so BP = 1
    expected = (5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25
    assert m.bleu4([hyp], [ref]) == pytest.approx(expected, rel=1e-6)
    assert m.bleu4([ref], [ref]) == pytest.approx(1.0)
    hyps = [hyp, "cells with large nuclei are visible"]
    refs = [ref, "large nuclei visible in several cells"]
    assert m.bleu4(hyps, refs) == pytest.approx(
        sacrebleu.corpus_bleu(hyps, [refs]).score / 100, rel=1e-9
    )
    with pytest.raises(ValueError, match="predictions"):
        m.bleu4(["a"], [])


def test_rouge_l_hand_computed_and_rouge_score():
    from rouge_score import rouge_scorer

    # LCS("the cat sat on the mat", "the cat sat on a mat") = 5 of 6 tokens each side
    assert m.rouge_l(["the cat sat on the mat"], ["the cat sat on a mat"]) == pytest.approx(5 / 6)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    p, r = "nuclei stained brown", "brown staining of the nuclei"
    assert m.rouge_l([p], [r]) == pytest.approx(scorer.score(r, p)["rougeL"].fmeasure)


def test_keyword_recall():
    pred = "H&E section showing a well-differentiated adenocarcinoma with mucin."
    assert m.keyword_recall(pred, ["adenocarcinoma", "mucin", "necrosis"]) == pytest.approx(2 / 3)
    assert m.keyword_recall(pred, ["well differentiated"]) == 1.0  # phrase, hyphen normalised
    assert m.keyword_recall(pred, ["carcinoma"]) == 0.0  # whole words only
    assert m.content_words("The nuclei are stained in the image") == ["nuclei", "stained"]


def test_summarize_groups_by_answer_type():
    preds = ["yes", "no", "left lung", "right", "many round cells with dark nuclei on a pale field"]
    refs = [
        "yes",
        "yes",
        "left lung",
        "right kidney",
        "round cells with dark nuclei scattered on a pale background",
    ]
    s = m.summarize(preds, refs)
    assert (s.n, s.n_closed, s.n_open, s.n_description) == (5, 2, 2, 1)
    assert s.closed_accuracy == 0.5
    assert s.open_exact_match == 0.5
    assert s.open_recall == pytest.approx((1 + 0.5) / 2)
    assert s.open_f1 == pytest.approx((1 + 2 / 3) / 2)
    assert 0 < s.bleu4 < 1 and 0 < s.rouge_l < 1
    # content words of the description: round cells dark nuclei scattered pale background
    assert s.keyword_recall == pytest.approx(5 / 7)
    empty = m.summarize([], [])
    assert empty.n == 0 and empty.closed_accuracy is None and empty.bleu4 is None
    assert not math.isnan(s.bleu4)
