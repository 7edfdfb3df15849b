"""Threads in PostgreSQL: LangGraph's ``PostgresSaver`` over a psycopg connection pool.

A pool, not one connection: every checkpoint read or write takes a connection that the pool has
just checked (``ConnectionPool.check_connection``), so a server restart or a dropped connection
between turns costs a reconnect, not the process. If the server is down when a turn reads or
writes its thread, the turn fails with one clear line (``ServiceUnavailable``); what earlier
turns saved stays in the database, and the next turn after the server is back continues the
thread.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from litevlm.errors import ConfigError, ServiceUnavailable

CONNECT_TIMEOUT_S = 5


def _where(uri: str) -> str:
    """host:port/db of a URL, without the user or password."""
    parts = urlsplit(uri)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"{host}{port}{parts.path}"


def _unavailable(uri: str, e: Exception) -> ServiceUnavailable:
    reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return ServiceUnavailable(
        f"the thread database (PostgreSQL at {_where(uri)}) is unreachable: {reason}; "
        "this turn was not saved",
        "start PostgreSQL or fix [agent] checkpointer; earlier turns are kept, ask again when "
        "it is back",
    )


def open_postgres_saver(uri: str) -> tuple[Any, Any]:
    """(saver, pool) for a ``postgresql://`` URL; tables created on first use."""
    try:
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg import OperationalError
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool, PoolTimeout
    except ImportError as e:
        raise ConfigError(
            "[agent] checkpointer is a PostgreSQL URL but the driver is not installed",
            "pip install 'litevlm[postgres]'",
        ) from e

    lost = (OperationalError, PoolTimeout)

    class Saver(PostgresSaver):
        """PostgresSaver whose connection failures are one clear ``ServiceUnavailable``."""

        def _guard(self, fn: Any, *a: Any, **kw: Any) -> Any:
            try:
                return fn(*a, **kw)
            except lost as e:
                raise _unavailable(uri, e) from e

        def get_tuple(self, config: Any) -> Any:
            return self._guard(super().get_tuple, config)

        def list(self, *a: Any, **kw: Any) -> Any:
            return self._guard(lambda: list(super(Saver, self).list(*a, **kw)))

        def put(self, *a: Any, **kw: Any) -> Any:
            return self._guard(super().put, *a, **kw)

        def put_writes(self, *a: Any, **kw: Any) -> Any:
            return self._guard(super().put_writes, *a, **kw)

        def delete_thread(self, thread_id: str) -> None:
            return self._guard(super().delete_thread, thread_id)

    pool = ConnectionPool(
        uri,
        min_size=1,
        max_size=4,
        kwargs={
            "autocommit": True,
            "prepare_threshold": 0,
            "row_factory": dict_row,
            "connect_timeout": CONNECT_TIMEOUT_S,
        },
        check=ConnectionPool.check_connection,
        timeout=CONNECT_TIMEOUT_S,
        open=False,
    )
    try:
        pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        saver = Saver(pool)
        saver.setup()
    except lost as e:
        pool.close()
        raise ConfigError(
            f"[agent] checkpointer: cannot connect to PostgreSQL at {_where(uri)} ({e})",
            "start the server, or check the URL, user and password",
        ) from None
    return saver, pool
