"""Configuration: defaults, TOML file, environment overrides, and clear errors."""

from __future__ import annotations

import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from litevlm.config import load_settings, reference_toml
from litevlm.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_need_no_file() -> None:
    s = load_settings()
    assert s.vision.model == "google/paligemma-3b-mix-448"
    assert s.vision.quantization == "none"
    assert s.retrieval.backend == "lancedb"


def test_toml_file_and_env_override(tmp_path: Path, monkeypatch) -> None:
    cfg = tmp_path / "litevlm.toml"
    cfg.write_text('[vision]\nquantization = "8bit"\nmax_new_tokens = 20\n')
    assert load_settings(cfg).vision.quantization == "8bit"
    monkeypatch.setenv("LITEVLM_VISION__QUANTIZATION", "4bit")
    s = load_settings(cfg)
    assert s.vision.quantization == "4bit" and s.vision.max_new_tokens == 20
    monkeypatch.setenv("LITEVLM_CONFIG", str(cfg))
    assert load_settings().vision.max_new_tokens == 20


def test_invalid_value_names_key_value_and_rule(tmp_path: Path) -> None:
    cfg = tmp_path / "litevlm.toml"
    cfg.write_text('[vision]\nquantization = "3bit"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    msg = str(err.value)
    assert "[vision] quantization" in msg and "'3bit'" in msg and "'4bit'" in msg
    assert str(cfg) in msg


def test_invalid_env_value_names_variable(monkeypatch) -> None:
    monkeypatch.setenv("LITEVLM_RETRIEVAL__K", "-3")
    with pytest.raises(ConfigError, match="LITEVLM_RETRIEVAL__K.*-3"):
        load_settings()


def test_unknown_key_and_bad_toml(tmp_path: Path) -> None:
    cfg = tmp_path / "litevlm.toml"
    cfg.write_text("[vision]\nquantisation = '4bit'\n")
    with pytest.raises(ConfigError, match="unknown key.*quantisation"):
        load_settings(cfg)
    cfg.write_text("[vision\nmodel = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(cfg)
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "missing.toml")


def test_reference_file_is_current_and_loads() -> None:
    shipped = (ROOT / "litevlm.toml").read_text()
    assert shipped == reference_toml(), "regenerate: litevlm config --show > litevlm.toml"
    tomllib.loads(shipped)
    assert load_settings(ROOT / "litevlm.toml").model_dump() == load_settings().model_dump()


def test_cli_help_is_fast_and_bad_config_is_one_line(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "litevlm"
    t = time.perf_counter()
    r = subprocess.run([exe, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "inspect" in r.stdout
    assert time.perf_counter() - t < 5  # generous: the real figure is ~0.3 s; heavy imports fail it
    imported = subprocess.run(
        [sys.executable, "-c", "import litevlm.cli, sys; print(sorted(sys.modules))"],
        capture_output=True, text=True,
    ).stdout  # fmt: skip
    for heavy in ("torch", "transformers", "chainlit", "lancedb", "skimage", "langgraph"):
        assert f"'{heavy}'" not in imported, f"{heavy} imported at CLI start-up"
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[ui]\nport = 99999\n")
    r = subprocess.run([exe, "config", "--config", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "[ui] port = 99999" in r.stderr
