"""Persistence for the chat UI: threads, messages, steps, elements and feedback.

Chainlit's ``SQLAlchemyDataLayer`` is written against PostgreSQL and does not create its tables.
This module ships the schema (portable column types: ids as TEXT, JSON as TEXT), creates it on
start, and adapts the layer to SQLite, the default (``<data dir>/ui/chainlit.db``): lists and
dicts are stored as JSON text and decoded again on the way out. A PostgreSQL URL in
``[ui] database_url`` (``postgresql://...``: psycopg 3, from the ``postgres`` extra; or
``postgresql+asyncpg://...``) gives a shared deployment the same tables.

Against a server, connections are checked before use (``pool_pre_ping``), so a server restart
or a dropped connection costs a reconnect; a statement whose connection is lost is retried once
on a fresh one, and if the server stays unreachable it raises ``ServiceUnavailable`` (one clear
line) instead of chainlit's default of logging a warning and dropping the write.

Uploaded files and figures are stored on local disk (``<data dir>/ui/files``) by
``LocalStorageClient`` and served to their owner by the app's ``/litevlm/files`` route.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainlit.data.sql_alchemy import SQLAlchemyDataLayer
from chainlit.data.storage_clients.base import BaseStorageClient

from litevlm.errors import ServiceUnavailable

if TYPE_CHECKING:
    from chainlit.types import Feedback, Pagination, ThreadFilter

    from litevlm.config import Settings

FILES_ROUTE = "/litevlm/files"
# How many thread ids the data layer remembers as existing (a few MB at most).
_KNOWN_THREADS = 10_000
# How long Chainlit's per-message writes wait before they run (LiteVLMDataLayer._in_order).
WRITE_DELAY_S = 0.05
# Set while one of those writes runs: what it calls itself (a step creates its thread) runs at
# once, not behind it.
_IN_WRITE: contextvars.ContextVar[bool] = contextvars.ContextVar("in_write", default=False)

# Columns follow chainlit 2.12's StepDict / ElementDict / Feedback: the layer inserts every
# non-empty key of those dicts, so a missing column loses the whole row.
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS users (
        "id" TEXT PRIMARY KEY,
        "identifier" TEXT NOT NULL UNIQUE,
        "metadata" TEXT NOT NULL,
        "createdAt" TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS threads (
        "id" TEXT PRIMARY KEY,
        "createdAt" TEXT,
        "name" TEXT,
        "userId" TEXT,
        "userIdentifier" TEXT,
        "tags" TEXT,
        "metadata" TEXT,
        FOREIGN KEY ("userId") REFERENCES users("id") ON DELETE CASCADE
    )""",
    """CREATE TABLE IF NOT EXISTS steps (
        "id" TEXT PRIMARY KEY,
        "name" TEXT NOT NULL,
        "type" TEXT NOT NULL,
        "threadId" TEXT NOT NULL,
        "parentId" TEXT,
        "streaming" BOOLEAN NOT NULL,
        "waitForAnswer" BOOLEAN,
        "isError" BOOLEAN,
        "metadata" TEXT,
        "tags" TEXT,
        "input" TEXT,
        "output" TEXT,
        "createdAt" TEXT,
        "command" TEXT,
        "modes" TEXT,
        "start" TEXT,
        "end" TEXT,
        "generation" TEXT,
        "showInput" TEXT,
        "language" TEXT,
        "indent" INT,
        "defaultOpen" BOOLEAN,
        "autoCollapse" BOOLEAN,
        FOREIGN KEY ("threadId") REFERENCES threads("id") ON DELETE CASCADE
    )""",
    """CREATE TABLE IF NOT EXISTS elements (
        "id" TEXT PRIMARY KEY,
        "threadId" TEXT,
        "type" TEXT,
        "url" TEXT,
        "chainlitKey" TEXT,
        "name" TEXT NOT NULL,
        "display" TEXT,
        "objectKey" TEXT,
        "size" TEXT,
        "page" INT,
        "language" TEXT,
        "forId" TEXT,
        "mime" TEXT,
        "props" TEXT,
        "autoPlay" BOOLEAN,
        "playerConfig" TEXT,
        FOREIGN KEY ("threadId") REFERENCES threads("id") ON DELETE CASCADE
    )""",
    """CREATE TABLE IF NOT EXISTS feedbacks (
        "id" TEXT PRIMARY KEY,
        "forId" TEXT NOT NULL,
        "threadId" TEXT,
        "value" INT NOT NULL,
        "comment" TEXT,
        "createdAt" TEXT
    )""",
    'CREATE INDEX IF NOT EXISTS steps_thread ON steps ("threadId")',
    'CREATE INDEX IF NOT EXISTS elements_thread ON elements ("threadId")',
    'CREATE INDEX IF NOT EXISTS threads_user ON threads ("userId")',
    'CREATE INDEX IF NOT EXISTS feedbacks_for ON feedbacks ("forId")',
]

