"""Query every enabled provider at once; one slow or broken service never blocks the others.

``search_literature`` is what the agent, the CLI and the UI call:

1. identifiers of the current image are removed from the query before anything is sent or cached
   (the log says how many terms, never which);
2. each provider's answer is looked up in the SQLite cache (provider + normalised query);
3. the misses run concurrently in threads, each with its own timeout, retries and the shared
   rate limiter of its service; wall time is close to the slowest provider, not the sum;
4. a provider that fails after its last retry appears in ``unavailable`` as
   ``"source unavailable: <reason>"`` and the others' sources are returned.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from litevlm.config import LiteratureConfig
from litevlm.types import Source
from tools.literature.base import (
    PROVIDERS,
    LiteratureResult,
    Provider,
    ProviderUnavailable,
    unavailable,
)
from tools.literature.cache import LiteratureCache, cache_key
from tools.literature.http import PermanentError, TransientError
from tools.literature.ratelimit import LimiterRegistry, shared_limiters
from tools.privacy import redact

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)


def default_cache_path(data_dir: Path | None = None) -> Path:
    from litevlm.config import default_data_dir

    return (data_dir or default_data_dir()) / "cache" / "literature.sqlite"


def make_provider(
    name: str, settings: LiteratureConfig, client, limiters: LimiterRegistry
) -> Provider:
    """The provider called ``name`` (pubmed, arxiv, web, wikipedia)."""
    if name == "pubmed":
        from tools.literature.pubmed import PubMedProvider

        return PubMedProvider(settings, client, limiters)
    if name == "arxiv":
        from tools.literature.arxiv import ArxivProvider

        return ArxivProvider(settings, limiters)
    if name == "web":
        from tools.literature.web import TavilyProvider

        return TavilyProvider(settings, limiters)
    if name == "wikipedia":
        from tools.literature.wikipedia import WikipediaProvider

        return WikipediaProvider(settings, client, limiters)
    raise ValueError(f"unknown literature source {name!r}; choose from {', '.join(PROVIDERS)}")


def cache_scope(name: str, settings: LiteratureConfig) -> str:
    """The settings that change a provider's answers: part of its cache key."""
    s = settings
    if name == "web":
        domains = [
            ",".join(sorted(s.tavily_include_domains)),
            ",".join(sorted(s.tavily_exclude_domains)),
        ]
        return "|".join([s.tavily_base_url, s.tavily_topic, s.tavily_search_depth, *domains])
    return {"pubmed": s.pubmed_base_url, "arxiv": s.arxiv_base_url}.get(name, s.wikipedia_base_url)


def _check_sources(sources: list[str]) -> list[str]:
    from litevlm.errors import ConfigError

    bad = [s for s in sources if s not in PROVIDERS]
    if bad:
        raise ConfigError(
            f"unknown literature source {', '.join(map(repr, bad))}",
            f"choose from {', '.join(PROVIDERS)}",
        )
    return list(dict.fromkeys(sources))


def _dedupe(sources: list[Source]) -> list[Source]:
    """Drop a paper found twice (PubMed and arXiv share DOIs)."""
    seen: set[str] = set()
    out = []
    for s in sources:
        keys = {f"{s.kind}:{s.id}".lower()} | ({f"doi:{s.doi}".lower()} if s.doi else set())
        if keys & seen:
            continue
        seen |= keys
        out.append(s)
    return out


def search_literature(
    query: str,
    *,
    sources: list[str] | None = None,
    max_results: int | None = None,
    settings: LiteratureConfig | None = None,
    identifiers: dict[str, str] | None = None,
    use_cache: bool = True,
    cache_dir: Path | None = None,
    limiters: LimiterRegistry | None = None,
    http_client: httpx.Client | None = None,
) -> LiteratureResult:
    """Search the enabled providers concurrently; see the module docstring.

    ``cache_dir`` is the directory holding ``literature.sqlite`` (default: the data dir's
    ``cache``); ``limiters`` defaults to the process-wide registry so that every caller shares
    each service's rate limit; ``http_client`` lets a long-lived caller (agent, UI) reuse its
    connections (default: one client per call, made only when the cache misses).
    """
    started = time.perf_counter()
    data_dir = None
    if settings is None:
        from litevlm.config import load_settings

        full = load_settings()
        settings, data_dir = full.literature, full.data_dir
    names = _check_sources(sources if sources is not None else list(settings.sources))
    n = max_results or settings.max_results
    limiters = limiters or shared_limiters

    clean, removed = redact(query, identifiers or {})
    if removed:
        log.info("redacted %d identifier term(s) from a literature query", removed)
    result = LiteratureResult(query=clean, redacted=removed)
    if not clean.strip():
        for name in names:
            result.unavailable[name] = unavailable("the query is empty after redaction")
        return result

    cache = None
    if use_cache and settings.cache:
        path = (cache_dir / "literature.sqlite") if cache_dir else default_cache_path(data_dir)
        cache = LiteratureCache(path, settings.cache_ttl_s)

    answers: dict[str, list[Source]] = {}
    keys = {name: cache_key(clean, n, cache_scope(name, settings)) for name in names}
    misses = []
    for name in names:
        t0 = time.perf_counter()
        hit = cache.get(name, keys[name]) if cache else None
        if hit is not None:
            answers[name] = hit
            result.cached.append(name)
            result.timings[name] = time.perf_counter() - t0
        else:
            misses.append(name)

    if "web" in misses:
        from tools.literature.web import NO_KEY, tavily_key

        if not tavily_key(settings):  # disabled: say so without building a client
            result.unavailable["web"] = unavailable(NO_KEY)
            result.timings["web"] = 0.0
            misses.remove("web")

    if misses:
        import httpx

        # Made only on a miss: building an httpx client loads the CA bundle (~0.1 s).
        own_client = http_client is None
        client = httpx.Client(follow_redirects=True) if own_client else http_client
        try:
            providers = {name: make_provider(name, settings, client, limiters) for name in misses}

            def run(name: str) -> tuple[str, list[Source] | str, float]:
                t0 = time.perf_counter()
                try:
                    found = providers[name].search(clean, n)
                except (ProviderUnavailable, PermanentError, TransientError) as e:
                    return name, e.reason, time.perf_counter() - t0
                except Exception as e:  # a provider bug must not take the others down
                    log.exception("%s: unexpected error", name)
                    return name, f"{type(e).__name__}: {e}", time.perf_counter() - t0
                return name, found, time.perf_counter() - t0

            with ThreadPoolExecutor(max_workers=len(misses), thread_name_prefix="lit") as pool:
                for name, found, elapsed in pool.map(run, misses):
                    result.timings[name] = elapsed
                    if isinstance(found, str):
                        result.unavailable[name] = unavailable(found)
                        log.info("%s: %s", name, unavailable(found))
                    else:
                        answers[name] = found
                        if cache:
                            cache.put(name, keys[name], found)
        finally:
            if own_client:
                client.close()

    result.sources = _dedupe([s for name in names for s in answers.get(name, [])])
    result.timings["total"] = time.perf_counter() - started
    return result


async def asearch_literature(query: str, **kwargs) -> LiteratureResult:
    """``search_literature`` for async callers (the agent graph, the Chainlit UI).

    The work runs in a worker thread; providers still share the process-wide limiters, so
    concurrent tasks and threads together respect each service's rate.
    """
    return await asyncio.to_thread(search_literature, query, **kwargs)
