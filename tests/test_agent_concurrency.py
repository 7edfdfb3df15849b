"""Four `litevlm ask --thread T` processes at once on one thread: every turn is kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from agent_fixtures import write_sample_images

from agent.assistant import Assistant
from litevlm.config import load_settings

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp: Path) -> dict[str, str]:
    return {
        "LITEVLM_DATA_DIR": str(tmp / "data"),
        "LITEVLM_AGENT__CHECKPOINTER": str(tmp / "threads.sqlite"),
        "LITEVLM_VISION__MODEL": str(tmp / "missing-model"),  # fails fast, named in warnings
        "LITEVLM_VISION__LOCAL_FILES_ONLY": "true",
        "LITEVLM_RETRIEVAL__URI": str(tmp / "no-index"),
        "LITEVLM_LITERATURE__PUBMED_BASE_URL": "http://127.0.0.1:9/",
        "LITEVLM_LITERATURE__SOURCES": '["pubmed"]',
        "LITEVLM_LITERATURE__RETRIES": "0",
    }


def _settings(tmp: Path):
    env = _env(tmp)
    return load_settings(
        data_dir=env["LITEVLM_DATA_DIR"],
        agent={"checkpointer": env["LITEVLM_AGENT__CHECKPOINTER"]},
        vision={"model": env["LITEVLM_VISION__MODEL"], "local_files_only": True},
        retrieval={"uri": env["LITEVLM_RETRIEVAL__URI"]},
        literature={"pubmed_base_url": "http://127.0.0.1:9/", "sources": ["pubmed"], "retries": 0},
    )


def _questions(state: dict) -> list[str]:
    return [m.content for m in state.get("messages", []) if m.type == "human"]


@pytest.mark.slow
def test_four_concurrent_turns_on_one_thread_are_all_kept(tmp_path: Path) -> None:
    images = write_sample_images(tmp_path / "img")
    settings = _settings(tmp_path)
    with Assistant(settings) as assistant:
        first = assistant.ask("How many nuclei are there?", [images["ihc"]])
    thread = first.thread_id

    env = {**os.environ, **_env(tmp_path)}

    def ask(k: int) -> subprocess.Popen:
        question = f"How many nuclei are there? (turn {k})"
        cmd = [sys.executable, "-m", "litevlm", "ask", "--thread", thread, "--json", question]
        return subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )

    procs = [ask(k) for k in range(4)]
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-2000:]

    with Assistant(_settings(tmp_path)) as assistant:
        asked = _questions(assistant.thread_state(thread))
    assert asked[0] == "How many nuclei are there?"
    assert sorted(asked[1:]) == [f"How many nuclei are there? (turn {k})" for k in range(4)]


def test_turns_from_threads_of_one_process_are_serialised(tmp_path: Path) -> None:
    """The UI runs turns in worker threads of one process: same rule, in-process lock."""
    from concurrent.futures import ThreadPoolExecutor

    images = write_sample_images(tmp_path / "img")
    with Assistant(_settings(tmp_path)) as assistant:
        thread = assistant.ask("How many nuclei are there?", [images["ihc"]]).thread_id
        with ThreadPoolExecutor(3) as pool:
            list(
                pool.map(
                    lambda k: assistant.ask(f"How many nuclei? ({k})", thread_id=thread),
                    range(3),
                )
            )
        asked = _questions(assistant.thread_state(thread))
    assert sorted(asked[1:]) == [f"How many nuclei? ({k})" for k in range(3)]