# A user's threads, latest activity first: Chainlit's own list query without the steps.
_THREADS_PAGE = """
    SELECT t."id", t."createdAt", t."name", t."userId", t."userIdentifier", t."tags",
           t."metadata", MAX(s."createdAt") AS "updatedAt"
    FROM threads t LEFT JOIN steps s ON t."id" = s."threadId"
    WHERE t."userId" = :user_id
    GROUP BY t."id", t."createdAt", t."name", t."userId", t."userIdentifier", t."tags",
             t."metadata"
    ORDER BY "updatedAt" DESC NULLS LAST
"""

# Fields read back as JSON text from SQLite that the frontend expects as objects.
_JSON_FIELDS = ("metadata", "tags", "generation", "props", "modes")


def ui_dir(settings: Settings) -> Path:
    return settings.data_dir / "ui"


def database_url(settings: Settings) -> str:
    """``[ui] database_url``, or the SQLite file in the data directory."""
    if url := settings.ui.database_url:
        for plain in ("postgresql://", "postgres://"):
            if url.startswith(plain):  # the async driver that the postgres extra installs
                return "postgresql+psycopg://" + url[len(plain) :]
        return url
    return f"sqlite+aiosqlite:///{ui_dir(settings) / 'chainlit.db'}"


def sync_url(url: str) -> str:
    """The same database through a synchronous driver (for the CLI's export)."""
    return url.replace("+aiosqlite", "").replace("+asyncpg", "+psycopg")


def is_session_upload(path: str | Path | None) -> bool:
    """Whether ``path`` is a file a user uploaded, in Chainlit's per-session files folder."""
    if not path:
        return False
    from chainlit.config import FILES_DIRECTORY

    try:
        return Path(path).resolve().is_relative_to(Path(FILES_DIRECTORY).resolve())
    except (OSError, ValueError):
        return False


class LocalStorageClient(BaseStorageClient):
    """Element files on local disk, under ``root/<user id>/<element id>/<name>``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, object_key: str) -> Path:
        """The file for a key; refuses keys that would leave ``root``."""
        p = (self.root / object_key).resolve()
        if not p.is_relative_to(self.root.resolve()):
            raise ValueError(f"object key outside the storage root: {object_key!r}")
        return p

    async def upload_file(
        self,
        object_key: str,
        data: bytes | str,
        mime: str = "application/octet-stream",
        overwrite: bool = True,
        content_disposition: str | None = None,
    ) -> dict[str, Any]:
        p = self.path(object_key)
        if p.exists() and not overwrite:
            return {"object_key": object_key, "url": await self.get_read_url(object_key)}
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data.encode() if isinstance(data, str) else data)
        return {"object_key": object_key, "url": await self.get_read_url(object_key)}

    async def delete_file(self, object_key: str) -> bool:
        p = self.path(object_key)
        if p.is_file():
            p.unlink()
        return True

    async def get_read_url(self, object_key: str) -> str:
        return f"{FILES_ROUTE}/{object_key}"

    async def close(self) -> None:
        return None


def _encode(value: Any) -> Any:
    # SQLite cannot bind lists or dicts; chainlit passes tags as a list and modes as a dict.
    if isinstance(value, list | dict):
        return json.dumps(value)
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _decode_fields(d: dict[str, Any]) -> dict[str, Any]:
    for key in _JSON_FIELDS:
        if key in d:
            d[key] = _decode(d[key])
    return d


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    # Write-ahead logging: a commit is one fsync of the log, not of the journal and the file
    # (4 ms instead of 18 here, and the UI commits a few dozen times a turn); still durable
    # (synchronous stays FULL), and readers such as the feedback export do not block writers.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def _connection_lost(e: Exception) -> bool:
    """A statement that failed because the connection or the server went away."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    return bool(getattr(e, "connection_invalidated", False)) or isinstance(
        e, OperationalError | InterfaceError
    )


