"""Routing benchmark: does the router choose the tools a question needs?

Routes every question of ``benchmarks/data/routing.yaml`` (labelled by hand: counts, sizes,
fractions, intensities, focus/quality, acquisition, geometry, similar cases, literature,
description, follow-ups, identifiers, mixed) twice in the same run: by meaning (MiniLM
exemplars, the default) and by keywords only (the fallback, and the baseline). Reports, per
category and overall, on the tuning half and the held-out half:

- tools: the chosen tool set equals the labelled one exactly (MedRAX's tool-choice accuracy);
- full: tools right AND the labelled facts named AND the flags (identifier, describe, follow-up)
  and a stated pixel size right.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/routing.py [--split all|tune|held] [-v]

Prints a table and writes benchmarks/results/routing.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATA = ROOT / "benchmarks/data/routing.yaml"


def load_cases(path: Path = DATA) -> list[dict[str, Any]]:
    """Entries with ``category`` and ``split`` added (tune/held alternate within a category)."""
    import yaml

    cases = []
    for category, entries in yaml.safe_load(path.read_text()).items():
        for i, entry in enumerate(entries):
            cases.append({**entry, "category": category, "split": "tune" if i % 2 == 0 else "held"})
    return cases


def check(case: dict[str, Any], route: Any) -> dict[str, Any]:
    """Which parts of ``route`` match the labels of ``case``."""
    tools_ok = sorted(route.tools) == sorted(case["tools"])
    facts_ok = set(case.get("facts", [])) <= set(route.facts)
    flags_ok = all(
        getattr(route, flag) == bool(case.get(flag, False))
        for flag in ("identifier", "describe", "followup")
    )
    want = case.get("pixel_size_um")
    got = route.pixel_size_um
    size_ok = (want is None and got is None) or (
        want is not None and got is not None and abs(got - want) <= 0.01 * want
    )
    return {
        "tools": tools_ok,
        "full": tools_ok and facts_ok and flags_ok and size_ok,
        "facts": facts_ok,
        "flags": flags_ok,
        "pixel_size": size_ok,
    }


def run(router: Any, cases: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[float]]:
    rows, times = [], []
    for case in cases:
        previous = router.route(case["previous"]) if case.get("previous") else None
        t0 = time.perf_counter()
        route = router.route(case["q"], previous=previous)
        times.append(time.perf_counter() - t0)
        rows.append({**case, "got": route.model_dump(), "ok": check(case, route)})
    return rows, times


def accuracy(rows: list[dict[str, Any]], key: str) -> float:
    return sum(r["ok"][key] for r in rows) / len(rows) if rows else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--split", choices=["all", "tune", "held"], default="all")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/routing.json")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every miss")
    args = parser.parse_args()

    from agent.routing import Router
    from tools.embeddings import load_text_embedder

    cases = load_cases()
    if args.split != "all":
        cases = [c for c in cases if c["split"] == args.split]
    t0 = time.perf_counter()
    embedder = load_text_embedder(device="cpu")
    load_s = time.perf_counter() - t0
    routers = {"semantic": Router(embedder), "keyword": Router(semantic=False)}
    results: dict[str, Any] = {}
    for mode, router in routers.items():
        router.route("warm-up")  # builds the exemplar vectors: not a per-question cost
        rows, times = run(router, cases)
        if router.fallback_reason:
            print(router.fallback_reason)
        results[mode] = {"rows": rows, "median_ms": 1000 * statistics.median(times)}

    categories = list(dict.fromkeys(c["category"] for c in cases))
    header = f"{'category':<14} {'n':>3} | " + " | ".join(
        f"{m[:8]:>8} tools  full" for m in routers
    )
    print(header)
    print("-" * len(header))
    table: dict[str, Any] = {}
    for group in [*categories, "tune", "held", "overall"]:
        line = {}
        for mode in routers:
            rows = results[mode]["rows"]
            if group in ("tune", "held"):
                rows = [r for r in rows if r["split"] == group]
            elif group != "overall":
                rows = [r for r in rows if r["category"] == group]
            line[mode] = {
                "n": len(rows),
                "tools": accuracy(rows, "tools"),
                "full": accuracy(rows, "full"),
            }
        table[group] = line
        n = line["semantic"]["n"]
        if not n:
            continue
        if group == "tune":
            print("-" * len(header))
        cells = " | ".join(
            f"{'':>8} {line[m]['tools']:5.1%} {line[m]['full']:5.1%}" for m in routers
        )
        print(f"{group:<14} {n:>3} | {cells}")
    sem, kw = table["overall"]["semantic"], table["overall"]["keyword"]
    ratio = sem["tools"] / kw["tools"] if kw["tools"] else float("inf")
    print(
        f"\nsemantic vs keyword tool accuracy: {sem['tools']:.1%} vs {kw['tools']:.1%} "
        f"({ratio:.2f}x); median routing time {results['semantic']['median_ms']:.1f} ms "
        f"(semantic), {results['keyword']['median_ms']:.2f} ms (keyword); model load "
        f"{load_s:.1f} s"
    )
    misses = {
        mode: [
            {k: r[k] for k in ("category", "split", "q", "tools")}
            | {"got_tools": r["got"]["tools"], "got_facts": r["got"]["facts"]}
            | {"intents": r["got"]["intents"], "ok": r["ok"]}
            for r in results[mode]["rows"]
            if not r["ok"]["full"]
        ]
        for mode in routers
    }
    if args.verbose:
        for mode, rows in misses.items():
            print(f"\nmisses ({mode}):")
            for m in rows:
                print(f"  [{m['split']}] {m['q']!r}: want {m['tools']} got {m['got_tools']} "
                      f"{m['got_facts']} {m['intents']}")  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "data": str(DATA.relative_to(ROOT)),
                "split": args.split,
                "n": len(cases),
                "model": embedder.model_id,
                "model_load_s": round(load_s, 2),
                "median_route_ms": {m: round(results[m]["median_ms"], 2) for m in routers},
                "semantic_over_keyword_tools": round(ratio, 3),
                "table": table,
                "misses": misses,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
