"""The UI's parts that need no browser: persistence on SQLite, feedback export (CLI), auth,
rendering of sources and metadata, the runtime folder. The browser tests are test_ui_browser.py.
"""

from __future__ import annotations

import asyncio
import csv
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

# Importing chainlit writes .chainlit/ and .files/ into its app root: not the repository.
os.environ.setdefault("CHAINLIT_APP_ROOT", tempfile.mkdtemp(prefix="litevlm-ui-"))

from litevlm.config import load_settings
from litevlm.errors import ConfigError
from litevlm.types import Source
from ui import auth, render
from ui.data_layer import LiteVLMDataLayer, database_url
from ui.feedback import read_feedback

REPO = Path(__file__).resolve().parent.parent


async def _fill(layer: LiteVLMDataLayer) -> dict[str, str]:
    """A user, a thread with a question, a run and a rated answer, as Chainlit writes them."""
    from chainlit.context import init_http_context
    from chainlit.types import Feedback
    from chainlit.user import User

    init_http_context()  # the layer's writes look at the (HTTP) session
    await layer.create_schema()
    await layer.create_schema()  # idempotent: every start runs it
    user = await layer.create_user(User(identifier="alice", metadata={"provider": "password"}))
    thread = "t-1"
    await layer.update_thread(thread, name="How many cells?", user_id=user.id, tags=["a", "b"])
    await layer.update_thread(thread, metadata={"images": [{"n": 1, "name": "cell.png"}]})
    base = {"threadId": thread, "streaming": False, "createdAt": "2026-01-01T00:00:00Z"}
    await layer.create_step(
        {**base, "id": "q", "name": "alice", "type": "user_message", "output": "How many cells?"}
    )
    await layer.create_step({**base, "id": "run", "name": "on_message", "type": "run"})
    models = {"vision": "google/paligemma-3b-mix-448", "adapter": "pathvqa", "chat": "rules"}
    await layer.create_step(
        {
            **base,
            "id": "a",
            "parentId": "run",
            "name": "litevlm",
            "type": "assistant_message",
            "output": "Seven cells [1].",
            "metadata": {"models": models},
            "modes": {"m": "x"},
        }
    )
    await layer.upsert_feedback(Feedback(forId="run", value=1, threadId=thread, comment="good"))
    await layer.upsert_feedback(Feedback(forId="a", value=0, threadId=thread, comment=""))
    return {"user_id": user.id, "thread": thread}


