"""Citations: tool records become numbered sources; the verify step checks every sentence.

A claim is a sentence. It is kept when it cites at least one source that exists; citations of
sources that do not exist are dropped; a sentence left with none is removed and reported.
Lines starting with ``Note:`` and headings are not claims. Sources are renumbered in order of
first citation, and sources nobody cites are dropped, so ``[n]`` always resolves.
"""

from __future__ import annotations

import re
from typing import Any

from litevlm.types import Source

KIND_LABELS = {"header": "image header"}  # how a source kind is named in a source list
CITE = re.compile(r"\s?\[(\d+(?:\s*[,–-]\s*\d+)*)\]")
_ABBREV = ("e.g.", "i.e.", "et al.", "approx.", "vs.", "fig.", "dr.", "no.", "cf.", "ca.")


def cited_numbers(text: str) -> list[int]:
    nums: list[int] = []
    for group in CITE.findall(text):
        for part in re.split(r"\s*,\s*", group):
            if re.search(r"[–-]", part):
                a, b = (int(x) for x in re.split(r"\s*[–-]\s*", part)[:2])
                nums.extend(range(min(a, b), min(max(a, b), min(a, b) + 50) + 1))
            else:
                nums.append(int(part))
    return nums


def split_sentences(paragraph: str) -> list[str]:
    """Split at . ! ? followed by space, not inside quotes and not after an abbreviation.

    Citations written after the full stop (``claim. [1] Next``) stay with their sentence.
    """
    out: list[str] = []
    start, quote = 0, False
    i, n = 0, len(paragraph)
    while i < n:
        ch = paragraph[i]
        if ch in '"“”':
            quote = not quote if ch == '"' else ch == "“"
        elif ch in ".!?" and not quote:
            j = i + 1
            while j < n and paragraph[j] in "\"”)’'":
                j += 1
            # citations right after the stop belong to this sentence
            while True:
                m = CITE.match(paragraph, j)
                if not m:
                    break
                j = m.end()
            if j >= n or paragraph[j].isspace():
                piece = paragraph[start:j]
                if not piece.lower().rstrip().endswith(_ABBREV) or j >= n:
                    out.append(piece.strip())
                    start = j
                i = j
                continue
        i += 1
    tail = paragraph[start:].strip()
    if tail:
        out.append(tail)
    return [s for s in out if s]


def _is_claim(line: str) -> bool:
    s = line.strip()
    return bool(s) and not s.startswith(("Note:", "#", "---")) and bool(re.search(r"\w", s))


def verify(text: str, sources: list[Source]) -> tuple[str, list[Source], list[str]]:
    """Keep only cited claims; return (text, renumbered cited sources, warnings)."""
    known = {s.n for s in sources}
    warnings: list[str] = []
    order: list[int] = []
    kept_lines: list[str] = []
    for line in text.splitlines():
        if not _is_claim(line):
            kept_lines.append(line)
            continue
        kept: list[str] = []
        for sentence in split_sentences(line):
            nums = cited_numbers(sentence)
            bad = [k for k in nums if k not in known]
            good = [k for k in nums if k in known]
            if bad:
                warnings.append(f"dropped citation(s) {sorted(set(bad))} to no source")
            if not good:
                if _is_claim(sentence):
                    short = CITE.sub("", sentence)
                    short = short if len(short) <= 80 else short[:77] + "..."
                    warnings.append(f"removed a claim that cites no source: {short!r}")
                continue
            for k in good:
                if k not in order:
                    order.append(k)
            kept.append(_rewrite(sentence, known))
        if kept:
            kept_lines.append(" ".join(kept))
    renumber = {old: new for new, old in enumerate(order, 1)}
    body = "\n".join(kept_lines).strip()
    body = re.sub(r"\n{3,}", "\n\n", body)
    body = CITE.sub(lambda m: _renumber(m, renumber), body)
    by_n = {s.n: s for s in sources}
    cited = [by_n[old].model_copy(update={"n": new}) for old, new in renumber.items()]
    return body, cited, warnings


def _rewrite(sentence: str, known: set[int | None]) -> str:
    """Drop the citation numbers that resolve to nothing; keep the rest as [a][b]."""

    def repl(m: re.Match[str]) -> str:
        nums = [k for k in cited_numbers(m.group(0)) if k in known]
        return " " + "".join(f"[{k}]" for k in dict.fromkeys(nums)) if nums else ""

    return CITE.sub(repl, sentence)


def _renumber(m: re.Match[str], mapping: dict[int, int]) -> str:
    nums = [mapping[k] for k in cited_numbers(m.group(0)) if k in mapping]
    lead = " " if m.group(0).startswith(" ") else ""
    return lead + "".join(f"[{k}]" for k in dict.fromkeys(nums))


def format_source(s: Source) -> str:
    """One line of a source list: ``[n] title — who, year, id (url)``."""
    parts = [s.title or s.id]
    if s.authors:
        who = s.authors[0] + (" et al." if len(s.authors) > 1 else "")
        parts.append(who)
    if s.year:
        parts.append(str(s.year))
    ident = {
        "pubmed": f"PMID {s.id}",
        "arxiv": f"arXiv:{s.id}",
    }.get(s.kind, s.id if s.kind in {"case", "vision", "measurement"} else "")
    if s.doi:
        ident = (ident + f", doi:{s.doi}").strip(", ")
    if ident:
        parts.append(ident)
    kind = KIND_LABELS.get(s.kind, s.kind)
    line = f"[{s.n}] ({kind}) " + " — ".join(p for p in parts if p)
    if s.url:
        line += f" <{s.url}>"
    return line


def format_sources(sources: list[Source]) -> str:
    return "\n".join(format_source(s) for s in sources)


def number_sources(items: list[dict[str, Any]]) -> list[Source]:
    """Give each source a number, merging duplicates (the same paper found twice)."""
    out: list[Source] = []
    seen: dict[tuple[str, str], Source] = {}
    for item in items:
        src = Source.model_validate(item)
        ident = (src.kind, src.id)
        if ident in seen:
            continue
        src = src.model_copy(update={"n": len(out) + 1})
        seen[ident] = src
        out.append(src)
    return out
