"""Threads and UI data in a real PostgreSQL (a throwaway cluster from tests/postgres_fixtures.py,
skipped where no PostgreSQL is installed): LangGraph's Postgres checkpointer through the
Assistant, and the Chainlit data layer. Restarts are real ``pg_ctl restart``s; dropped
connections are real ``pg_terminate_backend`` calls."""

from __future__ import annotations

import asyncio
import os
import tempfile
import uuid
from pathlib import Path

import pytest
from agent_fixtures import agent_settings, write_sample_images
from postgres_fixtures import postgres  # noqa: F401 - session fixture

# Importing chainlit writes .chainlit/ and .files/ into its app root: not the repository.
os.environ.setdefault("CHAINLIT_APP_ROOT", tempfile.mkdtemp(prefix="litevlm-ui-"))
pytest.importorskip("langgraph.checkpoint.postgres")
pytest.importorskip("psycopg_pool")

QUESTION = "How many nuclei are there?"


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    return write_sample_images(tmp_path_factory.mktemp("pg_images"))


def _settings(tmp_path: Path, tiny_paligemma: Path, url: str):
    return agent_settings(tmp_path, vision_model=tiny_paligemma, checkpointer=url)


def _questions(state: dict) -> list[str]:
    return [m.content for m in state.get("messages", []) if m.type == "human"]


def test_threads_survive_a_server_restart_and_dropped_connections(
    tmp_path,
    tiny_paligemma,
    images,
    postgres,  # noqa: F811
):
    from agent.assistant import Assistant

    url = postgres.create_database("threads_restart")
    settings = _settings(tmp_path, tiny_paligemma, url)
    thread = "t-restart"
    with Assistant(settings) as assistant:
        first = assistant.ask(QUESTION, [images["cell"]], thread_id=thread)
        assert first.text
        postgres.restart()  # every pooled connection is now dead
        assistant.ask("And their mean area?", thread_id=thread)
        assert postgres.terminate_connections() >= 1  # a dropped link, as a failover would
        assistant.ask("What fraction of the image do they cover?", thread_id=thread)
    # Another process (a new Assistant, new pool) sees the whole thread.
    with Assistant(settings) as other:
        asked = _questions(other.thread_state(thread))
    assert len(asked) == 3 and asked[0].startswith(QUESTION), asked


def test_server_lost_mid_turn_is_one_clear_error_and_loses_nothing(
    tmp_path,
    tiny_paligemma,
    images,
    postgres,  # noqa: F811
):
    from agent.assistant import Assistant
    from litevlm.errors import ServiceUnavailable

    url = postgres.create_database("threads_lost")
    settings = _settings(tmp_path, tiny_paligemma, url)
    thread = "t-lost"
    with Assistant(settings) as assistant:
        assistant.ask(QUESTION, [images["cell"]], thread_id=thread)
        saver = assistant.graph.checkpointer
        real_get = saver.get_tuple

        def read_then_lose_the_server(config):
            out = real_get(config)  # the turn has started and read its thread...
            saver.get_tuple = real_get
            postgres.stop()  # ...and the server goes away before the turn is saved
            return out

        saver.get_tuple = read_then_lose_the_server
        try:
            with pytest.raises(ServiceUnavailable) as err:
                assistant.ask("And their mean area?", thread_id=thread)
        finally:
            postgres.start()
        message = str(err.value)
        assert "PostgreSQL at 127.0.0.1" in message and "not saved" in message
        assert "\n" not in message and "litevlm@" not in message  # one line, no credentials
        # The server is back: the same assistant carries on, nothing saved before is lost.
        assistant.ask("What fraction of the image do they cover?", thread_id=thread)
        asked = _questions(assistant.thread_state(thread))
    assert asked[0].startswith(QUESTION) and len(asked) == 2, asked


