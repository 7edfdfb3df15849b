"""Literature tools under real conditions: retries, timeouts, malformed answers, rate limits,
the cache, concurrent fan-out and the CLI, all against the local server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time

import pytest
from literature_fixtures import Reply, serve_fixtures

from tools.literature import asearch_literature, search_literature
from tools.literature.cache import LiteratureCache, cache_key, normalise_query
from tools.literature.http import (
    RetryPolicy,
    TransientError,
    parse_retry_after,
    with_retries,
)
from tools.literature.pubmed import ncbi_interval_s
from tools.literature.ratelimit import LimiterRegistry, RateLimiter


@pytest.fixture
def server():
    with serve_fixtures() as s:
        yield s


def _search(server, query="telomere", **kwargs):
    settings = kwargs.pop("settings", None) or server.config()
    kwargs.setdefault("use_cache", False)
    return search_literature(query, settings=settings, **kwargs)


# -- retries, backoff, Retry-After ---------------------------------------------------------------


def test_429_then_success_honours_retry_after(server):
    server.push("pubmed", Reply(status=429, headers={"Retry-After": "0.3"}, body=b"{}"))
    result = _search(server, sources=["pubmed"])
    assert result.unavailable == {}
    assert [s.id for s in result.sources] == ["12091962", "9997"]
    first, second, _efetch = server.requests_to("pubmed")
    assert second.path == first.path
    assert second.at - first.at >= 0.28  # waited what the server asked, not the tiny backoff


@pytest.mark.parametrize("service", ["arxiv", "web", "wikipedia"])
def test_429_then_success_on_every_provider(server, service):
    target = "tavily" if service == "web" else service
    server.push(target, Reply(status=429, headers={"Retry-After": "0"}, body=b""))
    result = _search(server, sources=[service])
    assert result.unavailable == {} and result.sources
    assert len(server.requests_to(target)) == 2


def test_500_forever_makes_the_source_unavailable_and_others_answer(server):
    server.push("pubmed", *[Reply(status=500, body=b"oops")] * 10)
    result = _search(server, sources=["pubmed", "wikipedia"], settings=server.config(retries=2))
    assert result.unavailable == {
        "pubmed": "source unavailable: PubMed esearch: HTTP 500 (after 3 tries)"
    }
    assert len(server.requests_to("pubmed")) == 3
    assert [s.kind for s in result.sources] == ["wikipedia", "wikipedia"]


@pytest.mark.parametrize(("service", "what"), [("arxiv", "arXiv"), ("web", "Tavily")])
def test_503_forever_on_library_backed_providers(server, service, what):
    target = "tavily" if service == "web" else service
    server.push(target, *[Reply(status=503, body=b"")] * 10)
    result = _search(server, sources=[service], settings=server.config(retries=1))
    assert result.unavailable[service] == f"source unavailable: {what}: HTTP 503 (after 2 tries)"
    assert len(server.requests_to(target)) == 2


def test_retry_after_beyond_the_cap_gives_up_at_once(server):
    server.push("wikipedia", Reply(status=429, headers={"Retry-After": "3600"}, body=b"{}"))
    result = _search(server, sources=["wikipedia"], settings=server.config(max_retry_after_s=5))
    assert result.unavailable["wikipedia"] == (
        "source unavailable: Wikipedia: rate limited (HTTP 429); server asks to retry after 3600 s"
    )
    assert len(server.requests_to("wikipedia")) == 1


@pytest.mark.parametrize(("service", "what"), [
    ("pubmed", "PubMed esearch"), ("arxiv", "arXiv"), ("web", "Tavily"), ("wikipedia", "Wikipedia"),
])  # fmt: skip
def test_timeout_then_unavailable(server, service, what):
    target = "tavily" if service == "web" else service
    server.push(target, *[Reply(delay_s=0.6)] * 2)
    settings = server.config(timeout_s=0.15, retries=1)
    result = _search(server, sources=[service], settings=settings)
    assert result.unavailable[service] == (
        f"source unavailable: {what}: timed out after 0.15 s (after 2 tries)"
    )


def test_timeout_then_success(server):
    server.push("wikipedia", Reply(delay_s=0.6))
    result = _search(server, sources=["wikipedia"], settings=server.config(timeout_s=0.15))
    assert result.unavailable == {} and len(result.sources) == 2


def test_connection_refused(server):
    settings = server.config(wikipedia_base_url="http://127.0.0.1:9/w/api.php", retries=1)
    result = _search(server, sources=["wikipedia"], settings=settings)
    assert result.unavailable["wikipedia"].startswith(
        "source unavailable: Wikipedia: connection failed"
    )


@pytest.mark.parametrize(("service", "body", "expected"), [
    ("pubmed", b"<eSearchResult><IdList><Id>1</Id>", "PubMed esearch: malformed XML"),
    ("arxiv", b"<feed xmlns='http://www.w3.org/2005/Atom'><entry><id>x", "arXiv: malformed Atom"),
    ("arxiv", b"<html><body>maintenance</body></html>", "arXiv: the answer is not an Atom feed"),
    ("web", b"{not json", "Tavily: malformed response (not JSON)"),
    ("web", b'{"results": "nope"}', "Tavily: malformed response (no results list)"),
    ("wikipedia", b"<html>", "Wikipedia: malformed response (not JSON)"),
    ("wikipedia", b'{"query": {"pages": 7}}', "Wikipedia: malformed response (no pages list)"),
])  # fmt: skip
def test_malformed_answers(server, service, body, expected):
    target = "tavily" if service == "web" else service
    server.push(target, Reply(body=body))
    result = _search(server, sources=[service])
    assert result.unavailable[service].startswith(f"source unavailable: {expected}")
    assert len(server.requests_to(target)) == 1  # not retried


def test_malformed_efetch_xml(server):
    server.push("pubmed", Reply(body=_esearch(["9997"])))
    server.push("pubmed", Reply(body=b"<PubmedArticleSet><PubmedArticle>"))
    result = _search(server, sources=["pubmed"])
    assert result.unavailable["pubmed"].startswith(
        "source unavailable: PubMed efetch: malformed XML"
    )


def _esearch(ids: list[str]) -> bytes:
    items = "".join(f"<Id>{i}</Id>" for i in ids)
    return f"<eSearchResult><Count>1</Count><IdList>{items}</IdList></eSearchResult>".encode()


def test_parse_retry_after_forms():
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert parse_retry_after("Sun, 22 Nov 2026 08:00:10 GMT", now=1795334400.0) == 10.0


def test_backoff_is_exponential():
    waits: list[float] = []
    calls = []

    def attempt():
        calls.append(1)
        raise TransientError("x: HTTP 503")

    policy = RetryPolicy(retries=3, backoff_s=1.0, max_backoff_s=3.0)
    with pytest.raises(Exception, match=r"x: HTTP 503 \(after 4 tries\)"):
        with_retries(attempt, policy=policy, sleep=waits.append)
    assert len(calls) == 4
    assert [round(w) for w in waits] == [1, 2, 3]  # 1, 2, 4 capped at 3 (±10% jitter)


# -- rate limits ---------------------------------------------------------------------------------


def _check_slots(slots: list[float], woke: list[float], interval: float) -> None:
    """Granted slots are ``interval`` apart, and nobody went before their slot.

    Slots, not wake-up times, are compared: on a loaded machine a thread may wake late, which
    bunches observed times without any limit being broken.
    """
    assert all(w >= s for s, w in zip(slots, woke, strict=True))
    ordered = sorted(slots)
    assert min(b - a for a, b in itertools.pairwise(ordered)) >= interval - 1e-9


def test_rate_limiter_spacing_across_threads():
    limiter = RateLimiter(0.02)
    slots: list[float] = []
    woke: list[float] = []
    lock = threading.Lock()

    def worker():
        for _ in range(3):
            slot = limiter.acquire()
            now = time.monotonic()
            with lock:
                slots.append(slot)
                woke.append(now)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(slots) == 12
    _check_slots(slots, woke, 0.02)


def test_rate_limiter_spacing_across_async_tasks_and_threads():
    limiter = RateLimiter(0.02)
    pairs: list[tuple[float, float]] = []

    async def task():
        slot = await limiter.aacquire()
        pairs.append((slot, time.monotonic()))

    def in_thread():
        for _ in range(3):
            slot = limiter.acquire()
            pairs.append((slot, time.monotonic()))

    async def main():
        thread = threading.Thread(target=in_thread)
        thread.start()
        await asyncio.gather(*(task() for _ in range(5)))
        await asyncio.to_thread(thread.join)

    asyncio.run(main())
    assert len(pairs) == 8
    _check_slots([p[0] for p in pairs], [p[1] for p in pairs], 0.02)


def test_rate_limiter_reservations_with_a_fake_clock():
    now = [100.0]
    limiter = RateLimiter(1 / 3, clock=lambda: now[0])
    slots = [limiter.reserve() for _ in range(4)]
    assert slots == pytest.approx([100, 100 + 1 / 3, 100 + 2 / 3, 101.0])
    now[0] += 5
    assert limiter.reserve() == 105.0


def test_provider_requests_are_spaced_by_the_limiter(server):
    settings = server.config(ncbi_rate_per_s=10.0)  # 100 ms between E-utilities calls
    for _ in range(2):
        _search(server, sources=["pubmed"], settings=settings)
    times = [r.at for r in server.requests_to("pubmed")]
    assert len(times) == 4
    # Arrival times at the server: 3 gaps of 100 ms, with slack for the first request's transit
    # (the limiter's own spacing is checked exactly by the tests above).
    assert times[-1] - times[0] >= 0.25


def test_limits_follow_policy_on_the_real_hosts():
    from litevlm.config import LiteratureConfig
    from tools.literature.arxiv import arxiv_delay_s

    real = LiteratureConfig(ncbi_rate_per_s=50, arxiv_delay_s=0.1)
    assert ncbi_interval_s(real, None) == pytest.approx(1 / 3)
    assert ncbi_interval_s(real, "key") == pytest.approx(1 / 10)
    assert ncbi_interval_s(LiteratureConfig(), None) == pytest.approx(1 / 3)
    assert arxiv_delay_s(real) == 3.0
    mirror = LiteratureConfig(pubmed_base_url="http://127.0.0.1:1/", ncbi_rate_per_s=50)
    assert ncbi_interval_s(mirror, None) == pytest.approx(1 / 50)


def test_registry_shares_one_limiter_per_service_host():
    reg = LimiterRegistry()
    a = reg.get("pubmed", "https://eutils.ncbi.nlm.nih.gov/entrez/eutils/", 0.34)
    b = reg.get("pubmed", "https://eutils.ncbi.nlm.nih.gov/other", 0.1)
    assert a is b and a.interval_s == 0.34  # a looser setting never relaxes it


# -- cache ---------------------------------------------------------------------------------------


def test_cache_hit_skips_the_network(server, tmp_path):
    settings = server.config()
    first = _search(
        server, "Telomere  length", settings=settings, use_cache=True, cache_dir=tmp_path
    )
    sent = len(server.requests)
    again = _search(
        server, "telomere length", settings=settings, use_cache=True, cache_dir=tmp_path
    )
    assert len(server.requests) == sent  # nothing sent
    assert sorted(again.cached) == sorted(settings.sources)
    assert again.sources == first.sources
    assert (tmp_path / "literature.sqlite").is_file()
    assert b"telomere" not in (tmp_path / "literature.sqlite").read_bytes()  # hashed keys only


def test_no_cache_always_asks(server, tmp_path):
    settings = server.config()
    for _ in range(2):
        r = _search(server, sources=["wikipedia"], settings=settings, use_cache=False,
                    cache_dir=tmp_path)  # fmt: skip
        assert r.cached == []
    assert len(server.requests_to("wikipedia")) == 2
    assert not (tmp_path / "literature.sqlite").exists()


def test_unavailable_answers_are_not_cached(server, tmp_path):
    server.push("wikipedia", *[Reply(status=500)] * 3)
    settings = server.config()
    bad = _search(
        server, sources=["wikipedia"], settings=settings, use_cache=True, cache_dir=tmp_path
    )
    good = _search(
        server, sources=["wikipedia"], settings=settings, use_cache=True, cache_dir=tmp_path
    )
    assert "wikipedia" in bad.unavailable and good.unavailable == {} and good.cached == []


def test_cache_default_location_is_the_data_dir(server, tmp_path, monkeypatch):
    monkeypatch.setenv("LITEVLM_DATA_DIR", str(tmp_path))
    _search(server, sources=["wikipedia"], use_cache=True)
    assert (tmp_path / "cache" / "literature.sqlite").is_file()


def test_cache_expiry(tmp_path):
    from litevlm.types import Source

    now = [1000.0]
    cache = LiteratureCache(tmp_path / "c.sqlite", ttl_s=60, clock=lambda: now[0])
    key = cache_key("Cell  Nuclei", 5, "https://x")
    src = [Source(kind="pubmed", id="1", title="t")]
    cache.put("pubmed", key, src)
    assert cache.get("pubmed", key) == src
    assert cache.get("pubmed", cache_key("cell nuclei", 5, "https://x")) == src
    assert cache.get("pubmed", cache_key("cell nuclei", 6, "https://x")) is None
    assert cache.get("arxiv", key) is None
    now[0] += 61
    assert cache.get("pubmed", key) is None
    assert cache.purge_expired() == 1


def test_cache_ttl_zero_in_settings_means_always_fresh(server, tmp_path):
    settings = server.config(cache_ttl_s=0)
    for _ in range(2):
        _search(
            server, sources=["wikipedia"], settings=settings, use_cache=True, cache_dir=tmp_path
        )
    assert len(server.requests_to("wikipedia")) == 2


def test_normalise_query():
    assert normalise_query("  Nuclei\tSEGMENTATION ") == "nuclei segmentation"
    assert normalise_query("ＨＥ stain") == "he stain"  # full-width letters


# -- fan-out -------------------------------------------------------------------------------------


def test_fan_out_runs_providers_concurrently(server):
    # Each service's first request waits until all four have arrived: a sequential fan-out
    # would never get past the barrier (it times out and the sources become unavailable).
    barrier = threading.Barrier(4, timeout=5)
    seen: set[str] = set()
    lock = threading.Lock()

    def gate(rec):
        with lock:
            first = rec.service not in seen
            seen.add(rec.service)
        if first:
            barrier.wait()

    server.on_request = gate
    result = _search(server)
    assert result.unavailable == {}
    assert {s.kind for s in result.sources} == {"pubmed", "arxiv", "web", "wikipedia"}
    assert set(result.timings) == {"pubmed", "arxiv", "web", "wikipedia", "total"}


def test_fan_out_order_dedupe_and_unknown_source(server):
    from litevlm.errors import ConfigError

    result = _search(server, sources=["wikipedia", "pubmed", "wikipedia"])
    assert [s.kind for s in result.sources] == ["wikipedia", "wikipedia", "pubmed", "pubmed"]
    with pytest.raises(ConfigError, match="unknown literature source 'scholar'"):
        _search(server, sources=["scholar"])


def test_async_variant(server):
    result = asyncio.run(asearch_literature("x", settings=server.config(), use_cache=False,
                                            sources=["wikipedia", "arxiv"]))  # fmt: skip
    assert {s.kind for s in result.sources} == {"wikipedia", "arxiv"}


# -- CLI -----------------------------------------------------------------------------------------


def _cli_env(server, monkeypatch):
    u = server.urls
    for key, value in {
        "PUBMED_BASE_URL": u.pubmed,
        "ARXIV_BASE_URL": u.arxiv,
        "TAVILY_BASE_URL": u.tavily,
        "WIKIPEDIA_BASE_URL": u.wikipedia,
        "NCBI_RATE_PER_S": "1000",
        "ARXIV_DELAY_S": "0",
        "BACKOFF_S": "0.01",
        "EMAIL": "tests@example.org",
    }.items():
        monkeypatch.setenv(f"LITEVLM_LITERATURE__{key}", value)
    monkeypatch.setenv("TAVILY_API_KEY", "tvly-cli")


def test_cli_prints_numbered_sources_with_links(server, monkeypatch):
    from typer.testing import CliRunner

    from litevlm.cli import app

    _cli_env(server, monkeypatch)
    server.pubmed_files = ["pubmed4.xml"]
    out = CliRunner().invoke(app, ["literature", "telomere", "--source", "pubmed,wikipedia",
                                   "--max", "2"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "[1] Leucocyte telomere length, genetic variants at the TERT gene region" in out.stdout
    assert "https://pubmed.ncbi.nlm.nih.gov/27797938/" in out.stdout
    assert "[2] H&E stain" in out.stdout and "[3] Cell nucleus" in out.stdout
    assert "https://en.wikipedia.org/wiki/Cell_nucleus" in out.stdout


def test_cli_json_and_cache(server, monkeypatch):
    from typer.testing import CliRunner

    from litevlm.cli import app

    _cli_env(server, monkeypatch)
    args = ["literature", "h&e", "--source", "web", "--json"]
    first = json.loads(CliRunner().invoke(app, args).stdout)
    assert [s["kind"] for s in first["sources"]] == ["web"] * 3
    second = json.loads(CliRunner().invoke(app, args).stdout)
    assert second["cached"] == ["web"]
    third = json.loads(CliRunner().invoke(app, [*args, "--no-cache"]).stdout)
    assert third["cached"] == []
    assert len(server.requests_to("tavily")) == 2


def test_cli_reports_unavailable_and_bad_source(server, monkeypatch):
    from typer.testing import CliRunner

    from litevlm.cli import app
    from litevlm.errors import ServiceUnavailable

    _cli_env(server, monkeypatch)
    server.push("wikipedia", *[Reply(status=500)] * 8)
    out = CliRunner().invoke(app, ["literature", "x", "--source", "wikipedia,arxiv", "--no-cache"])
    assert out.exit_code == 0
    assert "wikipedia: source unavailable: Wikipedia: HTTP 500 (after 4 tries)" in out.stderr
    out = CliRunner().invoke(app, ["literature", "x", "--source", "wikipedia", "--no-cache"])
    assert isinstance(out.exception, ServiceUnavailable)
    out = CliRunner().invoke(app, ["literature", "x", "--source", "scholar"])
    assert out.exit_code == 2 and "unknown source scholar" in out.output
