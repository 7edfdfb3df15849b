"""One renderer for every report litevlm writes: a ``Page`` as HTML (jinja2) or Markdown.

A page is a title, a disclaimer, lines under the title, and sections; a section holds blocks in
order: paragraphs, tables, figures, bullet lists, warnings and nested sections. The templates
are package files (``litevlm/templates/``), so the HTML look is edited there, once.

Every text is data, never markup: the HTML escapes it (jinja2 autoescape) and the Markdown
backslash-escapes what would turn it into HTML, a link or an image (``<``, ``](``, ``\\``), so an
abstract holding ``<script>`` or ``![x](http://...)`` renders as the characters it is. Figures
are file paths relative to the report, or ``data:`` URIs: ``render_html(page, inline=DIR)``
inlines the files under DIR, for a page that is one self-contained file.

    page = Page(title="litevlm evaluation", disclaimer=DISCLAIMER, sections=[
        Section(title="Side by side", blocks=[Table(head=["model", "acc."], rows=[["a", "0.9"]])]),
    ])
    html, md = render_html(page), render_markdown(page)
"""

from __future__ import annotations

import base64
import mimetypes
import re
from pathlib import Path
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
    css: str = ""  # "pixels": scaled up without smoothing (small images, masks)


class Bullets(BaseModel):
    kind: Literal["bullets"] = "bullets"
    items: list[str] = Field(default_factory=list)
    ordered: bool = False
    numbers: list[int] | None = None  # an ordered list's own numbers (citations: [n] is item n)
    css: str = ""


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


def render_html(page: Page, inline: Path | None = None) -> str:
    """A standalone HTML page (inline CSS); with ``inline``, the figures found under that folder
    are embedded as ``data:`` URIs, so the page is one file."""
    if inline is not None:
        page = page.model_copy(
            update={"sections": [_inlined(s, Path(inline)) for s in page.sections]}
        )
    return _env().get_template("page.html.j2").render(page=page)


def _inlined(section: Section, root: Path) -> Section:
    blocks: list[Block] = []
    for b in section.blocks:
        if isinstance(b, Section):
            b = _inlined(b, root)
        elif isinstance(b, Figure) and (uri := data_uri(root / b.src)) is not None:
            b = b.model_copy(update={"src": uri})
        blocks.append(b)
    return section.model_copy(update={"blocks": blocks})


def data_uri(path: Path) -> str | None:
    """A file as a ``data:`` URI (None when it is not a file, or a URI already)."""
    if str(path).startswith("data:") or not path.is_file():
        return None
    kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{kind};base64," + base64.b64encode(path.read_bytes()).decode()


def render_markdown(page: Page) -> str:
    """The same page as GitHub Markdown."""
    out = [f"# {md_text(page.title)}", ""]
    if page.disclaimer:
        out += [f"> {md_text(page.disclaimer)}", ""]
    out += [md_text(line) + "\n" for line in page.lines]
    for s in page.sections:
        out += _md_section(s, 2)
    if page.disclaimer:
        out += ["---", "", md_text(page.disclaimer), ""]
    return "\n".join(out).rstrip() + "\n"


_MD_ACTIVE = re.compile(r"\\|<|\]\(|\]\[|\]:")


def md_text(text: str) -> str:
    """Text as inert Markdown: no raw HTML (``<``), no link or image (``](``, ``][``, ``]:``),
    and a backslash in the text cannot undo those escapes. Citations like ``[1]`` stay as
    written."""
    return _MD_ACTIVE.sub(lambda m: "\\" + m.group(0), text)


def markdown_table(t: Table) -> str:
    lines = []
    if t.head:
        lines += ["| " + " | ".join(map(_cell, t.head)) + " |", "|" + "---|" * len(t.head)]
    lines += ["| " + " | ".join(map(_cell, r)) + " |" for r in t.rows]
    return "\n".join(lines)


def _cell(text: str) -> str:
    return md_text(text).replace("|", "\\|").replace("\n", " ")


def _md_section(s: Section, level: int) -> list[str]:
    out = [f"{'#' * min(level, 6)} {md_text(' '.join(s.title.split()))}", ""]
    for b in s.blocks:
        if isinstance(b, Paragraph):
            out += [md_text(b.text), ""]
        elif isinstance(b, Table):
            if b.caption:
                out += [md_text(b.caption), ""]
            out += [markdown_table(b), ""]
        elif isinstance(b, Figure):
            alt = re.sub(r"[\\\[\]<]", lambda m: "\\" + m.group(0), b.alt or b.caption)
            out += [f"![{alt}](<{b.src}>)" if " " in b.src else f"![{alt}]({b.src})", ""]
            if b.caption:
                out += [f"_{md_text(b.caption)}_", ""]
        elif isinstance(b, Bullets):
            numbers = b.numbers or range(1, len(b.items) + 1)
            marks = [f"{n}." if b.ordered else "-" for n in numbers]
            # an item is one line: a blank line inside it would end the list
            items = [md_text(" ".join(t.split())) for t in b.items]
            out += [f"{m} {t}" for m, t in zip(marks, items, strict=False)] + [""]
        elif isinstance(b, Section):
            out += _md_section(b, level + 1)
    return out
