"""Run every benchmark at its default (quick) size, one after another, and say where each wrote.

    python benchmarks/run_all.py            # all of them (about 10-15 minutes on 2 CPU cores)
    python benchmarks/run_all.py vision ui  # some of them

Each script prints its own table and writes ``benchmarks/results/<name>.json``. The slow,
full-size variants are not run here; their commands are in each script's --help and in
docs/benchmarks.md: ``vision.py --full-size``, ``retrieval.py --rows 1000000``, ``measure.py``.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# name -> extra arguments for a quick run
QUICK: dict[str, list[str]] = {
    "vision": [],
    "measure": ["--quick", "--out", str(HERE / "results" / "measure_quick.json")],
    "literature": [],
    "retrieval": ["--rows", "100000"],
    "agent": [],
    "ui": [],
    "finetune": [],
    "eval": [],
    "fuzz_loader": ["--runs", "1000", "--out", str(HERE / "results" / "fuzz_loader_quick.json")],
}


def main(argv: list[str]) -> int:
    names = argv or list(QUICK)
    unknown = [n for n in names if n not in QUICK]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(QUICK)}")
        return 2
    rows: list[tuple[str, int, float]] = []
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(HERE / f"{name}.py"), *QUICK[name]])
        rows.append((name, rc, time.perf_counter() - t0))
    print(f"\n{'benchmark':<12} {'exit':>4} {'seconds':>8}  results")
    for name, rc, dt in rows:
        out = f"{name}_quick" if name in ("measure", "fuzz_loader") else name
        print(f"{name:<12} {rc:>4} {dt:>8.1f}  benchmarks/results/{out}.json")
    return max((rc for _, rc, _ in rows), default=0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
