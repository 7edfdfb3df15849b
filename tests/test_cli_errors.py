"""Misuse of the real `litevlm` entry point: one line naming the problem, a non-zero exit, no
traceback, and no model loaded before the input is checked."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OFFLINE = {
    "LITEVLM_LITERATURE__PUBMED_BASE_URL": "http://127.0.0.1:9/",
    "LITEVLM_LITERATURE__SOURCES": '["pubmed"]',
    "LITEVLM_LITERATURE__RETRIES": "0",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
}


def cli(tmp: Path, *args: str, timeout: int = 300, **env: str) -> tuple[int, str]:
    full = {**os.environ, "LITEVLM_DATA_DIR": str(tmp / "data"), **OFFLINE, **env}
    full.pop("LITEVLM_CONFIG", None)
    out = subprocess.run(
        [sys.executable, "-m", "litevlm", *args],
        env=full, cwd=tmp, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    return out.returncode, out.stderr


def one_line(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip() and "━" not in ln]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert len(lines) == 1, stderr[-3000:]
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    from PIL import Image
    from skimage import data

    p = tmp_path_factory.mktemp("img") / "ihc.png"
    Image.fromarray(data.immunohistochemistry()[:128, :128]).save(p)
    return p


def test_bad_json_environment_override(tmp_path: Path) -> None:
    rc, err = cli(tmp_path, "config", LITEVLM_LITERATURE__SOURCES="[pubmed")
    line = one_line(err)
    assert rc == 2 and "LITEVLM_LITERATURE__SOURCES" in line and "JSON" in line


def test_config_pointing_at_a_directory(tmp_path: Path) -> None:
    rc, err = cli(tmp_path, "config", "-c", str(tmp_path))
    line = one_line(err)
    assert rc == 2 and "is a directory" in line and str(tmp_path) in line


def test_output_path_that_is_a_directory(tmp_path: Path, png: Path) -> None:
    rc, err = cli(tmp_path, "measure", str(png), "--overlay", str(tmp_path))
    assert rc != 0 and "is a directory" in one_line(err)
    caps = tmp_path / "caps.jsonl"
    caps.write_text(json.dumps({"image": "a.png", "caption": "CT of the liver"}) + "\n")
    rc, err = cli(tmp_path, "synth-qa", str(caps), "--templates", "--out", str(tmp_path))
    assert rc != 0 and "is a directory" in one_line(err)


@pytest.mark.slow
def test_synth_qa_without_a_reachable_chat_server(tmp_path: Path) -> None:
    caps = tmp_path / "caps.jsonl"
    caps.write_text(json.dumps({"image": "a.png", "caption": "CT of the liver"}) + "\n")
    rc, err = cli(
        tmp_path, "synth-qa", str(caps), "--chat-model", "openai:gpt-4o-mini",
        LITEVLM_AGENT__BASE_URL="http://127.0.0.1:9/v1",
    )  # fmt: skip
    line = one_line(err)
    assert rc != 0 and "127.0.0.1:9" in line and "--templates" in line
    assert not (tmp_path / "caps.qa.jsonl").exists()


def test_report_on_a_missing_path_exits_non_zero(tmp_path: Path) -> None:
    rc, err = cli(tmp_path, "report", str(tmp_path / "missing"), "--out", str(tmp_path / "r"))
    assert rc != 0 and "missing" in one_line(err)


def test_index_checks_the_path_before_loading_models(tmp_path: Path) -> None:
    # The default embedder (BiomedCLIP) is not cached here: had it been loaded first, the error
    # would be about its weights, not the path.
    rc, err = cli(tmp_path, "index", str(tmp_path / "missing"))
    line = one_line(err)
    assert rc != 0 and "no such file" in line and "missing" in line


@pytest.mark.slow
def test_doctor_exits_non_zero_when_a_check_fails(tmp_path: Path) -> None:
    rc, _ = cli(tmp_path, "doctor", "--model", str(tmp_path / "no-model"), "--timeout", "0.5")
    assert rc == 1
