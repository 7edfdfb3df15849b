"""Evidence sentences picked from REAL recorded abstracts (PubMed efetch, arXiv Atom).

The relevant sentence of each case was found by reading the abstract; the ranker must pick it
(all-MiniLM-L6-v2, and BM25 without the model), and a question on another subject must get
nothing at all rather than the least unrelated sentence.
"""

from __future__ import annotations

import pytest
from literature_fixtures import NCBI, serve_fixtures
from retrieval_fixtures import minilm  # noqa: F401

from tools.literature import search_literature
from tools.literature.evidence import EvidenceRanker, quote, split_sentences
from tools.literature.pubmed import parse_pubmed_xml

# question, paper, words that only the relevant sentence has
CASES = [
    (
        "Is leucocyte telomere length associated with pancreatic cancer risk?",
        "27797938",
        "Shorter prediagnostic leucocyte telomere length was associated with higher risk",
    ),
    (
        "What happens to the sperm membranes during cryopreservation?",
        "11748933",
        "Ultrastructural anomalies of the plasmatic and nuclear membranes",
    ),
    (
        "What is known about the mixing of heat-bath random walks?",
        "1605.08386",
        "We then study the mixing behaviour of heat-bath random walks",
    ),
    (
        "Which pesticides alter thyroid function?",
        "28775130",
        "exposure to pesticides may alter thyroid function",
    ),
    (
        "How are heme irons distinguished by EPR in flavocytochrome c552?",
        "9997",
        "two low-spin (S = 1/2) heme irons are distinguishable",
    ),
]
UNRELATED = [
    "How do I bake sourdough bread?",
    "What is the H-score cut-off for HER2 positivity in gastric cancer?",
]


@pytest.fixture(scope="module")
def sources():
    """All 19 recorded papers (PubMed files + both arXiv feeds), through the project's parsers."""
    srcs = []
    for f in sorted(NCBI.glob("pubmed*.xml")):
        srcs += parse_pubmed_xml(f.read_bytes())
    with serve_fixtures() as server:
        cfg = server.config()
        for q in ("software testing", "arXiv:1605.08386"):
            srcs += search_literature(
                q, settings=cfg, use_cache=False, sources=["arxiv"], max_results=10
            ).sources
    assert len(srcs) == 19
    return srcs


@pytest.fixture(scope="module")
def rankers(minilm):  # noqa: F811
    """One ranker per method for the module: the MiniLM one keeps its sentence vectors."""
    return {"minilm": EvidenceRanker(minilm), "bm25": EvidenceRanker(semantic=False)}


def test_split_sentences_keeps_abbreviations_and_drops_labels():
    text = (
        "OBJECTIVE: Telomeres shorten early, e.g. in pancreatic tumours (Smith et al. 2010). "
        "RESULTS: The OR was 1.72 (95% CI 1.07 to 2.78). Context. Done."
    )
    assert split_sentences(text) == [
        "Telomeres shorten early, e.g. in pancreatic tumours (Smith et al. 2010).",
        "The OR was 1.72 (95% CI 1.07 to 2.78).",
    ]


@pytest.mark.parametrize("kind", ["minilm", "bm25"])
def test_relevant_sentence_of_the_right_paper_comes_first(sources, rankers, kind):
    ranker = rankers[kind]
    for question, paper, words in CASES:
        ev = ranker.rank(question, sources)
        assert ev, question
        assert ev[0].source_id == paper, (question, ev[0])
        assert words in ev[0].sentence, (question, ev[0].sentence)
        assert ev[0].method == ("semantic" if kind == "minilm" else "bm25")
        # only papers on the subject are kept, not every hit
        assert len({e.source_id for e in ev}) <= 3, (question, [e.source_id for e in ev])


@pytest.mark.parametrize("kind", ["minilm", "bm25"])
def test_unrelated_question_yields_no_evidence(sources, rankers, kind):
    ranker = rankers[kind]
    for question in UNRELATED:
        assert ranker.rank(question, sources) == [], question


def test_finding_preferred_over_the_question_it_restates(sources, rankers):
    # "However, it is unknown whether ... telomere length is associated ..." is closer to the
    # question, but the results sentence is what the paper found.
    ranker = rankers["minilm"]
    paper = [s for s in sources if s.id == "27797938"]
    two = ranker.rank(CASES[0][0], paper, per_source=2)
    assert [e.index for e in two] == sorted(e.index for e in two)  # abstract order
    assert ranker.rank(CASES[0][0], paper)[0].sentence.startswith("Shorter prediagnostic")


def test_missing_model_falls_back_to_bm25(sources):
    ranker = EvidenceRanker(model_id="/nonexistent/text-model")
    ev = ranker.rank(CASES[0][0], sources)
    assert ranker.method == "bm25" and "text model unavailable" in ranker.fallback_reason
    assert ev and ev[0].source_id == "27797938"


def test_quote_names_the_authors_and_keeps_the_sentence(sources, rankers):
    by_id = {s.id: s for s in sources}
    ev = rankers["bm25"].rank(CASES[0][0], sources)[0]
    text = quote(ev, by_id[ev.source_id])
    assert text.endswith(f'report: "{ev.sentence}"')
    assert text.startswith(by_id["27797938"].authors[0].split()[0] + " et al. (2017)")
    arxiv = rankers["bm25"].rank(CASES[2][0], sources)[0]
    assert quote(arxiv, by_id["1605.08386"]).split(" report:")[0].endswith("(2016)")
