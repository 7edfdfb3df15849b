"""Wikipedia (the product's secondary source) through the MediaWiki Action API, with httpx.

One request: ``generator=search`` finds the pages and ``prop=extracts|info`` returns each page's
plain-text introduction and canonical URL. Answers follow ``formatversion=2``; an API error
arrives as HTTP 200 with an ``error`` object.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from litevlm.types import Source
from tools.literature.base import MAX_TITLE_CHARS, clean_text
from tools.literature.http import (
    PermanentError,
    RetryPolicy,
    TransientError,
    parse_retry_after,
    send,
    with_retries,
)

if TYPE_CHECKING:
    import httpx

    from litevlm.config import LiteratureConfig
    from tools.literature.ratelimit import LimiterRegistry

# MediaWiki error codes that mean "try again later".
_TRANSIENT_CODES = frozenset({"maxlag", "ratelimited", "readonly", "internal_api_error"})


def page_url(api_url: str, title: str) -> str:
    parts = urlsplit(api_url)
    return f"{parts.scheme}://{parts.netloc}/wiki/{quote(title.replace(' ', '_'), safe='')}"


def parse_wikipedia(body: Any, api_url: str, max_chars: int) -> list[Source]:
    """Sources from a MediaWiki ``generator=search`` + ``prop=extracts|info`` answer."""
    if not isinstance(body, dict):
        raise PermanentError("Wikipedia: malformed response (not a JSON object)")
    if isinstance(body.get("error"), dict):
        code = str(body["error"].get("code", "unknown"))
        info = clean_text(str(body["error"].get("info", "")), 200)
        if code in _TRANSIENT_CODES:
            raise TransientError(f"Wikipedia: {code} ({info})")
        raise PermanentError(f"Wikipedia: API error {code} ({info})")
    query = body.get("query")
    if query is None:
        return []  # no matches: MediaWiki omits "query" entirely
    pages = query.get("pages") if isinstance(query, dict) else None
    if isinstance(pages, dict):  # formatversion=1
        pages = list(pages.values())
    if not isinstance(pages, list):
        raise PermanentError("Wikipedia: malformed response (no pages list)")
    pages = [p for p in pages if isinstance(p, dict) and p.get("title") and not p.get("missing")]
    pages.sort(key=lambda p: p.get("index", 0))
    sources = []
    for p in pages:
        title = str(p["title"])
        url = p.get("canonicalurl") or p.get("fullurl") or page_url(api_url, title)
        sources.append(
            Source(
                kind="wikipedia",
                id=str(url),
                title=clean_text(title, MAX_TITLE_CHARS),
                venue="Wikipedia",
                url=str(url),
                snippet=clean_text(str(p.get("extract") or p.get("snippet") or ""), max_chars),
            )
        )
    return sources


class WikipediaProvider:
    name = "wikipedia"

    def __init__(
        self, settings: LiteratureConfig, client: httpx.Client, limiters: LimiterRegistry
    ) -> None:
        self.settings = settings
        self.client = client
        self.base = settings.wikipedia_base_url
        self.limiter = limiters.get(self.name, self.base, 1.0 / settings.wikipedia_rate_per_s)
        self.policy = RetryPolicy.from_settings(settings)

    def search(self, query: str, max_results: int) -> list[Source]:
        params = {
            "action": "query",
            "format": "json",
            "formatversion": "2",
            "generator": "search",
            "gsrsearch": query,
            "gsrlimit": str(max_results),
            "gsrnamespace": "0",
            "prop": "extracts|info",
            "exintro": "1",
            "explaintext": "1",
            "exlimit": str(max_results),
            "inprop": "url",
            "maxlag": "5",
        }
        contact = f"; {self.settings.email}" if self.settings.email else ""
        # Wikimedia's policy asks for a User-Agent that names the tool and a contact.
        headers = {"User-Agent": f"litevlm/0.1 ({self.settings.tool}{contact})"}

        def attempt() -> list[Source]:
            response = send(
                self.client,
                "GET",
                self.base,
                "Wikipedia",
                timeout_s=self.policy.timeout_s,
                params=params,
                headers=headers,
            )
            try:
                body = response.json()
            except ValueError:
                raise PermanentError("Wikipedia: malformed response (not JSON)") from None
            try:
                return parse_wikipedia(body, self.base, self.settings.max_snippet_chars)
            except TransientError as e:  # maxlag and friends come as HTTP 200 + Retry-After
                raise TransientError(
                    e.reason, parse_retry_after(response.headers.get("Retry-After"))
                ) from None

        return with_retries(attempt, policy=self.policy, limiter=self.limiter, name=self.name)[
            :max_results
        ]
