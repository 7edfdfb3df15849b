"""``litevlm describe`` end to end on the tiny PaliGemma, and ``litevlm doctor``.

In-process through typer's runner where the tiny model is loaded (cheap); as a real subprocess
where the one-line error and exit status of the installed entry point matter.
"""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from typer.testing import CliRunner
from vision_fixtures import cell_png, lora_adapters, varied_paligemma  # noqa: F401 - fixtures

from litevlm.cli import app

ROOT = Path(__file__).resolve().parent.parent
runner = CliRunner()


def test_describe_json_on_the_tiny_model(tiny_paligemma: Path, cell_png: Path) -> None:  # noqa: F811
    args = ["describe", str(cell_png), "--model", str(tiny_paligemma), "--json"]
    res = runner.invoke(app, [*args, "--max-new-tokens", "3"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["prompt"] == "describe en" and out["model_id"] == str(tiny_paligemma)
    assert 0 <= out["tokens"] <= 3 and out["latency_s"] > 0 and out["load_seconds"] > 0
    assert out["image"]["metadata"]["width"] == 550
    assert "not a medical device" in out["disclaimer"]


def test_describe_question_with_adapter_plain_text(
    varied_paligemma: Path,  # noqa: F811
    lora_adapters: dict,  # noqa: F811
    cell_png: Path,  # noqa: F811
) -> None:
    args = ["describe", str(cell_png), "--model", str(varied_paligemma), "--max-new-tokens", "4"]
    res = runner.invoke(app, [*args, "--question", "how many cells?", "--json"])
    base = json.loads(res.stdout)
    assert base["prompt"] == "answer en how many cells?" and base["adapter"] is None
    res = runner.invoke(
        app, [*args, "-Q", "how many cells?", "--adapter", str(lora_adapters["a1"])]
    )
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() and res.stdout.strip() != base["text"]
    assert "a1" in res.stderr and "Research use only" in res.stderr


def _litevlm(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "litevlm", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


def test_bad_image_gives_one_line_and_nonzero_exit(tmp_path: Path) -> None:
    bad = tmp_path / "notes.png"
    bad.write_text("this is a text file, not a PNG")
    proc = _litevlm("describe", str(bad))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "notes.png" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_invalid_quantization_option_is_one_line(cell_png: Path) -> None:  # noqa: F811
    res = runner.invoke(app, ["describe", str(cell_png), "--quantization", "3bit"])
    assert res.exit_code != 0
    assert "quantization = '3bit' is not allowed" in str(res.exception)


class _Ok(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_service():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_doctor_one_line_per_check(tiny_paligemma: Path, local_service: str, monkeypatch) -> None:
    monkeypatch.setenv("LITEVLM_LITERATURE__SOURCES", '["pubmed"]')
    monkeypatch.setenv("LITEVLM_LITERATURE__PUBMED_BASE_URL", local_service)
    monkeypatch.setenv("LITEVLM_RETRIEVAL__WEAVIATE_URL", f"http://127.0.0.1:{_closed_port()}")
    res = runner.invoke(app, ["doctor", "--model", str(tiny_paligemma), "--json"])
    assert res.exit_code == 0, res.output
    checks = {c["name"]: c for c in json.loads(res.stdout)}
    assert {"torch", "bitsandbytes", "model", "hf token"} <= set(checks)
    assert checks["bitsandbytes"]["status"] == "ok"  # the CPU backend quantises for real
    assert checks["model"]["status"] == "ok"
    assert checks["literature pubmed"]["status"] == "ok"
    assert checks["weaviate"]["status"] == "warn" and "unreachable" in checks["weaviate"]["detail"]

    res = runner.invoke(app, ["doctor", "--model", "nobody/no-such-model", "--timeout", "1"])
    assert res.exit_code == 1
    lines = res.stdout.strip().splitlines()
    model_line = next(line for line in lines if " model:" in line)
    assert "not in the Hugging Face cache" in model_line and "hf download" in model_line
    assert all(line.split()[0] in {"ok", "warn", "fail"} for line in lines)
