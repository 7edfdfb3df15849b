"""Answer metrics for medical VQA and image descriptions.

These are the ``strict`` scoring (the default of ``litevlm eval|score``); the published
scorers that papers used are in ``finetune.evaluate.scoring`` (``llava-med``, ``medgemma``).

- ``normalize_answer``: lower case, Unicode NFKC, thousands separators dropped ("1,000" ->
  "1000"), punctuation to spaces (a decimal point between digits is kept), articles (a/an/the)
  dropped, number words as digits ("two" -> "2", "twenty one" -> "21"), whitespace collapsed.
- Closed-ended (yes/no, options): the first option named (whole words) in the normalised
  prediction is the model's choice; accuracy is choice == normalised reference. A hedge that
  names several options joined by "or" is wrong; without options, a non-yes/no closed answer
  must be named and not hedged. (LLaVA-Med's script tests "reference is a substring of the
  prediction", which rewards "yes or no" and finds "no" in "normal".)
- ``token_recall``: share of the reference's distinct tokens found in the prediction (the idea
  of LLaVA-Med's open-set "recall", without its double counting of repeated words).
- ``token_f1``: SQuAD token F1 over token multisets (MedGemma's open-ended metric).
- ``exact_match``: normalised strings equal.
- ``bleu4``: sacrebleu corpus BLEU (4-gram, 13a tokeniser, exp smoothing), scaled to [0, 1].
- ``rouge_l``: mean rouge-score ROUGE-L F-measure (Porter stemmer), in [0, 1].
- ``keyword_recall``: share of keywords (given, or the reference's content words) found as whole
  words in the prediction.

Pure Python plus sacrebleu and rouge-score (imported lazily).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Literal

from pydantic import BaseModel, Field

AnswerType = Literal["closed", "open", "description"]

YES_NO = ("yes", "no")
# Question types in VQA-RAD/SLAKE and our JSONL that are closed-ended by definition.
CLOSED_TYPES = {"closed", "yes/no", "yesno", "yes_no", "binary", "options", "multiple_choice"}
DESCRIPTION_TYPES = {"description", "caption", "report", "describe"}
# References this long (in tokens) are scored as descriptions when no type is given.
DESCRIPTION_MIN_TOKENS = 8

_ARTICLES = {"a", "an", "the"}
_STOPWORDS = _ARTICLES | {
    "and",
    "or",
    "of",
    "in",
    "on",
    "at",
    "to",
    "with",
    "without",
    "for",
    "from",
    "by",
    "as",
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "being",
    "this",
    "that",
    "these",
    "those",
    "it",
    "its",
    "there",
    "here",
    "which",
    "who",
    "what",
    "has",
    "have",
    "had",
    "not",
    "no",
    "shows",
    "show",
    "shown",
    "seen",
    "image",
    "picture",
    "some",
    "any",
    "into",
    "than",
    "then",
    "also",
}
_PUNCT = re.compile(r"[^\w\s.]|_")
_STRAY_DOT = re.compile(r"(?<!\d)\.|\.(?!\d)")


_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_UNITS = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
_UNITS += " fifteen sixteen seventeen eighteen nineteen"
_NUMBER_WORDS = {w: i for i, w in enumerate(_UNITS.split())}
_TENS = {
    w: 10 * i
    for i, w in enumerate(["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty"], 2)
}
_TENS["ninety"] = 90
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}


def normalize_answer(text: str) -> str:
    """Lower-case, strip punctuation and articles, numbers as digits, collapse whitespace."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    text = _THOUSANDS.sub("", text)  # "1,000" -> "1000"
    text = _PUNCT.sub(" ", text)
    text = _STRAY_DOT.sub(" ", text)
    return " ".join(_numbers_as_digits([t for t in text.split() if t not in _ARTICLES]))


