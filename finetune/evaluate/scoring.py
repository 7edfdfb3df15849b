"""Scoring answers: ``strict`` (ours), ``llava-med`` and ``medgemma`` (the published scorers).

Every mode turns one (prediction, reference, answer type, options) into a
``finetune.metrics.ExampleScore``; the means per answer type make the ``MetricSummary`` the
reports show. Descriptions are scored by BLEU/ROUGE/keyword recall in every mode (neither
paper scores free-text descriptions). ``tokenized_f1`` (in ``MetricSummary.extra``) is token F1
over every closed and open question: MedGemma's headline figure.

- ``strict``: ``finetune.metrics`` (first option named, hedges wrong, numbers normalised).
- ``llava-med``: ``finetune.evaluate.llava_med`` (LLaVA-Med v1.0's script, quirks included).
- ``medgemma``: SQuAD-style tokenised F1: lower case, ASCII punctuation deleted, articles
  dropped, whitespace tokens, F1 over token multisets (1 when both sides are empty, 0 when one
  is); closed accuracy is normalised exact match.
"""

from __future__ import annotations

import re
import string
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from finetune.data import Example
from finetune.evaluate.data import AnswerRow, answer_type
from finetune.evaluate.schema import UNKNOWN, Prediction
from finetune.metrics import (
    ExampleScore,
    MetricSummary,
    content_words,
    keyword_recall,
    score_example,
    summarize_scores,
)

SCORINGS: tuple[str, ...] = ("strict", "llava-med", "medgemma")


def check_scoring(scoring: str) -> str:
    from litevlm.errors import LiteVLMError

    if scoring not in SCORINGS:
        raise LiteVLMError(f"unknown scoring {scoring!r}", f"use one of {', '.join(SCORINGS)}")
    return scoring


# ---------------------------------------------------------------- medgemma (SQuAD token F1)

_SQUAD_PUNCT = set(string.punctuation)
_SQUAD_ARTICLES = re.compile(r"\b(a|an|the)\b")


def squad_normalize(text: str) -> str:
    """SQuAD's answer normalisation: lower, delete punctuation, drop articles, fix spaces."""
    text = "".join(c for c in text.lower() if c not in _SQUAD_PUNCT)
    return " ".join(_SQUAD_ARTICLES.sub(" ", text).split())


def squad_f1(prediction: str, reference: str) -> float:
    pred, ref = squad_normalize(prediction).split(), squad_normalize(reference).split()
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    p, r = same / len(pred), same / len(ref)
    return 2 * p * r / (p + r)


def squad_recall(prediction: str, reference: str) -> float:
    pred, ref = squad_normalize(prediction).split(), squad_normalize(reference).split()
    if not ref:
        return float(not pred)
    return sum((Counter(pred) & Counter(ref)).values()) / len(ref)


# ---------------------------------------------------------------- one example, any mode


def score_one(
    prediction: str,
    reference: str,
    kind: str,
    *,
    scoring: str = "strict",
    options: Sequence[str] | None = None,
    keywords: Sequence[str] | None = None,
) -> ExampleScore:
    """``kind``: closed, open or description (``infer_answer_type`` when unsure)."""
    if scoring == "strict" or kind == "description":
        return score_example(prediction, reference, kind, keywords, options)
    kw = keyword_recall(prediction, keywords if keywords is not None else content_words(reference))
    if scoring == "medgemma":
        em = float(squad_normalize(prediction) == squad_normalize(reference))
        return ExampleScore(
            answer_type=kind,  # type: ignore[arg-type]
            closed_correct=bool(em) if kind == "closed" else None,
            exact_match=em,
            token_recall=squad_recall(prediction, reference),
            token_f1=squad_f1(prediction, reference),
            keyword_recall=kw,
        )
    if scoring == "llava-med":
        from finetune.evaluate import llava_med

        s = llava_med.score(prediction, reference, "open")
        return ExampleScore(
            answer_type=kind,  # type: ignore[arg-type]
            closed_correct=llava_med.closed_hit(prediction, reference)
            if kind == "closed"
            else None,
            exact_match=float(s["exact_match"] or 0.0),
            token_recall=float(s["recall"] or 0.0),
            token_f1=float(s["f1"] or 0.0),
            keyword_recall=kw,
        )
    check_scoring(scoring)
    raise AssertionError(scoring)


