"""A short run of benchmarks/fuzz_loader.py: mutated real PNG, JPEG, TIFF, DICOM and NIfTI files
either load or raise litevlm's own one-line error (the benchmark runs 10,000 per format)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _harness():
    spec = importlib.util.spec_from_file_location("fuzz_loader", ROOT / "benchmarks/fuzz_loader.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_mutated_real_files_load_or_fail_with_one_line(tmp_path: Path) -> None:
    fuzz = _harness()
    results = fuzz.fuzz(list(fuzz.FORMATS), runs=200, engine="random", seed=7, work=tmp_path)
    for r in results:
        assert r["inputs"] == 200
        assert r["ok"] > 0 or r["format"] == "png"  # PNG CRCs refuse almost every mutation
        assert r["findings"] == {}, (r["format"], r["findings"])