def test_sqlite_layer_creates_its_schema_and_round_trips_a_thread(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    layer = LiteVLMDataLayer.from_settings(settings)

    async def run():
        ids = await _fill(layer)
        thread = await layer.get_thread(ids["thread"])
        listed = await layer.get_all_user_threads(user_id=ids["user_id"])
        await layer.close()
        return thread, listed

    thread, listed = asyncio.run(run())
    assert (tmp_path / "ui" / "chainlit.db").is_file()
    assert thread["userIdentifier"] == "alice" and thread["name"] == "How many cells?"
    assert thread["metadata"]["images"][0]["name"] == "cell.png"  # JSON back as objects
    assert thread["tags"] == ["a", "b"]
    steps = {s["id"]: s for s in thread["steps"]}
    assert steps["a"]["metadata"]["models"]["adapter"] == "pathvqa"
    assert steps["run"]["feedback"]["value"] == 1
    assert [t["id"] for t in listed] == ["t-1"]


def test_writes_fired_as_tasks_keep_their_order_and_reads_wait_for_them(tmp_path):
    """Chainlit fires a step's start and end (both upserts) and its elements as tasks; they run
    in the order made, after the messages they go with, and a read right after sees them."""
    from chainlit.context import init_http_context

    layer = LiteVLMDataLayer.from_settings(load_settings(data_dir=tmp_path))

    async def run():
        ids = await _fill(layer)
        init_http_context()
        base = {"threadId": ids["thread"], "streaming": False, "type": "tool", "name": "measure"}
        fired = []  # as Step.send, then Step.update: two tasks each, not awaited
        for i in range(5):
            start, end = {**base, "id": f"s{i}", "output": "running"}, {"output": f"{i} cells"}
            fired.append(asyncio.create_task(layer.create_step(start)))
            fired.append(asyncio.create_task(layer.update_step({**start, **end})))
        await asyncio.sleep(0)
        before = await layer.execute_sql('SELECT "id" FROM steps WHERE "type" = \'tool\'', {})
        thread = await layer.get_thread(ids["thread"])  # waits for the writes started
        await layer.written()
        await layer.close()
        return before, thread

    before, thread = asyncio.run(run())
    assert before == []  # not run yet: the messages they go with leave first
    tools = {s["id"]: s["output"] for s in thread["steps"] if s["type"] == "tool"}
    assert tools == {f"s{i}": f"{i} cells" for i in range(5)}  # the end, never the start


def test_thread_list_is_chainlits_page_without_reading_steps_and_the_database_uses_wal(tmp_path):
    from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
    from chainlit.types import Pagination, ThreadFilter

    layer = LiteVLMDataLayer.from_settings(load_settings(data_dir=tmp_path))

    async def run():
        ids = await _fill(layer)
        for i in range(4):  # later activity: listed first
            thread = f"t-{i + 2}"
            await layer.update_thread(thread, name=f"thread {i}", user_id=ids["user_id"])
            step = {"threadId": thread, "streaming": False, "createdAt": f"2026-02-0{i + 1}"}
            await layer.create_step({**step, "id": f"s{i}", "name": "q", "type": "user_message"})
        pages = {}
        for name, lister in (
            ("ours", layer.list_threads),
            ("chainlit", lambda p, f: SQLAlchemyDataLayer.list_threads(layer, p, f)),
        ):
            first = await lister(Pagination(first=3), ThreadFilter(userId=ids["user_id"]))
            cursor = first.pageInfo.endCursor
            rest = await lister(
                Pagination(first=3, cursor=cursor), ThreadFilter(userId=ids["user_id"])
            )
            pages[name] = (first, rest)
        mode = await layer.execute_sql("PRAGMA journal_mode", {})
        await layer.close()
        return pages, mode

    pages, mode = asyncio.run(run())
    for ours, theirs in zip(pages["ours"], pages["chainlit"], strict=True):
        assert [t["id"] for t in ours.data] == [t["id"] for t in theirs.data]
        assert [t["name"] for t in ours.data] == [t["name"] for t in theirs.data]
        assert ours.pageInfo == theirs.pageInfo
    assert [t["id"] for t in pages["ours"][0].data] == ["t-5", "t-4", "t-3"]
    assert pages["ours"][1].data[-1]["metadata"]["images"][0]["name"] == "cell.png"
    assert mode[0]["journal_mode"] == "wal"


def test_feedback_export_cli_writes_one_row_per_rating_with_the_models(tmp_path):
    settings = load_settings(data_dir=tmp_path)
    layer = LiteVLMDataLayer.from_settings(settings)

    async def run():
        await _fill(layer)
        await layer.close()

    asyncio.run(run())
    out = tmp_path / "out" / "feedback.csv"
    env = {**os.environ, "LITEVLM_DATA_DIR": str(tmp_path)}
    cmd = [sys.executable, "-m", "litevlm", "feedback", "export", "--out", str(out)]
    res = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    for col in (
        "thread_id",
        "message_id",
        "value",
        "comment",
        "vision_model",
        "adapter",
        "chat_model",
        "created_at",
    ):
        assert col in rows[0]
    by_value = {r["value"]: r for r in rows}
    up, down = by_value["1"], by_value["0"]
    # Chainlit rates the run; the export names the answer inside it and its models.
    assert up["message_id"] == "a" and up["comment"] == "good" and up["user"] == "alice"
    assert up["vision_model"] == "google/paligemma-3b-mix-448" and up["adapter"] == "pathvqa"
    assert down["message_id"] == "a" and down["chat_model"] == "rules"
    assert all(r["created_at"] for r in rows)


def test_feedback_export_before_any_use_is_empty_and_a_dead_database_is_one_clear_error():
    assert read_feedback("sqlite+aiosqlite:////nonexistent/dir/chainlit.db") == []
    from litevlm.errors import LiteVLMError

    # ServiceUnavailable with the psycopg driver installed, ConfigError naming it without.
    with pytest.raises(LiteVLMError, match="database_url") as err:
        read_feedback("postgresql+psycopg://u:secret@127.0.0.1:1/none")
    assert "secret" not in str(err.value)


def test_database_url_default_and_override(tmp_path):
    assert database_url(load_settings(data_dir=tmp_path)).endswith(f"{tmp_path}/ui/chainlit.db")
    url = "postgresql+asyncpg://litevlm@db/litevlm"
    assert database_url(load_settings(data_dir=tmp_path, ui={"database_url": url})) == url


def test_storage_refuses_keys_outside_its_root(tmp_path):
    layer = LiteVLMDataLayer.from_settings(load_settings(data_dir=tmp_path))
    with pytest.raises(ValueError, match="outside"):
        layer.storage.path("../../etc/passwd")
    assert layer.storage.path("u/e/x.png").is_relative_to(tmp_path)


def test_password_check_and_user_configuration(tmp_path):
    users = {"alice": "correct horse"}
    assert auth.check_password(users, "alice", "correct horse")
    assert not auth.check_password(users, "alice", "wrong")
    assert not auth.check_password(users, "mallory", "correct horse")
    with pytest.raises(ConfigError, match="users is empty"):
        auth.validate_users(True, {})
    with pytest.raises(ConfigError, match="reserved"):
        auth.validate_users(True, {"local": "x"})
    auth.validate_users(False, {})
    secret = auth.ensure_secret(tmp_path)
    assert auth.ensure_secret(tmp_path) == secret and len(secret) > 40  # kept across restarts
    assert oct((tmp_path / "ui" / "auth_secret").stat().st_mode & 0o777) == "0o600"


def test_users_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("LITEVLM_UI__AUTH", "true")
    monkeypatch.setenv("LITEVLM_UI__USERS", '{"bob": "pw"}')
    s = load_settings()
    assert s.ui.auth and s.ui.users["bob"].get_secret_value() == "pw"
    assert "pw" not in repr(s) and "pw" not in s.model_dump_json()  # never printed
    assert auth.check_password(s.ui.users, "bob", "pw")
    assert not auth.check_password(s.ui.users, "bob", "pW")


def test_sources_render_as_a_numbered_list_with_links():
    sources = [
        Source(n=2, kind="arxiv", id="2101.00001", title="Cells [v2]"),
        Source(n=1, kind="pubmed", id="12345678", title="Nuclei", authors=["A", "B"], year=2020),
        Source(n=3, kind="web", id="https://example.org/x", title="A page"),
        Source(n=4, kind="case", id="case-7", title="Phase image"),
        Source(
            n=5,
            kind="wikipedia",
            id="Cell",
            title="Cell",
            doi=None,
            url="https://en.wikipedia.org/wiki/Cell",
        ),
    ]
    md = render.answer_markdown("Seven cells [1][2].", sources, ["a warning"])
    lines = md.splitlines()
    assert lines[0] == "Seven cells [1][2]." and "**Sources**" in md
    first = next(x for x in lines if x.startswith("1. "))
    assert "[Nuclei](https://pubmed.ncbi.nlm.nih.gov/12345678/)" in first
    assert "PMID 12345678" in first and "A et al." in first and "2020" in first
    assert "(https://arxiv.org/abs/2101.00001)" in md and r"Cells \[v2\]" in md
    assert "[A page](https://example.org/x)" in md and "4. Phase image — case" in md
    assert "> ⚠ a warning" in md
    doi = Source(n=1, kind="pubmed", id="", doi="10.1/x", title="T")
    assert render.source_url(doi) == "https://doi.org/10.1/x"


def test_image_summary_metadata_table_and_turn_options():
    meta = {
        "format": "dicom",
        "window": {"center": -38.0, "width": 1646.0, "source": "auto"},
        "pixel_spacing_mm": [0.66, 0.66],
        "units": "HU",
        "empty": None,
    }
    line = render.image_summary("CT_small.dcm", 2, "CT", (128, 128), meta)
    assert line.startswith("**Image 2: CT_small.dcm** — CT, 128 x 128 px")
    assert "pixel spacing 0.66 x 0.66 mm" in line and "window -38 / 1646 HU" in line
    table = render.metadata_table(meta)
    assert "| window | center -38.0, width 1646.0, source auto |" in table
    assert "empty" not in table
    png = render.image_summary("cell.png", 1, "unknown", (550, 660), {"format": "png"})
    assert png == "**Image 1: cell.png** — png, 550 x 660 px"
    opts = render.turn_options(
        {
            "source_pubmed": True,
            "source_arxiv": False,
            "source_web": True,
            "source_wikipedia": False,
            "vision_model": " ",
            "adapter": render.NO_ADAPTER,
            "quantization": "4bit",
            "similar_k": 5.0,
            "heatmap": True,
        }
    )
    assert opts == {
        "sources": ["pubmed", "web"],
        "similar_k": 5,
        "vision_model": None,
        "adapter": None,
        "quantization": "4bit",
        "heatmap": True,
    }
    assert render.turn_options(None)["sources"] is None  # None: as configured
    from agent.assistant import TurnOptions

    TurnOptions(**opts)  # the agent accepts what the panel gives


def test_step_text_is_readable_and_bounded():
    assert render.step_text({"a": 1}) == '{\n  "a": 1\n}'
    assert render.step_text(Source(kind="web", id="u")).startswith("{")
    long = render.step_text("x" * 10_000)
    assert len(long) < 4100 and "more characters" in long


def test_runtime_folder_carries_config_markdown_and_upload_limit(tmp_path):
    from ui.launch import prepare_app_root

    root = prepare_app_root(load_settings(data_dir=tmp_path, ui={"max_upload_mb": 7}))
    config = (root / ".chainlit" / "config.toml").read_text()
    assert "max_size_mb = 7" in config
    assert "not a medical device" in (root / "chainlit.md").read_text()
    assert (root / "public" / "litevlm.css").is_file()
    # The chat's socket messages are handed over in batches (tests/test_ui_socket_batch.py).
    assert 'custom_js = "/public/socket_batch.js"' in config
    assert (root / "public" / "socket_batch.js").is_file()


def test_chat_help_lists_host_and_port():
    res = subprocess.run(
        [sys.executable, "-m", "litevlm", "chat", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0 and "--host" in res.stdout and "--port" in res.stdout


def test_a_fast_step_is_one_message_a_slow_one_two_and_tokens_go_out_in_batches(monkeypatch):
    """ui/stream.py: what the browser is sent for a turn's steps and streamed text."""
    from types import SimpleNamespace

    import chainlit as cl
    from chainlit.context import init_http_context

    from ui import stream

    sent: list[tuple[str, str]] = []

    async def send(self):
        if self.name.startswith("broken"):
            raise RuntimeError("the socket is gone")
        sent.append(("send", self.name))
        return self

    async def update(self):
        sent.append(("update", self.name))
        return True

    async def stream_token(self, token, is_sequence=False):
        sent.append(("token", token))
        self.content += token

    monkeypatch.setattr(cl.Step, "send", send)
    monkeypatch.setattr(cl.Step, "update", update)
    monkeypatch.setattr(cl.Message, "stream_token", stream_token)

    def ev(name, **kw):
        return SimpleNamespace(name=name, input={"q": 1}, output={"n": 2}, elapsed_s=0.01, **kw)

    async def run():
        init_http_context()
        steps = stream.TurnSteps("run", show_after_s=0.05)
        steps.start(ev("route"))
        steps.end(ev("route"))  # before it was shown: one message, with its output
        steps.start(ev("vision"))
        steps.start(ev("measure"))  # never ends: closed with the turn
        await asyncio.sleep(0.15)  # shown while running, then updated
        steps.end(ev("vision"))
        await steps.close()
        msg = cl.Message(content="")
        tokens = stream.Tokens(msg, flush_after_s=0.05)
        for line in ("Seven ", "cells ", "[1]."):
            tokens.add(line)
        text_now = await tokens.finish()  # the answer came: nothing streamed, all in content
        slow = stream.Tokens(cl.Message(content=""), flush_after_s=0.01)
        slow.add("a")
        await asyncio.sleep(0.05)
        slow.add("b")
        slow.add("c")
        await asyncio.sleep(0.05)
        return text_now, await slow.finish()

    text_now, slow_text = asyncio.run(run())
    assert text_now == "Seven cells [1]." and slow_text == "abc"
    steps_sent = [s for s in sent if s[0] != "token"]
    assert steps_sent == [
        ("send", "route · 0.01 s"),
        ("send", "vision"),
        ("send", "measure"),
        ("update", "vision · 0.01 s"),
        ("update", "measure"),
    ]
    assert [s for s in sent if s[0] == "token"] == [("token", "a"), ("token", "bc")]

    # A step's end waits for what follows it (the answer flushes), or goes after hold_s.
    sent.clear()

    async def held() -> list[list[tuple[str, str]]]:
        init_http_context()
        steps = stream.TurnSteps("run", show_after_s=10, hold_s=10)
        seen = []
        for name in ("synthesise", "verify"):
            steps.start(ev(name))
            steps.end(ev(name))
            await asyncio.sleep(0.02)
            seen.append(list(sent))
        await steps.flush()
        seen.append(list(sent))
        failing = stream.TurnSteps("run", show_after_s=10, hold_s=10)
        for name in ("broken", "measure"):  # a step that cannot be sent keeps nothing back
            failing.start(ev(name))
            failing.end(ev(name))
        await failing.close()
        soon = stream.TurnSteps("run", show_after_s=10, hold_s=0.01)
        soon.start(ev("header"))
        soon.end(ev("header"))
        while len(sent) < 4:  # sent without a flush, once its hold is over
            await asyncio.sleep(0.01)
        return [*seen, list(sent)]

    seen = asyncio.run(held())
    assert seen[:2] == [[], []]
    assert seen[2] == [("send", "synthesise · 0.01 s"), ("send", "verify · 0.01 s")]
    assert seen[3][-2:] == [("send", "measure · 0.01 s"), ("send", "header · 0.01 s")]


def test_figures_go_out_as_their_step_ends_and_the_upload_message_keeps_its_place(tmp_path):
    """ui/stream.py: figures are sent for the answer while the agent works; one the answer
    does not show is taken back; steps wait for the upload's own message."""
    from ui import stream

    log: list[tuple[str, str]] = []

    class Element:
        def __init__(self, name: str) -> None:
            self.name = name

        async def send(self, for_id: str) -> None:
            log.append(("send", f"{self.name}->{for_id}"))

        async def remove(self) -> None:
            log.append(("remove", self.name))

    paths = {k: tmp_path / f"{k}.png" for k in ("overlay", "attention", "late")}
    for p in paths.values():
        p.write_bytes(b"png")

    async def run() -> list[Element]:
        figures = stream.Figures("answer-1", lambda name, path: [Element(name)])
        figures.add({"overlay": str(paths["overlay"])})
        figures.add({"overlay": str(paths["overlay"]), "missing": str(tmp_path / "gone.png")})
        figures.add({"attention": paths["attention"]})
        await asyncio.sleep(0)
        # The answer shows the overlay (under another name) and a figure not sent yet.
        return await figures.finish({"overlay:cell.png": paths["overlay"], "late": paths["late"]})

    rest = asyncio.run(run())
    assert log == [
        ("send", "overlay->answer-1"),
        ("send", "attention->answer-1"),
        ("remove", "attention"),
    ]
    assert [e.name for e in rest] == ["late"]

    order: list[str] = []

    async def upload_message() -> None:
        await asyncio.sleep(0.05)
        order.append("upload")

    async def step() -> None:
        order.append("step")

    async def ordered() -> None:
        before = asyncio.create_task(upload_message())
        await stream.after(before, step())

    asyncio.run(ordered())
    assert order == ["upload", "step"]
