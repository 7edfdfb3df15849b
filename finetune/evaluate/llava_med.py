"""LLaVA-Med's published VQA scorer, reproduced quirk for quirk (our own code).

The reference is the v1.0 script at commit b9a98a7 of microsoft/LLaVA-Med
(``llava/eval/run_eval.py`` with ``llava/eval/eval_metrics/``; v1.5 deleted them), which produced
the paper's VQA-RAD / SLAKE / PathVQA table. Its behaviour, kept here on purpose so a figure
computed by ``--scoring llava-med`` is comparable with theirs:

- normalisation (``normalize``): the punctuation list below is replaced by spaces, or deleted
  when the text has that mark next to a space or holds a digit-comma-digit anywhere; every
  period not followed by a digit is deleted, but at most 32 of them (``re.UNICODE`` passed as
  the ``count`` argument of ``re.sub``); lower case, whitespace split; ``none``/``zero``..``ten``
  become digits; articles dropped; contractions written without apostrophes get them back
  (``dont`` -> ``don't``; and ``somebody'd`` loses its); commas deleted.
- the script normalises both strings, and the F1/recall/"exact match" helpers normalise again.
- closed questions: correct when the normalised prediction contains ``yes`` or ``no`` as a
  substring *and* contains the normalised reference as a substring: ``no`` inside ``normal``
  or ``not`` counts, "yes or no" is right whatever the reference, and a closed question whose
  answer is not yes/no ("left") scores 0 unless the prediction also holds "yes"/"no" somewhere.
- open questions ("recall", the paper's open-set figure): token recall where each matching
  predicted word counts as often as it is predicted: tp = predicted count of shared words,
  recall = tp / (tp + reference words never predicted).
- F1/precision from the same counts; 0 when either side has no word or nothing matches.
- "exact match": distinct reference words found in the prediction / predicted words.
- BLEU on open questions (``bleu``): NLTK's ``sentence_bleu`` on the normalised words with its
  defaults (4-gram, no smoothing, so a one- to three-word answer scores 0 unless
  ``bleu_1``..``bleu_3``, the single-order weights the script also reports, are read).
"""

from __future__ import annotations

import re
from collections import Counter

# Marks the script handles; note ':', "'", '*', '#', '%', '&' and '.' are not among them.
PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@")
PUNCT += ("`", ",", "?", "!")
_DIGIT_COMMA = re.compile(r"\d,\d")
_PERIOD = re.compile(r"\.(?!\d)")
_MAX_PERIODS = 32  # re.UNICODE == 32, passed where re.sub expects ``count``
_NUMBERS = {"none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4"}
_NUMBERS |= {"five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}
_ARTICLES = {"a", "an", "the"}

# Contractions as written correctly; a word equal to one of them with exactly one apostrophe
# left out is given the apostrophe back. (The table's capitalised keys never match lower-case
# text, so they are not needed.)
_CONTRACTIONS = """
ain't aren't can't could've couldn't couldn't've didn't doesn't don't hadn't hadn't've hasn't
haven't he'd he'd've he's how'd how'll how's isn't it'd it'd've it'll ma'am mightn't mightn't've
might've mustn't must've needn't not've o'clock oughtn't 'ow's'at shan't she'd've should've
shouldn't shouldn't've somebody'd've somebody'll somebody's someone'd someone'd've someone'll
someone's something'd something'd've something'll that's there'd there'd've there're there's
they'd they'd've they'll they're they've 'twas wasn't we'd've we've weren't what'll what're
what's what've when's where'd where's where've who'd who'd've who'll who's who've why'll why're
why's won't would've wouldn't wouldn't've y'all y'all'll y'all'd've you'd you'd've you'll you're
you've
""".split()  # noqa: SIM905


def _one_apostrophe_dropped(word: str) -> list[str]:
    return [word[:i] + word[i + 1 :] for i, c in enumerate(word) if c == "'"]


_RESTORE = {k: v for v in _CONTRACTIONS for k in _one_apostrophe_dropped(v)}
_RESTORE["somebody'd"] = "somebodyd"  # the table's one entry that runs backwards


def normalize(text: str) -> str:
    """LLaVA-Med's ``normalize_word`` (see the module docstring for each step)."""
    delete = _DIGIT_COMMA.search(text) is not None
    out = text
    for p in PUNCT:
        # The test reads the text as given, not as already rewritten by earlier marks.
        if delete or f"{p} " in text or f" {p}" in text:
            out = out.replace(p, "")
        else:
            out = out.replace(p, " ")
    out = _PERIOD.sub("", out, count=_MAX_PERIODS)
    words = [_NUMBERS.get(w, w) for w in out.lower().split()]
    words = [_RESTORE.get(w, w) for w in words if w not in _ARTICLES]
    return " ".join(words).replace(",", "")


def _counts(text: str) -> Counter[str]:
    return Counter(normalize(text).lower().split())


def f1_precision_recall(prediction: str, reference: str) -> tuple[float, float, float]:
    """(F1, precision, recall) with predicted repeats counted, as the script computes them."""
    pred, ref = _counts(prediction), _counts(reference)
    if not pred or not ref:
        return 0.0, 0.0, 0.0
    tp = sum(c for w, c in pred.items() if w in ref)
    fp = sum(c for w, c in pred.items() if w not in ref)
    fn = sum(c for w, c in ref.items() if w not in pred)
    if tp == 0:
        return 0.0, 0.0, 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return 2 * precision * recall / (precision + recall), precision, recall


def exact_match(prediction: str, reference: str) -> float:
    """The script's "exact match": distinct reference words predicted / predicted words."""
    pred, ref = _counts(prediction), _counts(reference)
    total = sum(pred.values())
    return sum(w in pred for w in ref) / total if total else 0.0


def closed_hit(prediction: str, reference: str) -> bool:
    """Substring tests on the normalised strings (b9a98a7's closed-question rule)."""
    pred = normalize(prediction.lower())
    ref = normalize(reference.lower())
    return ("yes" in pred or "no" in pred) and ref in pred


def bleu(prediction: str, reference: str) -> dict[str, float]:
    """The script's four BLEU figures for one open question (NLTK, as it calls it)."""
    import warnings

    from nltk.translate.bleu_score import sentence_bleu

    ref = [normalize(reference.lower()).lower().split()]
    hyp = normalize(prediction.lower()).lower().split()
    weights = {"bleu": (0.25, 0.25, 0.25, 0.25), "bleu_1": (1, 0, 0, 0)}
    weights |= {"bleu_2": (0, 1, 0, 0), "bleu_3": (0, 0, 1, 0)}
    with warnings.catch_warnings():  # "0 counts of n-gram overlaps": the script ignores it too
        warnings.simplefilter("ignore")
        return {k: float(sentence_bleu(ref, hyp, weights=w)) for k, w in weights.items()}


def score(prediction: str, reference: str, answer_type: str) -> dict[str, float | bool | None]:
    """One row as the script scores it: closed -> hit; open -> recall, F1, precision, EM."""
    if answer_type == "closed":
        return {"correct": closed_hit(prediction, reference)}
    pred = normalize(prediction.lower())
    ref = normalize(reference.lower())
    f1, precision, recall = f1_precision_recall(pred, ref)
    return {
        "correct": None,
        "recall": recall,
        "f1": f1,
        "precision": precision,
        "exact_match": exact_match(pred, ref),
    }
