"""Routing of the questions the issue found misrouted, by meaning and by keywords alone.

The full labelled set (210 questions) is benchmarks/routing.py; these are the cases that must
never regress.
"""

from __future__ import annotations

import pytest
from retrieval_fixtures import minilm  # noqa: F401

from agent.routing import Router, clauses, route, stated_pixel_size

KEY_CASES = [
    ("What tube voltage (kVp) was used for this radiograph?", ["header"], ["kvp"]),
    ("What is the in-plane pixel spacing of this MR image?", ["header"], ["pixel_spacing"]),
    ("What is the voxel size of this volume?", ["header"], ["voxel_size"]),
    ("Is this image in focus?", ["measure"], ["focus"]),
    (
        "Estimate the nuclear density per mm2; the pixel size is 0.5 micrometres.",
        ["measure"],
        ["density"],
    ),
    (
        "What proportion of nuclei are strongly DAB positive (3+)? Give the H-score.",
        ["measure"],
        ["fraction_positive", "h_score", "intensity_grades"],
    ),
    ("What is the patient's name?", [], []),
    ("Who does this scan belong to?", [], []),  # an identifier question, not the modality
    ("Describe this image.", ["header", "measure", "vision"], []),
]


@pytest.fixture(scope="module")
def routers(minilm):  # noqa: F811
    return {"semantic": Router(minilm), "keyword": Router(semantic=False)}


@pytest.mark.parametrize("mode", ["semantic", "keyword"])
def test_the_issues_questions_reach_the_tool_that_has_the_fact(routers, mode):
    router = routers[mode]
    for question, tools, facts in KEY_CASES:
        r = route(question, router=router)
        assert r.method == mode, router.fallback_reason
        assert r.tools == tools, (question, r)
        assert set(facts) <= set(r.facts), (question, r.facts)
    assert route("What is the patient's name?", router=router).identifier
    assert not route("What is the patient's name?", router=router).describe
    assert route("Describe this image.", router=router).describe
    assert route("Estimate the nuclear density per mm2; the pixel size is 0.5 micrometres.",
                 router=router).pixel_size_um == 0.5  # fmt: skip


def test_follow_up_inherits_only_when_it_asks_nothing_new(routers):
    router = routers["keyword"]
    first = router.route("What kVp was used?")
    again = router.route("Same question for the other scan.", previous=first)
    assert again.followup and again.tools == ["header"] and again.facts == ["kvp"]
    own = router.route("and how large are they?", previous=router.route("Count the nuclei."))
    assert own.followup and own.tools == ["measure"] and "area" in own.facts


@pytest.mark.parametrize(
    ("text", "um"),
    [
        ("the pixel size is 0.5 micrometres", 0.5),
        ("at 0.5 µm/px", 0.5),
        ("0.25 mm pixel spacing", 250.0),
        ("scanned at 0.25 mpp", 0.25),
        ("each pixel is 200 nm", 0.2),
        ("resolution: 0.65 microns per pixel", 0.65),
        ("2 pixels per micron", 0.5),
        ("How many nuclei are there?", None),
        ("What is the pixel spacing?", None),
    ],
)
def test_stated_pixel_size(text, um):
    got, words, rest = stated_pixel_size(text)
    assert got == pytest.approx(um) if um else got is None
    assert (words in text and words not in rest) if um else rest == text


def test_clauses_split_only_where_a_second_thing_is_asked():
    assert clauses("How many nuclei are there, and how large are they?") == [
        "How many nuclei are there",
        "how large are they",
    ]
    assert clauses("Are there lymphocytes and neutrophils?") == [
        "Are there lymphocytes and neutrophils"
    ]


def test_missing_model_routes_by_keywords_with_a_reason():
    router = Router(model_id="/nonexistent/text-model")
    r = router.route("What tube voltage was used?")
    assert r.method == "keyword" and r.tools == ["header"]
    assert "text model unavailable" in router.fallback_reason
