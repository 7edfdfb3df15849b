"""Literature fan-out and cache benchmark, offline.

Serves the recorded PubMed/arXiv answers (and Tavily/Wikipedia answers in their documented
shapes) from the local fixture server with injected per-request delays, then measures in the
same run:

- each provider alone (its wall time), and their sum: what a sequential loop would cost;
- the concurrent fan-out over all four: should be close to the slowest provider, not the sum;
- a cache hit for the whole fan-out (all four providers answered from SQLite): target < 5 ms.

    .venv/bin/python benchmarks/literature.py [--repeats 5] [--hits 200]

Prints a table and writes benchmarks/results/literature.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # literature_fixtures (a site-packages "tests" shadows)

# Seconds added to every answer of each service (PubMed makes two requests: esearch + efetch).
DELAYS = {"pubmed": 0.15, "arxiv": 0.40, "tavily": 0.25, "wikipedia": 0.20}
PROVIDERS = ["pubmed", "arxiv", "web", "wikipedia"]


def _median_wall(fn, repeats: int) -> tuple[float, list[float]]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement")
    parser.add_argument("--hits", type=int, default=200, help="timed cache-hit calls")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/literature.json")
    args = parser.parse_args()

    from literature_fixtures import serve_fixtures

    from tools.literature import search_literature
    from tools.literature.ratelimit import LimiterRegistry

    with serve_fixtures() as server, tempfile.TemporaryDirectory() as tmp:
        server.pubmed_files = ["pubmed4.xml", "pubmed7.xml"]
        server.delays.update(DELAYS)
        settings = server.config(timeout_s=10.0)
        limiters = LimiterRegistry()

        def run(sources, use_cache=False):
            r = search_literature(
                "telomere length imaging",
                sources=sources,
                settings=settings,
                use_cache=use_cache,
                cache_dir=Path(tmp),
                limiters=limiters,
            )
            assert not r.unavailable, r.unavailable
            return r

        run(PROVIDERS)  # warm-up: imports, connections
        single = {p: _median_wall(lambda p=p: run([p]), args.repeats)[0] for p in PROVIDERS}
        total_sequential = sum(single.values())
        fanout, fanout_all = _median_wall(lambda: run(PROVIDERS), args.repeats)

        first = run(PROVIDERS, use_cache=True)  # fills the cache
        hits = []
        for _ in range(args.hits):
            t0 = time.perf_counter()
            r = run(PROVIDERS, use_cache=True)
            hits.append(time.perf_counter() - t0)
        assert sorted(r.cached) == sorted(PROVIDERS) and r.sources == first.sources
        hits.sort()
        hit_median = statistics.median(hits)
        hit_p95 = hits[int(0.95 * (len(hits) - 1))]

    slowest = max(single.values())
    rows = [
        *[(f"{p} alone", f"{t * 1000:8.1f} ms") for p, t in single.items()],
        ("sum of providers (sequential)", f"{total_sequential * 1000:8.1f} ms"),
        ("fan-out, all four (concurrent)", f"{fanout * 1000:8.1f} ms"),
        ("  speed-up vs sum", f"{total_sequential / fanout:8.2f} x"),
        ("  fan-out / slowest provider", f"{fanout / slowest:8.2f} x"),
        ("cache hit, all four: median", f"{hit_median * 1000:8.2f} ms"),
        ("cache hit, all four: p95", f"{hit_p95 * 1000:8.2f} ms"),
        ("  uncached fan-out / cache hit", f"{fanout / hit_median:8.0f} x"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"literature benchmark ({args.repeats} runs each, medians; injected delays {DELAYS})")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")

    results = {
        "delays_s": DELAYS,
        "repeats": args.repeats,
        "provider_alone_s": single,
        "sum_sequential_s": total_sequential,
        "fanout_s": fanout,
        "fanout_runs_s": fanout_all,
        "speedup_vs_sum": total_sequential / fanout,
        "fanout_over_slowest": fanout / slowest,
        "cache_hit_median_ms": hit_median * 1000,
        "cache_hit_p95_ms": hit_p95 * 1000,
        "cache_hits_timed": args.hits,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")


if __name__ == "__main__":
    main()
