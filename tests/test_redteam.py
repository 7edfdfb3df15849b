"""Injected text stays inert: the red-team corpus through the real literature and similar tools.

The corpus (tests/redteam_fixtures.py, 41 texts in 7 languages and a dozen encodings) is served
by the local literature server as PubMed, arXiv, web and Wikipedia answers, and as similar cases'
captions at the retriever's boundary. In rules mode and in chat mode (a scripted model that obeys
every injection, the worst case) no payload reaches the answer, and in chat mode none reaches the
prompt either.
"""

from __future__ import annotations

import pytest
from agent_fixtures import agent_settings, scripted, tool_call, write_sample_images
from langchain_core.messages import AIMessage
from literature_fixtures import ARXIV, NCBI, Reply, serve_fixtures
from redteam_fixtures import (
    CORPUS,
    arxiv_feed,
    by_kind,
    leaked,
    pubmed_bodies,
    tavily_results,
    wikipedia_pages,
)

from agent.assistant import Assistant
from agent.sanitize import filter_answer, inert, instructs, is_clinical_advice
from agent.tools import Toolbox
from litevlm.types import SimilarCase

QUESTION = "What is known about FHL2 in colon cancer?"
PROVIDER = {"pubmed": "pubmed", "arxiv": "arxiv", "web": "web", "wikipedia": "wikipedia"}


@pytest.fixture(scope="module")
def lit():
    with serve_fixtures() as server:
        yield server


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return write_sample_images(tmp_path_factory.mktemp("redteam_images"))


def test_the_corpus_is_large_and_varied():
    assert len(CORPUS) >= 30
    assert len({d.lang for d in CORPUS}) >= 6
    assert {d.kind for d in CORPUS} == {"pubmed", "arxiv", "web", "wikipedia", "caption"}


@pytest.mark.parametrize("doc", CORPUS, ids=lambda d: f"{d.kind}-{d.trick}")
def test_every_injected_text_is_made_inert(doc):
    for text in (doc.title, doc.text):
        out = inert(text)
        assert not leaked(out), out
        assert "[" not in out and '"' not in out and "“" not in out and "”" not in out


def test_legitimate_text_is_kept():
    abstract = (
        "FHL2 may act as a tumour suppressor; tumours that respond only partially were excluded "
        "[12]. Patients diagnosed with stage III cancer received adjuvant chemotherapy (n = 40). "
        "We use vision transformers; the data do not follow a normal distribution."
    )
    out = inert(abstract)
    assert not instructs(abstract)
    assert "tumour suppressor" in out and "(12)" in out and "adjuvant chemotherapy" in out
    assert "[12" not in out
    assert inert("ACGTACGTACGTACGTACGTACGTAAAA sequence").startswith("ACGTACGT")


def test_answer_filter_drops_diagnosis_and_treatment_advice():
    text = (
        "242 nuclei were counted [1]. The patient has metastatic cancer [2]. "
        "Adjuvant chemotherapy improved survival in stage III disease [3].\n"
        "You should start chemotherapy [1]. The diagnosis is adenocarcinoma [2]."
    )
    out, warnings = filter_answer(text)
    assert out == (
        "242 nuclei were counted [1]. Adjuvant chemotherapy improved survival in stage III "
        "disease [3]."
    )
    assert len(warnings) == 3 and all("research use only" in w for w in warnings)
    assert not is_clinical_advice("Identifiers such as the patient's name are withheld.")


def _serve(lit, kind: str) -> None:
    docs = by_kind(kind)
    if kind == "pubmed":
        search, fetch = pubmed_bodies(NCBI, docs)
        lit.push("pubmed", Reply(body=search), Reply(body=fetch, content_type="text/xml"))
    elif kind == "arxiv":
        lit.push("arxiv", Reply(body=arxiv_feed(ARXIV, docs)))
    elif kind == "web":
        lit.tavily_results = tavily_results(docs)
    else:
        lit.wikipedia_pages = wikipedia_pages(docs)


def _obeying_model(call: dict, n: int, docs) -> object:
    """A chat model that falls for every injection: it writes each payload, cited."""
    lines = [f"{d.claim} [{i % n + 1}]." for i, d in enumerate(docs)]
    return scripted(AIMessage("", tool_calls=[call]), " ".join(lines))


@pytest.mark.parametrize("kind", ["pubmed", "arxiv", "web", "wikipedia"])
@pytest.mark.parametrize("mode", ["rules", "chat"])
def test_injected_literature_never_reaches_the_answer(kind, mode, tmp_path, lit):
    docs = by_kind(kind)
    cfg = lit.config(sources=[PROVIDER[kind]], max_results=50)
    settings = agent_settings(tmp_path, vision_model="offline", literature=cfg, literature_max=50)
    _serve(lit, kind)
    model = None
    if mode == "chat":
        model = _obeying_model(tool_call("search_literature", query="FHL2 colon"), len(docs), docs)
    try:
        with Assistant(settings, chat_model=model) as assistant:
            answer = assistant.ask(QUESTION)
    finally:
        lit.tavily_results, lit.wikipedia_pages = tavily_results([]), wikipedia_pages([])
    shown = answer.text + "\n".join(s.title + " " + s.snippet for s in answer.sources)
    assert not leaked(shown), answer.text
    if model is not None:
        prompt = model.prompts[-1][-1].content
        assert "<source" in prompt and not leaked(prompt)


class InjectedCases(Toolbox):
    """The real toolbox, with the retriever's answer replaced by the corpus' captions."""

    def similar(self, loaded, text, k):
        docs = by_kind("caption")[:k]
        return [
            SimilarCase(
                id=f"case-{i}", score=0.9 - i / 10, caption=d.text, metadata={"note": d.text}
            )
            for i, d in enumerate(docs)
        ]


@pytest.mark.parametrize("mode", ["rules", "chat"])
def test_injected_captions_never_reach_the_answer(mode, tmp_path, images):
    docs = by_kind("caption")
    settings = agent_settings(tmp_path, vision_model="offline", similar_k=len(docs))
    model = None
    if mode == "chat":
        model = _obeying_model(tool_call("similar_cases", k=len(docs)), len(docs), docs)
    with Assistant(settings, chat_model=model, toolbox=InjectedCases(settings)) as assistant:
        answer = assistant.ask("Show me similar cases.", [images["ihc"]])
    shown = answer.text + "\n".join(s.title + " " + s.snippet for s in answer.sources)
    assert not leaked(shown), answer.text
    if mode == "rules":
        assert [s.kind for s in answer.sources] == ["case"] * len(docs)
