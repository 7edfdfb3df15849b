"""``litevlm report``: Markdown, self-contained HTML and JSON; bad images listed, run goes on."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from agent_fixtures import agent_settings, build_case_index, write_sample_images
from literature_fixtures import serve_fixtures
from typer.testing import CliRunner

from agent.report import Report, build_report, load_questions
from litevlm.errors import ConfigError
from litevlm.types import DISCLAIMER

VOID = {"meta", "img", "br", "hr", "link", "input", "col", "area", "base", "source", "wbr"}


class TagChecker(HTMLParser):
    """Every element closed in order; images are data: URIs; nothing loaded from elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images: list[str] = []
        self.doctype = False

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl.lower() == "doctype html"

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.images.append(a.get("src", ""))
        if tag in ("script", "link") or (tag != "img" and a.get("src")):
            self.errors.append(f"external resource: <{tag}>")
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()


def check_html(text: str) -> TagChecker:
    checker = TagChecker()
    checker.feed(text)
    checker.close()
    assert checker.doctype
    assert not checker.errors, checker.errors[:5]
    assert not checker.stack, checker.stack
    return checker


@pytest.fixture(scope="module")
def lit():
    with serve_fixtures() as server:
        yield server


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report_images")
    write_sample_images(root)
    return root


QUESTIONS = """
default:
  - How many nuclei are there?
images:
  ihc.png:
    - What is known about the heme irons of flavocytochrome C552?
"""


def test_report_files_are_complete_and_the_html_is_self_contained(
    tmp_path, tiny_paligemma, lit, folder
):
    settings = agent_settings(
        tmp_path, vision_model=tiny_paligemma, literature=lit.config(sources=["pubmed"])
    )
    build_case_index(tmp_path / "cases", settings)
    qfile = tmp_path / "q.yaml"
    qfile.write_text(QUESTIONS)
    out = tmp_path / "out"
    report = build_report([folder], out, settings, questions=qfile, progress=False)

    assert [i.name for i in report.images] == ["cell.png", "ihc.png"]
    assert [Path(b.path).name for b in report.bad] == ["broken.png"]
    ihc = report.images[1]
    assert ihc.description is not None and str(tiny_paligemma) in ihc.description_model
    assert ihc.measurement["kind"] == "ihc" and ihc.overlay_file
    assert ihc.similar and ihc.literature
    assert [qa.question for qa in ihc.answers] == [
        "Describe this image.",
        "How many nuclei are there?",
        "What is known about the heme irons of flavocytochrome C552?",  # a recorded paper's
    ]
    assert any(k.endswith("(reused)") for k in ihc.timings)  # the count reused the measurement
    for qa in ihc.answers:
        assert qa.answer.sources and re.search(r"\[\d+\]", qa.answer.text)

    data = Report.model_validate_json((out / "report.json").read_text())
    assert data.disclaimer == DISCLAIMER and len(data.images) == 2

    md = (out / "report.md").read_text()
    assert DISCLAIMER in md and "broken.png" in md and "### Similar cases" in md
    assert (out / ihc.image_file).is_file() and (out / ihc.overlay_file).is_file()

    html = (out / "report.html").read_text()
    checker = check_html(html)
    assert ihc.heatmap_file and (out / ihc.heatmap_file).is_file()
    assert len(checker.images) == 6 and all(
        s.startswith("data:image/png;base64,") for s in checker.images
    )
    assert DISCLAIMER in html and "broken.png" in html and "PMID" in html


def test_report_without_vision_weights_says_so_and_shows_the_rest(tmp_path, lit, folder):
    from litevlm.cli import app

    settings_env = {
        "LITEVLM_DATA_DIR": str(tmp_path / "data"),
        "LITEVLM_VISION__MODEL": str(tmp_path / "missing-model"),
        "LITEVLM_VISION__LOCAL_FILES_ONLY": "true",
        "LITEVLM_RETRIEVAL__URI": str(tmp_path / "no-index"),
        "LITEVLM_LITERATURE__PUBMED_BASE_URL": "http://127.0.0.1:9/",
        "LITEVLM_LITERATURE__SOURCES": '["pubmed"]',
        "LITEVLM_LITERATURE__RETRIES": "0",
        "LITEVLM_AGENT__ROUTING": "keyword",
    }
    qfile = tmp_path / "q.yaml"
    qfile.write_text("- What is known about phase imaging?\n")
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "report",
            str(folder / "cell.png"),
            str(folder / "broken.png"),
            "--out",
            str(out),
            "--questions",
            str(qfile),
        ],
        env=settings_env,
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text())
    (cell,) = data["images"]
    assert cell["description"] is None and "missing-model" in cell["description_error"]
    assert cell["measurement"]["count"] is not None
    assert "pubmed" in cell["literature_unavailable"]
    assert len(data["bad"]) == 1
    html = (out / "report.html").read_text()
    check_html(html)
    assert "Vision model not available" in html
    assert "(not available)" in data["models"]["vision"]


def test_questions_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "q.yaml"
    bad.write_text("default: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"q\.yaml"):
        load_questions(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_questions(tmp_path / "missing.yaml")
    good = tmp_path / "g.yaml"
    good.write_text('default: ["a?"]\nimages:\n  x.png: ["b?"]\n')
    assert load_questions(good) == (["a?"], {"x.png": ["b?"]})


def test_text_from_outside_renders_inert(tmp_path):
    """An abstract, a title or a question holding HTML or a tracking image stays text."""
    from agent.report import QA, ImageReport, write_html, write_markdown
    from litevlm.types import Answer, Source

    script = "<script>alert(1)</script>"
    pixel = "![p](http://tracker.example/p.png)"
    paper = Source(
        n=1,
        kind="pubmed",
        id="123",
        title=f'FHL2 <img src="http://tracker.example/x.png" onerror="alert(1)"> {pixel}',
        url="javascript:alert(1)",
    )
    answer = Answer(text=f"FHL2 is expressed in the colon [1]. {script}", sources=[paper])
    (tmp_path / "figures").mkdir()
    write_sample_images(tmp_path / "figures")
    item = ImageReport(
        name="ihc.png",
        path="ihc.png",
        image_file="figures/ihc.png",
        description=f"Tissue. {script}",
        literature=[paper],
        answers=[QA(question=f"What about {script}?", answer=answer)],
    )
    report = Report(created="today", images=[item])
    write_html(report, tmp_path, tmp_path / "report.html")
    write_markdown(report, tmp_path / "report.md")
    html = (tmp_path / "report.html").read_text()
    checker = check_html(html)  # no <script>, nothing loaded from elsewhere
    assert len(checker.images) == 1 and checker.images[0].startswith("data:image/png;base64,")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "tracker.example/x.png&#34;" in html
    assert '<li value="1">(pubmed) FHL2 &lt;img' in html and DISCLAIMER in html

    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table").render((tmp_path / "report.md").read_text())
    checker = check_html("<!DOCTYPE html>" + md)
    assert checker.images == ["figures/ihc.png"] and "&lt;script&gt;" in md