def _first_line(e: Any) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _where(url: str) -> str:
    """host:port/db of a database URL, without the user or password."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme.split('+')[0]} at {parts.hostname or 'localhost'}{port}{parts.path}"


class LiteVLMDataLayer(SQLAlchemyDataLayer):
    """``SQLAlchemyDataLayer`` that creates its tables and speaks SQLite as well as PostgreSQL."""

    def __init__(self, url: str, files_dir: Path) -> None:
        if url.startswith("sqlite"):
            db = url.split("///", 1)[-1]
            if db and db != ":memory:":
                Path(db).parent.mkdir(parents=True, exist_ok=True)
        self.storage = LocalStorageClient(files_dir)
        super().__init__(conninfo=url, storage_provider=self.storage)
        self.is_server = not url.startswith("sqlite")
        # Threads this process has written: see update_thread.
        self._threads: OrderedDict[str, None] = OrderedDict()
        self._write_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock]
        self._write_locks = weakref.WeakKeyDictionary()
        self._writes: set[asyncio.Task] = set()
        if not self.is_server:
            from sqlalchemy import event

            event.listen(self.engine.sync_engine, "connect", _sqlite_wal)
        if self.is_server:
            from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
            from sqlalchemy.orm import sessionmaker

            # Chainlit's engine has no pre-ping: after a server restart every pooled
            # connection would fail once. Nothing has connected yet, so swap it.
            self.engine = create_async_engine(url, pool_pre_ping=True)
            self.async_session = sessionmaker(
                bind=self.engine, expire_on_commit=False, class_=AsyncSession
            )

    # -- writes: in order, just after the messages they go with
    async def _in_order(self, write: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run one of Chainlit's per-message writes, ``write(*args)``, ``WRITE_DELAY_S`` later,
        one at a time, in the order they were made.

        Chainlit starts each write as a task beside the message it sends. Run together, a
        step's end could be overwritten by its start (both are upserts), and at a turn's end
        their SQL ran on the event loop ahead of the messages still to reach the browser: the
        turn's end arrived ~90 ms late (``benchmarks/ui.py``). Reads wait for them (``written``).
        """
        if _IN_WRITE.get():
            return await write(*args)
        task = asyncio.current_task()
        if task is not None:
            self._writes.add(task)
        try:
            await asyncio.sleep(WRITE_DELAY_S)
            # One lock per event loop (a lock is bound to its loop; tests run several).
            lock = self._write_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
            async with lock:
                token = _IN_WRITE.set(True)
                try:
                    return await write(*args)
                finally:
                    _IN_WRITE.reset(token)
        finally:
            self._writes.discard(task)

    async def written(self) -> None:
        """Wait for the writes started so far (before a read, or the server's shutdown)."""
        if _IN_WRITE.get():  # a read inside a write: the writes after it wait for it
            return
        pending = self._writes - {asyncio.current_task()}
        if pending:
            await asyncio.wait(pending)

    async def create_step(self, step_dict: Any) -> None:
        await self._in_order(super().create_step, step_dict)

    async def update_step(self, step_dict: Any) -> None:
        # Chainlit's update_step is its create_step (an upsert) by way of self.create_step,
        # which would queue behind this very write.
        await self._in_order(super().create_step, step_dict)

    async def delete_step(self, step_id: str) -> None:
        await self._in_order(super().delete_step, step_id)

    async def create_element(self, element: Any) -> None:
        # A user's attachment arrives in Chainlit's session folder; the app keeps the one
        # copy of an accepted image (ui/app.py: moved into uploads/, shown by its preview) and
        # deletes a rejected one. Storing its bytes here as well kept every upload twice more.
        if is_session_upload(getattr(element, "path", None)):
            return
        await self._in_order(super().create_element, element)

    async def delete_element(self, element_id: str, thread_id: str | None = None) -> None:
        await self._in_order(super().delete_element, element_id, thread_id)

    @classmethod
    def from_settings(cls, settings: Settings) -> LiteVLMDataLayer:
        return cls(database_url(settings), ui_dir(settings) / "files")

    async def create_schema(self) -> None:
        from sqlalchemy import text

        async with self.engine.begin() as conn:
            for statement in SCHEMA:
                await conn.execute(text(statement))

    async def execute_sql(self, query: str, parameters: dict) -> list[dict[str, Any]] | int | None:
        params = {k: _encode(v) for k, v in parameters.items()}
        if not self.is_server:
            return await super().execute_sql(query, params)
        from sqlalchemy import text
        from sqlalchemy.exc import DBAPIError

        for attempt in range(2):
            try:
                async with self.async_session() as session, session.begin():
                    result = await session.execute(text(query), params)
                    if not result.returns_rows:
                        return result.rowcount
                    return self.clean_result([dict(row._mapping) for row in result.fetchall()])
            except DBAPIError as e:
                if not _connection_lost(e):
                    return await super().execute_sql(query, params)  # chainlit's handling
                if attempt:
                    raise ServiceUnavailable(
                        f"the UI database ({_where(self._conninfo)}) is unreachable: "
                        f"{_first_line(e.orig or e)}; this change was not saved",
                        "start the database or fix [ui] database_url; what was saved before is "
                        "kept",
                    ) from e
        return None

    async def update_thread(
        self,
        thread_id: str,
        name: str | None = None,
        user_id: str | None = None,
        metadata: dict | None = None,
        tags: list[str] | None = None,
    ) -> None:
        # Chainlit calls this with the thread id alone before every step it writes, to create
        # the thread if it is new: a SELECT per step, a dozen per turn. A thread that this
        # process has written exists (delete_thread forgets it).
        if (name, user_id, metadata, tags) == (None, None, None, None) and (
            thread_id in self._threads
        ):
            return
        # In order with the steps' writes: Chainlit names a new thread at its first message,
        # beside the agent's start, which it would otherwise hold up by ~40 ms.
        await self._in_order(super().update_thread, thread_id, name, user_id, metadata, tags)
        self._threads[thread_id] = None
        self._threads.move_to_end(thread_id)
        if len(self._threads) > _KNOWN_THREADS:
            self._threads.popitem(last=False)

    async def delete_thread(self, thread_id: str) -> None:
        await self.written()  # a pending write would bring the thread's rows back
        self._threads.pop(thread_id, None)
        await super().delete_thread(thread_id)

    async def upsert_feedback(self, feedback: Feedback) -> str:
        # chainlit's Feedback has no time; the export needs one, so stamp the first write.
        is_new = not feedback.id
        feedback.id = feedback.id or str(uuid.uuid4())
        feedback_id = await super().upsert_feedback(feedback)
        if is_new:
            await self.execute_sql(
                'UPDATE feedbacks SET "createdAt" = :t WHERE "id" = :id',
                {"t": await self.get_current_timestamp(), "id": feedback_id},
            )
        return feedback_id

    async def get_all_user_threads(
        self, user_id: str | None = None, thread_id: str | None = None
    ) -> list[Any] | None:
        await self.written()
        threads = await super().get_all_user_threads(user_id=user_id, thread_id=thread_id)
        for thread in threads or []:
            _decode_fields(thread)
            for step in thread.get("steps", []):
                _decode_fields(step)
            for element in thread.get("elements", []):
                _decode_fields(element)
        return threads

    async def list_threads(self, pagination: Pagination, filters: ThreadFilter) -> Any:
        """The sidebar's page of threads. Chainlit's version reads every step and element of
        all the user's threads to return a page of names (hundreds of ms a call, growing with
        the history, and the chat asks for it on each new thread); without a search or feedback
        filter (those read steps) the threads' own rows suffice, in the same order."""
        from chainlit.types import PageInfo, PaginatedResponse

        if filters.search or filters.feedback is not None:
            await self.written()
            return await super().list_threads(pagination, filters)
        if not filters.userId:
            raise ValueError("userId is required")
        rows = await self.execute_sql(query=_THREADS_PAGE, parameters={"user_id": filters.userId})
        threads = [
            _decode_fields(
                {
                    "id": r["id"],
                    "createdAt": r["createdAt"],
                    "name": r["name"],
                    "userId": r["userId"],
                    "userIdentifier": r["userIdentifier"],
                    "tags": r["tags"],
                    "metadata": r["metadata"],
                    "steps": [],
                    "elements": [],
                }
            )
            for r in (rows if isinstance(rows, list) else [])
        ][: self.user_thread_limit or None]
        ids = [t["id"] for t in threads]
        start = ids.index(pagination.cursor) + 1 if pagination.cursor in ids else 0
        page = threads[start : start + pagination.first]
        return PaginatedResponse(
            pageInfo=PageInfo(
                hasNextPage=len(threads) > start + pagination.first,
                startCursor=page[0]["id"] if page else None,
                endCursor=page[-1]["id"] if page else None,
            ),
            data=page,
        )

    async def get_thread_author(self, thread_id: str) -> str:
        await self.written()  # a new thread's row may be a write still to run
        return await super().get_thread_author(thread_id)

    async def get_step(self, step_id: str) -> Any:
        await self.written()
        step = await super().get_step(step_id)
        return _decode_fields(step) if step else step

    async def get_element(self, thread_id: str, element_id: str) -> Any:
        from sqlalchemy import text

        await self.written()
        # The parent's version json.loads ``props`` unconditionally, which fails on NULL.
        query = 'SELECT "props" FROM elements WHERE "threadId" = :t AND "id" = :e'
        async with self.async_session() as session:
            row = (await session.execute(text(query), {"t": thread_id, "e": element_id})).first()
        if row is None:
            return None
        if row[0] is None:
            await self.execute_sql(
                'UPDATE elements SET "props" = :p WHERE "id" = :e', {"p": "{}", "e": element_id}
            )
        return await super().get_element(thread_id, element_id)
