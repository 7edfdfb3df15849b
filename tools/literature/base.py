"""The provider interface, the result type, and the rules for retrieved text.

Every provider (PubMed, arXiv, web, Wikipedia) is a small class with a ``name`` and
``search(query, max_results) -> list[Source]``; it raises ``ProviderUnavailable`` with a one-line
reason when the service cannot answer, and the fan-out reports it as
``"source unavailable: <reason>"`` while the other providers go on.

Retrieved text is data, never instructions: ``clean_text`` strips markup, unescapes entities,
drops control characters and caps the length before anything reaches the agent or a report.
"""

from __future__ import annotations

import html
import re
from typing import Protocol

from pydantic import BaseModel, Field

from litevlm.types import Source

PROVIDERS = ("pubmed", "arxiv", "web", "wikipedia")
MAX_TITLE_CHARS = 500
MAX_AUTHORS = 25

# Only things shaped like tags: "P<0.05" or "a < b" in an abstract are text, not markup.
_TAG = re.compile(r"<!--.*?-->|</?([A-Za-z][\w:-]*)(?:\s[^<>]{0,2000})?/?>", re.S)
# Inline markup joins its neighbours ("p<sub>trend</sub>" -> "ptrend"); block markup separates.
_INLINE = frozenset(
    {"a", "abbr", "b", "bdi", "cite", "code", "em", "i", "mark", "q", "s", "small", "span"}
    | {"strong", "sub", "sup", "u"}
)
_SCRIPT = re.compile(r"<(script|style)\b.*?</\1\s*>", re.S | re.I)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_SPACE = re.compile(r"\s+")


class ProviderUnavailable(Exception):
    """A provider could not answer; ``reason`` is safe to show (no query text, no keys)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Provider(Protocol):
    name: str

    def search(self, query: str, max_results: int) -> list[Source]: ...


class LiteratureResult(BaseModel):
    """What a literature search returns to the agent, the CLI and the UI."""

    query: str = Field(default="", description="the query as sent, after redaction")
    sources: list[Source] = Field(default_factory=list)
    unavailable: dict[str, str] = Field(
        default_factory=dict, description='provider -> "source unavailable: <reason>"'
    )
    redacted: int = Field(default=0, description="identifier terms removed from the query")
    timings: dict[str, float] = Field(default_factory=dict, description="seconds per provider")
    cached: list[str] = Field(default_factory=list, description="providers answered from cache")


def clean_text(text: str | None, max_chars: int) -> str:
    """Plain, single-line, capped text from whatever a service returned."""
    if not text:
        return ""
    text = _SCRIPT.sub(" ", text)
    text = _TAG.sub(_tag_replacement, text)
    text = html.unescape(text)
    text = _TAG.sub(_tag_replacement, text)  # markup that arrived entity-escaped
    text = _CONTROL.sub("", text)
    text = _SPACE.sub(" ", text).strip()
    if len(text) > max_chars:
        text = text[: max_chars - 1].rstrip() + "…"
    return text


def _tag_replacement(match: re.Match[str]) -> str:
    name = (match.group(1) or "").lower()
    return "" if name in _INLINE else " "


def unavailable(reason: str) -> str:
    return f"source unavailable: {reason}"
