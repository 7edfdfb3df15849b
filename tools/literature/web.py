"""Web search through Tavily (``tavily-python``).

The key comes from ``[literature] tavily_api_key`` or ``TAVILY_API_KEY``. Without one the
provider is disabled with a clear message: tavily-python 0.8 would otherwise make a "keyless"
call, which we never do. The client gets our own ``requests`` session (a documented argument)
with a response hook, so a 429's Retry-After reaches our retry loop.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from litevlm.types import Source
from tools.literature.base import MAX_TITLE_CHARS, ProviderUnavailable, clean_text
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

NO_KEY = (
    "web search is disabled: no Tavily API key (set TAVILY_API_KEY or [literature] tavily_api_key)"
)


def parse_tavily(body: Any, max_chars: int) -> list[Source]:
    """Sources from a Tavily /search JSON body (``results: [{title, url, content, score}]``)."""
    if not isinstance(body, dict) or not isinstance(body.get("results"), list):
        raise PermanentError("Tavily: malformed response (no results list)")
    sources = []
    for r in body["results"]:
        if not isinstance(r, dict) or not isinstance(r.get("url"), str):
            continue
        url = r["url"].strip()
        if not url.startswith(("http://", "https://")) or len(url) > 2048:
            continue
        sources.append(
            Source(
                kind="web",
                id=url,
                title=clean_text(str(r.get("title") or url), MAX_TITLE_CHARS),
                url=url,
                snippet=clean_text(str(r.get("content") or ""), max_chars),
            )
        )
    return sources


def tavily_key(settings: LiteratureConfig) -> str | None:
    key = settings.tavily_api_key.get_secret_value() if settings.tavily_api_key else None
    return key or os.environ.get("TAVILY_API_KEY") or None


class TavilyProvider:
    name = "web"

    def __init__(self, settings: LiteratureConfig, limiters: LimiterRegistry) -> None:
        self.settings = settings
        self.api_key = tavily_key(settings)
        self.base = settings.tavily_base_url.rstrip("/")
        self.limiter = limiters.get(self.name, self.base, 1.0 / settings.tavily_rate_per_s)
        self.policy = RetryPolicy.from_settings(settings)

    def search(self, query: str, max_results: int) -> list[Source]:
        if not self.api_key:
            raise ProviderUnavailable(NO_KEY)
        import requests
        import tavily

        s = self.settings

        def attempt() -> list[Source]:
            last: dict[str, Any] = {}

            def keep(response, *args, **kwargs):
                last["retry_after"] = response.headers.get("Retry-After")
                return response

            session = requests.Session()
            session.hooks["response"].append(keep)
            # api_key is always passed: with a session and no key the client sends no auth.
            client = tavily.TavilyClient(
                api_key=self.api_key, api_base_url=self.base, session=session
            )
            try:
                body = client.search(
                    query,
                    search_depth=s.tavily_search_depth,
                    topic=s.tavily_topic,
                    max_results=max_results,
                    include_domains=s.tavily_include_domains or None,
                    exclude_domains=s.tavily_exclude_domains or None,
                    include_answer=False,
                    include_raw_content=False,
                    include_images=False,
                    timeout=self.policy.timeout_s,
                )
            except tavily.UsageLimitExceededError:
                raise TransientError(
                    "Tavily: rate limited (HTTP 429)", parse_retry_after(last.get("retry_after"))
                ) from None
            except tavily.InvalidAPIKeyError:
                raise PermanentError("Tavily: the API key was rejected (HTTP 401)") from None
            except tavily.BadRequestError as e:
                raise PermanentError(f"Tavily: bad request ({clean_text(str(e), 200)})") from None
            except tavily.errors.ForbiddenError:
                raise PermanentError(
                    "Tavily: forbidden, or plan or usage limit reached (HTTP 403/432/433)"
                ) from None
            except tavily.errors.TimeoutError:
                raise TransientError(
                    f"Tavily: timed out after {self.policy.timeout_s:g} s"
                ) from None
            except requests.exceptions.HTTPError as e:
                status = e.response.status_code if e.response is not None else 0
                if status == 429 or status >= 500:
                    raise TransientError(f"Tavily: HTTP {status}") from None
                raise PermanentError(f"Tavily: HTTP {status}") from None
            except requests.exceptions.JSONDecodeError:
                raise PermanentError("Tavily: malformed response (not JSON)") from None
            except requests.exceptions.Timeout:
                raise TransientError(
                    f"Tavily: timed out after {self.policy.timeout_s:g} s"
                ) from None
            except requests.exceptions.ConnectionError as e:
                raise TransientError(f"Tavily: connection failed ({type(e).__name__})") from None
            finally:
                session.close()
            return parse_tavily(body, s.max_snippet_chars)[:max_results]

        return with_retries(attempt, policy=self.policy, limiter=self.limiter, name=self.name)
