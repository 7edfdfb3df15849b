"""arXiv through the ``arxiv`` package (4.x): ``arxiv.Client(...).results(arxiv.Search(...))``.

The package's client has no timeout, sleeps between its own retries without honouring
Retry-After, and drops the body of an error answer. So it runs with ``num_retries=0`` and
``delay_seconds=0`` under our retry loop and our shared limiter (arXiv asks for >= 3 s between
calls), its endpoint comes from ``query_url_format`` (a documented class attribute, set per
instance), and its ``requests`` session (arxiv 4.x takes no session argument, hence the private
``_session``) gets a default timeout and a response hook that keeps the status, the
Retry-After header and the Atom error entry that arXiv sends with an HTTP 400.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from litevlm.types import Source
from tools.literature.base import MAX_AUTHORS, MAX_TITLE_CHARS, clean_text
from tools.literature.http import (
    PermanentError,
    RetryPolicy,
    TransientError,
    parse_retry_after,
    with_retries,
)

if TYPE_CHECKING:
    from litevlm.config import LiteratureConfig
    from tools.literature.ratelimit import LimiterRegistry

ARXIV_HOST = "export.arxiv.org"
ARXIV_MIN_DELAY_S = 3.0
_FIELD = re.compile(r"\b(ti|au|abs|co|jr|cat|rn|id|all):", re.I)
_TOKEN = re.compile(r"[\w.+&'-]+")
_VERSION = re.compile(r"v\d+$")
# "arXiv:1605.08386", "1605.08386v2", "arxiv:math/0211159": a lookup by id, not a search.
_ID_QUERY = re.compile(r"^\s*(?:arxiv:\s*(\S+)|(\d{4}\.\d{4,5}(?:v\d+)?))\s*$", re.I)


def arxiv_delay_s(settings: LiteratureConfig) -> float:
    host = urlsplit(settings.arxiv_base_url).hostname or ""
    if host.endswith("arxiv.org"):
        return max(settings.arxiv_delay_s, ARXIV_MIN_DELAY_S)
    return settings.arxiv_delay_s


def arxiv_query(query: str) -> str:
    """arXiv search syntax from free text: every word in any field (``all:a AND all:b``).

    A query already written in arXiv syntax (``ti:``, ``au:``, ``all:`` ...) is passed as is.
    """
    if _FIELD.search(query):
        return query
    tokens = [t for t in _TOKEN.findall(query) if t.upper() not in {"AND", "OR", "ANDNOT"}]
    return " AND ".join(f'all:"{t}"' if re.search(r"[^\w.-]", t) else f"all:{t}" for t in tokens)


def arxiv_id(query: str) -> str | None:
    """The arXiv id when the query is one (``arXiv:<id>`` or a bare new-style id)."""
    m = _ID_QUERY.match(query)
    return (m.group(1) or m.group(2)) if m else None


def error_summary(body: bytes) -> str | None:
    """The message of arXiv's Atom error entry (sent with HTTP 400), if there is one."""
    from lxml import etree

    atom = "{http://www.w3.org/2005/Atom}"
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(body, parser=parser)
    except etree.XMLSyntaxError:
        return None
    if root is None:
        return None
    for entry in root.iter(f"{atom}entry"):
        if "/api/errors" in (entry.findtext(f"{atom}id") or ""):
            return clean_text(entry.findtext(f"{atom}summary"), 200) or None
    return None


def check_feed(body: bytes) -> None:
    """Raise PermanentError unless ``body`` is a well-formed Atom feed."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        root = etree.fromstring(body, parser=parser)
    except etree.XMLSyntaxError as e:
        raise PermanentError(f"arXiv: malformed Atom feed ({e})") from None
    if root is None or root.tag != "{http://www.w3.org/2005/Atom}feed":
        raise PermanentError("arXiv: the answer is not an Atom feed")


def to_source(result: Any, max_chars: int) -> Source:
    short = _VERSION.sub("", result.get_short_id())
    return Source(
        kind="arxiv",
        id=short,
        title=clean_text(result.title, MAX_TITLE_CHARS),
        authors=[clean_text(a.name, 200) for a in result.authors[:MAX_AUTHORS]],
        year=result.published.year if result.published else None,
        venue=clean_text(result.journal_ref, 300) or "arXiv",
        doi=(result.doi or None),
        url=f"https://arxiv.org/abs/{short}",
        snippet=clean_text(result.summary, max_chars),
    )


class ArxivProvider:
    name = "arxiv"

    def __init__(self, settings: LiteratureConfig, limiters: LimiterRegistry) -> None:
        self.settings = settings
        self.base = settings.arxiv_base_url
        self.limiter = limiters.get(self.name, self.base, arxiv_delay_s(settings))
        self.policy = RetryPolicy.from_settings(settings)

    def _client(self, last: dict[str, Any], page_size: int):
        import arxiv
        from requests.adapters import HTTPAdapter

        timeout = self.policy.timeout_s

        class _TimeoutAdapter(HTTPAdapter):
            # requests has no session-wide timeout; arxiv passes none per request.
            def send(self, request, **kwargs):
                if kwargs.get("timeout") is None:
                    kwargs["timeout"] = timeout
                return super().send(request, **kwargs)

        def keep(response, *args, **kwargs):
            last["status"] = response.status_code
            last["retry_after"] = response.headers.get("Retry-After")
            last["body"] = response.content
            return response

        client = arxiv.Client(page_size=page_size, delay_seconds=0.0, num_retries=0)
        client.query_url_format = self.base + "?{}"
        session = client._session
        session.mount("http://", _TimeoutAdapter())
        session.mount("https://", _TimeoutAdapter())
        session.hooks["response"].append(keep)
        return client

    def search(self, query: str, max_results: int) -> list[Source]:
        import arxiv
        import requests

        paper_id = arxiv_id(query)
        search_query = "" if paper_id else arxiv_query(query)
        if not (paper_id or search_query):
            return []

        def attempt() -> list[Source]:
            last: dict[str, Any] = {}
            client = self._client(last, page_size=max_results)
            search = arxiv.Search(
                query=search_query,
                id_list=[paper_id] if paper_id else None,
                max_results=max_results,
            )
            try:
                results = list(client.results(search))
            except arxiv.HTTPError as e:
                status = e.status
                if status == 429 or status >= 500:
                    raise TransientError(
                        f"arXiv: HTTP {status}", parse_retry_after(last.get("retry_after"))
                    ) from None
                detail = error_summary(last.get("body", b""))
                raise PermanentError(
                    f"arXiv: HTTP {status}" + (f" ({detail})" if detail else "")
                ) from None
            except requests.exceptions.Timeout:
                raise TransientError(
                    f"arXiv: timed out after {self.policy.timeout_s:g} s"
                ) from None
            except requests.exceptions.ConnectionError as e:
                raise TransientError(f"arXiv: connection failed ({type(e).__name__})") from None
            except arxiv.ArxivError as e:
                raise TransientError(f"arXiv: {e.message}") from None
            finally:
                client._session.close()
            # arxiv's parser recovers from broken XML and returns nothing; say so instead.
            check_feed(last.get("body", b""))
            return [to_source(r, self.settings.max_snippet_chars) for r in results]

        return with_retries(attempt, policy=self.policy, limiter=self.limiter, name=self.name)