def _numbers_as_digits(tokens: list[str]) -> list[str]:
    """Runs of number words as one number: "two" -> "2", "one hundred and five" -> "105"."""
    out: list[str] = []
    total = current = 0
    run = False
    padded = [*tokens, ""]
    for i, t in enumerate(padded):
        after_scale = run and i > 0 and padded[i - 1] in _SCALES
        if (
            t == "and"
            and after_scale
            and (padded[i + 1] in _NUMBER_WORDS or padded[i + 1] in _TENS)
        ):
            continue  # "hundred and five" stays one number
        if t in _NUMBER_WORDS or t in _TENS or (t in _SCALES and run):
            run = True
            if t in _SCALES:
                current = max(current, 1) * _SCALES[t]
                if _SCALES[t] > 100:
                    total, current = total + current, 0
            else:
                current += _NUMBER_WORDS.get(t, 0) + _TENS.get(t, 0)
            continue
        if run:
            out.append(str(total + current))
            total = current = 0
            run = False
        if t:
            out.append(t)
    return out


def answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split()


def infer_answer_type(
    reference: str, question_type: str | None = None, options: Sequence[str] | None = None
) -> AnswerType:
    """Closed if the type says so, options are given or the reference is yes/no; description
    if long; else open."""
    qt = (question_type or "").strip().lower()
    if qt in CLOSED_TYPES:
        return "closed"
    if qt in DESCRIPTION_TYPES:
        return "description"
    if qt == "open":
        return "open"
    if options:
        return "closed"
    norm = normalize_answer(reference)
    if norm in YES_NO:
        return "closed"
    return "description" if len(norm.split()) >= DESCRIPTION_MIN_TOKENS else "open"


def closed_choice(prediction: str, options: Sequence[str] = YES_NO) -> str | None:
    """The option the prediction states first (whole words), or None if it names none."""
    pred = f" {normalize_answer(prediction)} "
    best: tuple[int, str] | None = None
    for opt in options:
        norm = normalize_answer(opt)
        if not norm:
            continue
        pos = pred.find(f" {norm} ")
        if pos >= 0 and (best is None or pos < best[0]):
            best = (pos, norm)
    return best[1] if best else None


def closed_correct(prediction: str, reference: str, options: Sequence[str] | None = None) -> bool:
    """Whether the prediction commits to the reference, and only to it.

    With options (yes/no when the reference is yes/no): the first option named must be the
    reference, and a hedge that names several options joined by "or" ("left or right",
    "yes or no") is wrong. Without options for another closed answer: the reference must be
    named as a whole phrase and the prediction must not hedge with "or".
    """
    ref = normalize_answer(reference)
    opts = [normalize_answer(o) for o in options] if options else []
    if not opts and ref in YES_NO:
        opts = list(YES_NO)
    pred = f" {normalize_answer(prediction)} "
    hedged = " or " in pred or " either " in pred
    if not opts:
        return f" {ref} " in pred and not hedged
    if ref not in opts:
        opts.append(ref)
    named = {o for o in opts if o and f" {o} " in pred}
    if hedged and len(named) > 1:
        return False
    return closed_choice(prediction, opts) == ref


def exact_match(prediction: str, reference: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(reference))


def token_recall(prediction: str, reference: str) -> float:
    """LLaVA-Med open-set recall: distinct reference tokens that appear in the prediction."""
    ref = set(answer_tokens(reference))
    pred = set(answer_tokens(prediction))
    if not ref:
        return float(not pred)
    return len(ref & pred) / len(ref)


def token_f1(prediction: str, reference: str) -> float:
    """SQuAD token F1 over token multisets (MedGemma's open-ended metric)."""
    pred, ref = answer_tokens(prediction), answer_tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def content_words(text: str) -> list[str]:
    """Distinct non-stopword tokens, in order: the default keywords of a reference."""
    seen: dict[str, None] = {}
    for t in answer_tokens(text):
        if t not in _STOPWORDS and len(t) > 1:
            seen.setdefault(t, None)
    return list(seen)


def keyword_recall(prediction: str, keywords: Iterable[str]) -> float:
    """Share of keywords (words or phrases) found as whole words in the prediction."""
    pred = f" {normalize_answer(prediction)} "
    kws = [k for k in (normalize_answer(k) for k in keywords) if k]
    if not kws:
        return 1.0
    return sum(f" {k} " in pred for k in kws) / len(kws)


