"""One renderer for every report litevlm writes: a ``Page`` as HTML (jinja2) or Markdown.

A page is a title, a disclaimer, lines under the title, and sections; a section holds blocks in
order: paragraphs, tables, figures, bullet lists, warnings and nested sections. The templates
are package files (``litevlm/templates/``), so the HTML look is edited there, once. Text is
escaped; figures are file paths relative to the report or ``data:`` URIs (self-contained pages).

    page = Page(title="litevlm evaluation", disclaimer=DISCLAIMER, sections=[
        Section(title="Side by side", blocks=[Table(head=["model", "acc."], rows=[["a", "0.9"]])]),
    ])
    html, md = render_html(page), render_markdown(page)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field


class Paragraph(BaseModel):
    kind: Literal["paragraph"] = "paragraph"
    text: str
    css: str = ""  # e.g. "src", "na", "warn" (styles in the template)


class Table(BaseModel):
    kind: Literal["table"] = "table"
    head: list[str] = Field(default_factory=list)
    rows: list[list[str]] = Field(default_factory=list)
    caption: str = ""


class Figure(BaseModel):
    kind: Literal["figure"] = "figure"
    src: str
    alt: str = ""
    caption: str = ""


class Bullets(BaseModel):
    kind: Literal["bullets"] = "bullets"
    items: list[str] = Field(default_factory=list)
    ordered: bool = False


class Section(BaseModel):
    kind: Literal["section"] = "section"
    title: str
    id: str = ""
    card: bool = False  # drawn as a bordered card (one per image in the agent's report)
    blocks: list[Block] = Field(default_factory=list)


Block = Annotated[Paragraph | Table | Figure | Bullets | Section, Field(discriminator="kind")]
Section.model_rebuild()


class Page(BaseModel):
    title: str
    disclaimer: str = ""
    lines: list[str] = Field(default_factory=list)  # under the title: data, date, models
    sections: list[Section] = Field(default_factory=list)


def _env():  # jinja2 is imported here so `litevlm --help` stays instant
    import jinja2

    return jinja2.Environment(
        loader=jinja2.PackageLoader("litevlm", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_html(page: Page) -> str:
    """A standalone HTML page (inline CSS)."""
    return _env().get_template("page.html.j2").render(page=page)


def render_markdown(page: Page) -> str:
    """The same page as GitHub Markdown."""
    out = [f"# {page.title}", ""]
    if page.disclaimer:
        out += [f"> {page.disclaimer}", ""]
    out += [line + "\n" for line in page.lines]
    for s in page.sections:
        out += _md_section(s, 2)
    if page.disclaimer:
        out += ["---", "", page.disclaimer, ""]
    return "\n".join(out).rstrip() + "\n"


def markdown_table(t: Table) -> str:
    lines = []
    if t.head:
        lines += ["| " + " | ".join(map(_cell, t.head)) + " |", "|" + "---|" * len(t.head)]
    lines += ["| " + " | ".join(map(_cell, r)) + " |" for r in t.rows]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_section(s: Section, level: int) -> list[str]:
    out = [f"{'#' * min(level, 6)} {s.title}", ""]
    for b in s.blocks:
        if isinstance(b, Paragraph):
            out += [b.text, ""]
        elif isinstance(b, Table):
            if b.caption:
                out += [b.caption, ""]
            out += [markdown_table(b), ""]
        elif isinstance(b, Figure):
            out += [f"![{b.alt or b.caption}]({b.src})", ""]
            if b.caption:
                out += [f"_{b.caption}_", ""]
        elif isinstance(b, Bullets):
            mark = (lambda i: f"{i}.") if b.ordered else (lambda i: "-")
            out += [f"{mark(i)} {t}" for i, t in enumerate(b.items, 1)] + [""]
        elif isinstance(b, Section):
            out += _md_section(b, level + 1)
    return out
