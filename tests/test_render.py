"""litevlm.render: one Page as HTML (jinja2 package template) and Markdown."""

from __future__ import annotations

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
    assert md.startswith("# Report <1>\n\n> Research use only.")
    assert "| a | b\\|c |" in md and "### cells.png" in md
    assert "![overlay](figures/cells.png)" in md and "1. first" in md