# ---------------------------------------------------------------- test sets


def score_predictions(
    examples: Sequence[Example],
    predictions: Sequence[str],
    latencies: Sequence[float] | None = None,
    tokens: Sequence[int] | None = None,
    *,
    scoring: str = "strict",
) -> tuple[MetricSummary, dict[str, MetricSummary], dict[str, MetricSummary], list[Prediction]]:
    """Overall, per question type (closed/open/description or as labelled) and per modality."""
    check_scoring(scoring)
    if len(examples) != len(predictions):
        raise ValueError(f"{len(examples)} examples but {len(predictions)} predictions")
    n = len(examples)
    lat = list(latencies) if latencies is not None else [0.0] * n
    tok = list(tokens) if tokens is not None else [0] * n
    scores = [
        score_one(
            p,
            e.answer,
            answer_type(e),
            scoring=scoring,
            options=e.meta.get("options"),
            keywords=e.meta.get("keywords"),
        )
        for e, p in zip(examples, predictions, strict=True)
    ]
    preds = [
        Prediction(
            id=e.meta["id"],
            question=e.question or "",
            answer=e.answer,
            prediction=p,
            answer_type=s.answer_type,
            question_type=e.meta.get("question_type"),
            modality=e.meta.get("modality", UNKNOWN),
            options=e.meta.get("options"),
            correct=s.closed_correct,
            token_recall=s.token_recall,
            token_f1=s.token_f1,
            exact_match=s.exact_match,
            latency_s=dt,
            tokens=nt,
        )
        for e, p, s, dt, nt in zip(examples, predictions, scores, lat, tok, strict=True)
    ]

    def summary(idx: Sequence[int]) -> MetricSummary:
        return summarize_scores(
            [scores[i] for i in idx],
            [predictions[i] for i in idx],
            [examples[i].answer for i in idx],
        )

    def group(key: Callable[[Example], str]) -> dict[str, MetricSummary]:
        idx: dict[str, list[int]] = defaultdict(list)
        for i, e in enumerate(examples):
            idx[key(e)].append(i)
        return {k: summary(v) for k, v in sorted(idx.items())}

    overall = summary(range(n))
    by_type = group(lambda e: e.meta.get("question_type") or answer_type(e))
    by_modality = group(lambda e: e.meta.get("modality") or UNKNOWN)
    return overall, by_type, by_modality, preds


# ---------------------------------------------------------------- answer files (litevlm score)


def score_answers(rows: Sequence[AnswerRow], scoring: str = "strict") -> dict[str, Any]:
    """The ``litevlm score --json`` object: top-level figures (fractions) and every row."""
    check_scoring(scoring)
    scores = [
        score_one(r.prediction, r.answer, r.answer_type, scoring=scoring, options=r.options)
        for r in rows
    ]
    s = summarize_scores(scores, [r.prediction for r in rows], [r.answer for r in rows])
    bleus: list[dict[str, float] | None] = [None] * len(rows)
    if scoring == "llava-med":  # the script's BLEU figures, over its open questions
        from finetune.evaluate import llava_med

        bleus = [
            llava_med.bleu(r.prediction, r.answer) if sc.answer_type == "open" else None
            for r, sc in zip(rows, scores, strict=True)
        ]
    opened = [b for b in bleus if b is not None]
    result = {
        "scoring": scoring,
        "n": len(rows),
        "n_closed": s.n_closed,
        "n_open": s.n_open,
        "closed_accuracy": s.closed_accuracy,
        "open_recall": s.open_recall,
        "open_f1": s.open_f1,
        "open_exact_match": s.open_exact_match,
        "tokenized_f1": s.extra.get("tokenized_f1"),
        "examples": [
            {
                "id": r.id,
                "question": r.question,
                "answer": r.answer,
                "prediction": r.prediction,
                "answer_type": r.answer_type,
                "correct": sc.closed_correct,
                "recall": sc.token_recall,
                "f1": sc.token_f1,
                "exact_match": sc.exact_match,
                **({"bleu": b} if b is not None else {}),
            }
            for r, sc, b in zip(rows, scores, bleus, strict=True)
        ],
    }
    if opened:
        result["open_bleu"] = {k: sum(b[k] for b in opened) / len(opened) for k in opened[0]}
    return result
