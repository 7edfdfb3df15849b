"""Fuzz ``tools.images.load_image`` with mutated real sample files: PNG, JPEG, TIFF, DICOM, NIfTI.

Run:  .venv/bin/python benchmarks/fuzz_loader.py                   (10,000 inputs per format)
      .venv/bin/python benchmarks/fuzz_loader.py --runs 1000       (quick: make bench)
      .venv/bin/python benchmarks/fuzz_loader.py --engine random   (no atheris)

Seeds are real files: scikit-image's cell and IHC samples saved as PNG (8 and 16 bit, palette),
JPEG (RGB and Adobe CMYK) and TIFF (16-bit ImageJ with a pixel size, CMYK, zlib tiles); pydicom-data
CT, MR, multi-frame MR and VOI-LUT files; nibabel's test NIfTI volumes.

Engines: ``atheris`` (libFuzzer's coverage-guided mutator over instrumented tools.images, PIL,
tifffile, pydicom and nibabel; one process per format, ``-rss_limit_mb`` bounds memory) when it
is installed, else ``random`` (seeded byte flips, interesting values, block deletes, copies,
inserts and truncation).

An input passes when it loads or raises litevlm's own error (``LiteVLMError``: one line naming
the file). Anything else is a finding: its type, message, where it was raised and a sample file.
An input that takes more than ``--input-timeout`` seconds is a finding too. Prints a table and
writes benchmarks/results/fuzz_loader.json (peak RSS per format, from getrusage).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

FORMATS = {"png": ".png", "jpeg": ".jpg", "tiff": ".tif", "dicom": ".dcm", "nifti": ".nii"}
RESULTS = ROOT / "benchmarks" / "results"
INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF]


# -- seeds: real sample files -----------------------------------------------------------------
def write_seeds(folder: Path) -> dict[str, list[Path]]:
    import shutil

    import nibabel.testing
    import numpy as np
    import tifffile
    from PIL import Image
    from pydicom.data import get_testdata_file
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    cell = np.asarray(data.cell())[:96, :96]
    ihc = data.immunohistochemistry()[:96, :96]
    out: dict[str, list[Path]] = {f: [] for f in FORMATS}

    def save(fmt: str, name: str, write) -> None:
        p = folder / name
        write(p)
        out[fmt].append(p)

    save("png", "cell.png", lambda p: Image.fromarray(cell).save(p))
    save("png", "cell16.png", lambda p: Image.fromarray(cell.astype(np.uint16) * 250).save(p))
    save("png", "ihc_p.png", lambda p: Image.fromarray(ihc).quantize(64).save(p))
    save("jpeg", "ihc.jpg", lambda p: Image.fromarray(ihc).save(p, quality=90))
    save("jpeg", "ihc_cmyk.jpg", lambda p: Image.fromarray(ihc).convert("CMYK").save(p))
    save("tiff", "cell16.tif", lambda p: tifffile.imwrite(
        p, cell.astype(np.uint16) * 200, imagej=True, resolution=(1 / 0.325, 1 / 0.325),
        metadata={"unit": "micron"}))  # fmt: skip
    save("tiff", "ihc_cmyk.tif", lambda p: tifffile.imwrite(
        p, np.asarray(Image.fromarray(ihc).convert("CMYK")), photometric="separated"))  # fmt: skip
    save("tiff", "ihc_zlib.tif", lambda p: tifffile.imwrite(
        p, ihc, tile=(32, 32), compression="zlib"))  # fmt: skip
    for name in ("CT_small.dcm", "MR_small.dcm", "emri_small.dcm", "vlut_04.dcm"):
        save("dicom", name, lambda p, n=name: shutil.copy(get_testdata_file(n), p))
    nib_dir = Path(nibabel.testing.data_path)
    for name in ("anatomical.nii", "example_nifti2.nii.gz"):
        if (nib_dir / name).is_file():
            save("nifti", name, lambda p, n=name: shutil.copy(nib_dir / n, p))
    return out


# -- one input -----------------------------------------------------------------------------------
class _Hang(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise _Hang()


def _suffix(p: Path) -> str:
    return ".nii.gz" if p.name.endswith(".nii.gz") else p.suffix


def check_one(data: bytes, path: Path, timeout_s: float) -> tuple[str, str | None]:
    """('ok' | 'rejected' | 'finding', description of the finding)."""
    import warnings

    from litevlm.errors import LiteVLMError
    from tools.images import load_image

    path.write_bytes(data)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # damaged headers warn on every field
            load_image(path)
        return "ok", None
    except LiteVLMError as e:
        if "\n" in str(e):
            return "finding", f"multi-line LiteVLMError: {str(e)[:120]!r}"
        return "rejected", None
    except _Hang:
        return "finding", f"hang: more than {timeout_s:g} s"
    except Exception as e:
        tb = traceback.extract_tb(e.__traceback__)
        where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
        return "finding", f"{type(e).__name__} at {where}: {str(e)[:120]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four of: bit flip, interesting value, block delete, copy, insert, truncate."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not b:
            b = bytearray(rng.randbytes(16))
        op = rng.randrange(6)
        i = rng.randrange(len(b))
        if op == 0:
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1:
            v = rng.choice(INTERESTING)
            width = rng.choice((1, 2, 4))
            order = rng.choice(("little", "big"))
            b[i : i + width] = (v & (256**width - 1)).to_bytes(width, order)
        elif op == 2:
            del b[i : i + rng.randint(1, 64)]
        elif op == 3:
            j = rng.randrange(len(b))
            b[i:i] = b[j : j + rng.randint(1, 64)]
        elif op == 4:
            b[i:i] = rng.randbytes(rng.randint(1, 16))
        else:
            del b[max(1, i) :]
    return bytes(b)


class Tally:
    def __init__(self, fmt: str, samples: Path) -> None:
        self.fmt = fmt
        self.samples = samples
        self.counts = {"ok": 0, "rejected": 0, "finding": 0}
        self.findings: dict[str, dict[str, Any]] = {}
        self.t0 = time.perf_counter()

    def add(self, outcome: str, what: str | None, data: bytes) -> None:
        self.counts[outcome] += 1
        if what is None:
            return
        f = self.findings.setdefault(what, {"count": 0, "sample": None})
        f["count"] += 1
        if f["sample"] is None:
            self.samples.mkdir(parents=True, exist_ok=True)
            p = self.samples / f"{self.fmt}_{len(self.findings):03d}{FORMATS[self.fmt]}"
            p.write_bytes(data)
            f["sample"] = str(p)

    @property
    def inputs(self) -> int:
        return sum(self.counts.values())

    def result(self, engine: str) -> dict[str, Any]:
        return {
            "format": self.fmt,
            "engine": engine,
            "inputs": self.inputs,
            **self.counts,
            "exceptions_other_than_litevlm": self.counts["finding"],
            "findings": self.findings,
            "seconds": round(time.perf_counter() - self.t0, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }


# -- engines ---------------------------------------------------------------------------------
def run_random(fmt: str, seeds: list[Path], runs: int, seed: int, timeout_s: float, work: Path):
    rng = random.Random(seed)
    corpus = [(p.read_bytes(), work / f"input_{fmt}{_suffix(p)}") for p in seeds]
    tally = Tally(fmt, work / "findings")
    for data, target in corpus:  # the seeds themselves must load
        outcome, what = check_one(data, target, timeout_s)
        assert outcome == "ok", f"seed {target} of {fmt} does not load: {what}"
    while tally.inputs < runs:
        data, target = rng.choice(corpus)
        data = mutate(data, rng)
        outcome, what = check_one(data, target, timeout_s)
        tally.add(outcome, what, data)
    return tally.result("random")


def atheris_worker(fmt: str, seeds: list[Path], runs: int, timeout_s: float, work: Path) -> None:
    """Runs in its own process: atheris.Fuzz() can run once per process and exits at the end."""
    import atheris

    with atheris.instrument_imports():
        import nibabel  # noqa: F401
        import PIL.Image  # noqa: F401
        import pydicom  # noqa: F401
        import tifffile  # noqa: F401

        import tools.images  # noqa: F401
    corpus = work / f"corpus_{fmt}"
    corpus.mkdir(parents=True, exist_ok=True)
    for s in seeds:
        (corpus / s.name).write_bytes(s.read_bytes())
    tally = Tally(fmt, work / "findings")
    # libFuzzer mutates any seed: the suffix of the format's first seed names every input
    target = work / f"input_{fmt}{_suffix(seeds[0])}"
    out = work / f"result_{fmt}.json"

    def one(data: bytes) -> None:
        outcome, what = check_one(data, target, timeout_s)
        tally.add(outcome, what, data)
        if tally.inputs % 500 == 0 or tally.inputs >= runs or what:
            out.write_text(json.dumps(tally.result("atheris")))

    max_len = max(s.stat().st_size for s in seeds) + 4096
    limits = ["-rss_limit_mb=4096", f"-timeout={int(timeout_s) + 5}", "-print_final_stats=1"]
    argv = [sys.argv[0], str(corpus), f"-runs={runs}", f"-max_len={max_len}", *limits]
    atheris.Setup(argv, one)
    atheris.Fuzz()


def run_atheris(fmt: str, runs: int, timeout_s: float, work: Path) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--worker", fmt, "--runs", str(runs),
           "--input-timeout", str(timeout_s), "--work", str(work)]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    out = work / f"result_{fmt}.json"
    if not out.is_file():
        raise RuntimeError(f"atheris worker for {fmt} wrote nothing: {proc.stderr[-2000:]}")
    result = json.loads(out.read_text())
    result["libfuzzer_exit"] = proc.returncode
    return result


# -- main ----------------------------------------------------------------------------------------
def fuzz(
    formats: list[str], runs: int, engine: str, seed: int = 0, timeout_s: float = 10.0,
    work: Path | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    import logging

    logging.getLogger("tifffile").setLevel(logging.CRITICAL)  # one line per damaged IFD
    work = Path(work or tempfile.mkdtemp(prefix="litevlm-fuzz-"))
    seeds = write_seeds(work / "seeds")
    results = []
    for fmt in formats:
        if engine == "atheris":
            results.append(run_atheris(fmt, runs, timeout_s, work))
        else:
            results.append(run_random(fmt, seeds[fmt], runs, seed, timeout_s, work))
    return results


def _engine(requested: str) -> str:
    if requested != "auto":
        return requested
    try:
        import atheris  # noqa: F401

        return "atheris"
    except ImportError:
        return "random"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=10_000, help="inputs per format")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--engine", choices=("auto", "atheris", "random"), default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--input-timeout", type=float, default=10.0)
    ap.add_argument("--work", type=Path, default=None, help="folder for seeds and findings")
    ap.add_argument("--out", type=Path, default=RESULTS / "fuzz_loader.json")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        import logging

        logging.getLogger("tifffile").setLevel(logging.CRITICAL)
        seeds = write_seeds(args.work / f"seeds_{args.worker}")
        atheris_worker(args.worker, seeds[args.worker], args.runs, args.input_timeout, args.work)
        return
    engine = _engine(args.engine)
    work = args.work or Path(tempfile.mkdtemp(prefix="litevlm-fuzz-"))
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    t0 = time.perf_counter()
    results = fuzz(formats, args.runs, engine, args.seed, args.input_timeout, work)
    print(f"\nloader fuzzing, engine {engine}, {args.runs} inputs per format (work: {work})")
    print(f"{'format':<7} {'inputs':>7} {'loaded':>7} {'refused':>8} {'other exc':>9} "
          f"{'s':>6} {'peak RSS MB':>11}")  # fmt: skip
    for r in results:
        print(f"{r['format']:<7} {r['inputs']:>7} {r['ok']:>7} {r['rejected']:>8} "
              f"{r['exceptions_other_than_litevlm']:>9} {r['seconds']:>6} "
              f"{r['peak_rss_mb']:>11}")  # fmt: skip
        for what, f in r["findings"].items():
            print(f"    {f['count']:>5} x {what}  [{f['sample']}]")
    out = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "engine": engine, "runs_per_format": args.runs, "seconds": round(time.perf_counter() - t0),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count()},
        "results": results,
    }, indent=2))  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