def test_unreachable_server_at_start_is_a_config_error(tmp_path, tiny_paligemma, postgres):  # noqa: F811
    from agent.assistant import Assistant
    from litevlm.errors import ConfigError

    dead = f"postgresql://litevlm@127.0.0.1:{postgres.port + 1}/none"
    settings = _settings(tmp_path, tiny_paligemma, dead)
    with pytest.raises(ConfigError, match="cannot connect to PostgreSQL"):
        Assistant(settings).graph  # noqa: B018 - building the graph opens the checkpointer


# ------------------------------------------------------------------ Chainlit data layer


def _layer(postgres, tmp_path: Path, name: str):  # noqa: F811
    from litevlm.config import load_settings
    from ui.data_layer import LiteVLMDataLayer

    url = postgres.create_database(name)
    settings = load_settings(data_dir=tmp_path, ui={"database_url": url})
    return LiteVLMDataLayer.from_settings(settings)


async def _thread_for(layer, identifier: str, title: str) -> tuple[str, str]:
    from chainlit.context import init_http_context
    from chainlit.user import User

    init_http_context()  # the layer's writes look at the (HTTP) session
    user = await layer.create_user(User(identifier=identifier, metadata={"role": "user"}))
    thread = str(uuid.uuid4())
    await layer.update_thread(thread, name=title, user_id=user.id, tags=["x"])
    await layer.create_step(
        {
            "id": str(uuid.uuid4()),
            "threadId": thread,
            "name": identifier,
            "type": "user_message",
            "output": title,
            "streaming": False,
            "createdAt": "2026-01-01T00:00:00Z",
        }
    )
    return user.id, thread


def test_ui_threads_are_per_user_and_survive_a_restart(tmp_path, postgres):  # noqa: F811
    from chainlit.types import Pagination, ThreadFilter

    layer = _layer(postgres, tmp_path, "ui_users")

    async def listed(user_id: str) -> list[str]:
        page = await layer.list_threads(Pagination(first=20), ThreadFilter(userId=user_id))
        return [t["id"] for t in page.data]

    async def run():
        await layer.create_schema()
        alice, a_thread = await _thread_for(layer, "alice", "Alice's nuclei")
        bob, b_thread = await _thread_for(layer, "bob", "Bob's retina")
        before = (await listed(alice), await listed(bob))
        authors = (
            await layer.get_thread_author(a_thread),
            await layer.get_thread_author(b_thread),
        )
        postgres.restart()  # the engine's pooled connections die; pre-ping replaces them
        after = (await listed(alice), await listed(bob))
        thread = await layer.get_thread(a_thread)
        await layer.engine.dispose()
        return a_thread, b_thread, before, authors, after, thread

    a_thread, b_thread, before, authors, after, thread = asyncio.run(run())
    assert before == ([a_thread], [b_thread])  # each user lists only their own thread
    assert authors == ("alice", "bob")  # what chainlit's is_thread_author checks on every read
    assert after == before
    assert thread["name"] == "Alice's nuclei" and thread["tags"] == ["x"]
    assert [s["output"] for s in thread["steps"]] == ["Alice's nuclei"]


def test_ui_write_with_the_server_down_is_a_clear_error_and_loses_nothing(
    tmp_path,
    postgres,  # noqa: F811
):
    from litevlm.errors import ServiceUnavailable

    layer = _layer(postgres, tmp_path, "ui_down")

    async def run():
        await layer.create_schema()
        _, thread = await _thread_for(layer, "carol", "Carol's IHC")
        postgres.stop()
        try:
            with pytest.raises(ServiceUnavailable) as err:
                await layer.update_thread(thread, name="renamed while the server was down")
        finally:
            postgres.start()
        # Chainlit's own layer would have logged a warning and dropped the write silently.
        await layer.update_thread(thread, name="renamed after it came back")
        out = await layer.get_thread(thread)
        await layer.engine.dispose()
        return err.value, out

    error, thread = asyncio.run(run())
    assert "UI database (postgresql at 127.0.0.1" in str(error) and "not saved" in str(error)
    assert thread["name"] == "renamed after it came back"
    assert [s["output"] for s in thread["steps"]] == ["Carol's IHC"]
