"""On-disk SQLite cache of provider answers, keyed by provider + normalised query.

Keys are SHA-256 hashes of the (already redacted) query and the settings that shape the answer,
so the file holds no query text. Each call opens its own connection: sqlite3 connections do not
cross threads, and opening one costs well under a millisecond.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
import unicodedata
from pathlib import Path

from pydantic import TypeAdapter

from litevlm.types import Source

log = logging.getLogger(__name__)
_SOURCES = TypeAdapter(list[Source])

_SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    provider TEXT NOT NULL,
    key TEXT NOT NULL,
    created REAL NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (provider, key)
)
"""


def normalise_query(query: str) -> str:
    """Case, width and spacing variants of one query share a cache entry."""
    return " ".join(unicodedata.normalize("NFKC", query).casefold().split())


def cache_key(query: str, max_results: int, provider_key: str) -> str:
    raw = json.dumps([normalise_query(query), max_results, provider_key])
    return hashlib.sha256(raw.encode()).hexdigest()


class LiteratureCache:
    def __init__(self, path: Path, ttl_s: float, clock=time.time) -> None:
        self.path = Path(path)
        self.ttl_s = ttl_s
        self._clock = clock
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=5.0, isolation_level=None)

    def get(self, provider: str, key: str) -> list[Source] | None:
        try:
            db = self._connect()
            try:
                row = db.execute(
                    "SELECT created, payload FROM answers WHERE provider = ? AND key = ?",
                    (provider, key),
                ).fetchone()
            finally:
                db.close()
        except sqlite3.Error as e:
            log.warning("literature cache %s unreadable (%s); querying the service", self.path, e)
            return None
        if row is None or self._clock() - row[0] > self.ttl_s:
            return None
        try:
            return _SOURCES.validate_json(row[1])
        except ValueError:
            return None

    def put(self, provider: str, key: str, sources: list[Source]) -> None:
        payload = _SOURCES.dump_json(sources).decode()
        try:
            db = self._connect()
            try:
                db.execute(
                    "INSERT OR REPLACE INTO answers (provider, key, created, payload) "
                    "VALUES (?, ?, ?, ?)",
                    (provider, key, self._clock(), payload),
                )
            finally:
                db.close()
        except sqlite3.Error as e:
            log.warning("literature cache %s not written (%s)", self.path, e)

    def purge_expired(self) -> int:
        db = self._connect()
        try:
            cur = db.execute("DELETE FROM answers WHERE created < ?", (self._clock() - self.ttl_s,))
            return cur.rowcount
        finally:
            db.close()