def bleu4(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU-4 from sacrebleu, in [0, 1]."""
    import sacrebleu

    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    return sacrebleu.corpus_bleu(list(predictions), [list(references)]).score / 100.0


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F-measure from rouge-score (with stemming), in [0, 1]."""
    from rouge_score import rouge_scorer

    _check_lengths(predictions, references)
    if not predictions:
        return 0.0
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    scores = [
        scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(predictions, references, strict=True)
    ]
    return sum(scores) / len(scores)


def _check_lengths(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references: pass one each"
        )


class ExampleScore(BaseModel):
    """Per-example scores; ``closed_correct`` is None for open questions and descriptions."""

    answer_type: AnswerType
    closed_correct: bool | None = None
    exact_match: float
    token_recall: float
    token_f1: float
    keyword_recall: float


def score_example(
    prediction: str,
    reference: str,
    question_type: str | None = None,
    keywords: Sequence[str] | None = None,
    options: Sequence[str] | None = None,
) -> ExampleScore:
    kind = infer_answer_type(reference, question_type, options)
    return ExampleScore(
        answer_type=kind,
        closed_correct=closed_correct(prediction, reference, options) if kind == "closed" else None,
        exact_match=exact_match(prediction, reference),
        token_recall=token_recall(prediction, reference),
        token_f1=token_f1(prediction, reference),
        keyword_recall=keyword_recall(
            prediction, keywords if keywords is not None else content_words(reference)
        ),
    )


class MetricSummary(BaseModel):
    """Metrics over a set of examples; None where the set has no example of that kind."""

    n: int = 0
    n_closed: int = 0
    n_open: int = 0
    n_description: int = 0
    closed_accuracy: float | None = None
    open_recall: float | None = None
    open_f1: float | None = None
    open_exact_match: float | None = None
    bleu4: float | None = None
    rouge_l: float | None = None
    keyword_recall: float | None = None
    extra: dict[str, float] = Field(default_factory=dict)


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def summarize(
    predictions: Sequence[str],
    references: Sequence[str],
    question_types: Sequence[str | None] | None = None,
    keywords: Sequence[Sequence[str] | None] | None = None,
    options: Sequence[Sequence[str] | None] | None = None,
) -> MetricSummary:
    """All metrics, each over the examples it is meant for (closed / open / description)."""
    _check_lengths(predictions, references)
    n = len(predictions)
    qtypes = list(question_types) if question_types is not None else [None] * n
    kws = list(keywords) if keywords is not None else [None] * n
    opts = list(options) if options is not None else [None] * n
    scores = [
        score_example(p, r, qt, kw, op)
        for p, r, qt, kw, op in zip(predictions, references, qtypes, kws, opts, strict=True)
    ]
    return summarize_scores(scores, predictions, references)


def summarize_scores(
    scores: Sequence[ExampleScore], predictions: Sequence[str], references: Sequence[str]
) -> MetricSummary:
    """Means of per-example scores by answer type; BLEU/ROUGE over the descriptions."""
    n = len(scores)
    closed = [s for s in scores if s.answer_type == "closed"]
    opened = [s for s in scores if s.answer_type == "open"]
    desc = [i for i, s in enumerate(scores) if s.answer_type == "description"]
    d_pred = [predictions[i] for i in desc]
    d_ref = [references[i] for i in desc]
    return MetricSummary(
        n=n,
        n_closed=len(closed),
        n_open=len(opened),
        n_description=len(desc),
        closed_accuracy=_mean([float(bool(s.closed_correct)) for s in closed]),
        open_recall=_mean([s.token_recall for s in opened]),
        open_f1=_mean([s.token_f1 for s in opened]),
        open_exact_match=_mean([s.exact_match for s in opened]),
        bleu4=bleu4(d_pred, d_ref) if desc else None,
        rouge_l=rouge_l(d_pred, d_ref) if desc else None,
        keyword_recall=_mean([scores[i].keyword_recall for i in desc]),
        extra=_extra(closed + opened),
    )


def _extra(qa: Sequence[ExampleScore]) -> dict[str, float]:
    """Token F1 over every closed and open question: MedGemma's headline "tokenized F1"."""
    return {"tokenized_f1": sum(s.token_f1 for s in qa) / len(qa)} if qa else {}
