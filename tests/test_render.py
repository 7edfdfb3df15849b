"""litevlm.render: one Page as HTML (jinja2 package template) and Markdown."""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path

from markdown_it import MarkdownIt

from litevlm.render import (
    Bullets,
    Figure,
    Page,
    Paragraph,
    Section,
    Table,
    render_html,
    render_markdown,
)


def _page() -> Page:
    inner = Section(
        title="cells.png",
        card=True,
        id="img-1",
        blocks=[
            Figure(src="figures/cells.png", caption="overlay"),
            Bullets(items=["first", "second"], ordered=True),
            Paragraph(text="not available", css="na"),
        ],
    )
    return Page(
        title="Report <1>",
        disclaimer="Research use only.",
        lines=["Created today."],
        sections=[
            Section(
                title="Results",
                blocks=[Table(head=["a", "b|c"], rows=[["<b>x</b>", "1"]]), inner],
            )
        ],
    )


def test_html_escapes_and_nests():
    html = render_html(_page())
    assert "<title>Report &lt;1&gt;</title>" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert '<section class="card" id="img-1">' in html and "<h3>cells.png</h3>" in html
    assert '<img src="figures/cells.png" alt="overlay">' in html and "<ol><li>first" in html
    assert '<p class="na">not available</p>' in html
    assert html.count("Research use only.") == 2  # top and footer


def test_markdown_same_content():
    md = render_markdown(_page())
    assert md.startswith("# Report \\<1>\n\n> Research use only.")
    assert "| a | b\\|c |" in md and "### cells.png" in md
    assert "![overlay](figures/cells.png)" in md and "1. first" in md


HOSTILE = [
    "<script>alert(1)</script>",
    '<img src="http://tracker.example/p.png" onerror="alert(1)">',
    "![pixel](http://tracker.example/p.png?q=secret)",
    "[click](javascript:alert(1))",
    "\\<b>bold\\</b>",
    "![r][ref]\n\n[ref]: http://tracker.example/p.png",
    "<!-- hidden -->",
]


def _hostile_page() -> Page:
    blocks = [Paragraph(text=t) for t in HOSTILE]
    blocks += [
        Table(head=HOSTILE[:2], rows=[HOSTILE[2:4]]),
        Bullets(items=HOSTILE, ordered=True, numbers=list(range(1, len(HOSTILE) + 1))),
        Figure(src="figures/a.png", alt=HOSTILE[2], caption=HOSTILE[0]),
    ]
    return Page(title=HOSTILE[0], disclaimer=HOSTILE[1], lines=HOSTILE[2:4], sections=[
        Section(title=HOSTILE[2], blocks=blocks)
    ])  # fmt: skip


def test_outside_text_is_inert_in_html():
    html = render_html(_hostile_page())
    assert "<script" not in html and 'tracker.example/p.png"' not in html
    assert "<!-- hidden" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html  # shown, as the characters it is
    assert html.count("<img ") == 1 and '<img src="figures/a.png"' in html


def _tags(html: str) -> list[tuple[str, dict]]:
    found: list[tuple[str, dict]] = []
    parser = HTMLParser()
    parser.handle_starttag = lambda tag, attrs: found.append((tag, dict(attrs)))  # type: ignore[method-assign]
    parser.feed(html)
    return found


def test_outside_text_is_inert_in_markdown():
    """Rendered by a real CommonMark renderer: no tag, link or image comes out of the text."""
    md = render_markdown(_hostile_page())
    out = MarkdownIt("commonmark").enable("table").render(md)
    tags = _tags(out)
    assert {t for t, _ in tags} <= {"h1", "h2", "p", "blockquote", "table", "thead", "tbody",
                                    "tr", "th", "td", "ol", "li", "img", "em", "hr"}  # fmt: skip
    assert [a["src"] for t, a in tags if t == "img"] == ["figures/a.png"]
    assert sum(t == "li" for t, _ in tags) == len(HOSTILE)  # a blank line does not end the list
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out  # the text itself is all there
    assert "<p>![pixel](http://tracker.example/p.png?q=secret)</p>" in out


def test_citation_numbers_and_inlined_figures(tmp_path: Path):
    (tmp_path / "figures").mkdir()
    png = b"\x89PNG\r\n\x1a\n fake"
    (tmp_path / "figures" / "a.png").write_bytes(png)
    page = Page(title="t", sections=[Section(title="s", blocks=[
        Bullets(items=["paper", "case"], ordered=True, numbers=[2, 5], css="src"),
        Section(title="inner", blocks=[Figure(src="figures/a.png", css="pixels")]),
        Figure(src="figures/missing.png"),
    ])])  # fmt: skip
    html = render_html(page, inline=tmp_path)
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    assert f'<figure class="pixels"><img src="{uri}"' in html
    assert '<img src="figures/missing.png"' in html  # not a file: left as it is
    assert '<ol class="src"><li value="2">paper</li><li value="5">case</li></ol>' in html
    assert "2. paper\n5. case" in render_markdown(page)
    assert "data:" not in render_html(page)  # inlining only when asked
