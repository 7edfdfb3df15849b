"""Feedback export: thumbs up/down and comments given in the UI, with the models that answered.

Each answer message carries ``metadata["models"]`` (vision model, adapter, chat model) written
by the app when it sends the answer; feedback rows join to it, so user satisfaction can be
aggregated per model and adapter (``litevlm feedback export`` -> CSV).
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from pydantic import BaseModel

COLUMNS = [
    "thread_id",
    "message_id",
    "user",
    "value",
    "comment",
    "vision_model",
    "adapter",
    "chat_model",
    "created_at",
]

# Chainlit rates a whole run (the ``on_message`` step) when the thumbs belong to its last
# answer; the models are on the answer message inside it, so look there too.
_ANSWER = """(SELECT c."{col}" FROM steps c WHERE c."parentId" = s."id"
    AND c."type" = 'assistant_message' AND c."metadata" LIKE '%"models"%'
    ORDER BY c."createdAt" DESC LIMIT 1)"""

_QUERY = f"""
SELECT f."id" AS feedback_id, f."forId" AS rated_id, f."value" AS value,
       f."comment" AS comment, f."createdAt" AS feedback_created_at,
       s."threadId" AS thread_id, s."metadata" AS metadata, s."createdAt" AS step_created_at,
       {_ANSWER.format(col="id")} AS answer_id,
       {_ANSWER.format(col="metadata")} AS answer_metadata,
       t."userIdentifier" AS user_identifier
FROM feedbacks f
JOIN steps s ON s."id" = f."forId"
LEFT JOIN threads t ON t."id" = s."threadId"
ORDER BY f."createdAt", f."id"
"""


class FeedbackRow(BaseModel):
    thread_id: str
    message_id: str
    user: str | None = None
    value: int  # 1 thumbs up, 0 thumbs down
    comment: str = ""
    vision_model: str = ""
    adapter: str = ""
    chat_model: str = ""
    created_at: str = ""


def _metadata(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        return json.loads(raw) if raw else {}
    except (TypeError, json.JSONDecodeError):
        return {}


def read_feedback(url: str) -> list[FeedbackRow]:
    """All feedback in the UI database at ``url`` (an async or sync SQLAlchemy URL)."""
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.exc import SQLAlchemyError

    from litevlm.errors import ConfigError, ServiceUnavailable
    from ui.data_layer import sync_url

    if url.startswith("sqlite") and not Path(url.split("///", 1)[-1]).is_file():
        return []  # the UI has not been used yet: nothing to export
    try:
        engine = create_engine(sync_url(url))
    except ImportError as e:
        raise ConfigError(
            f"[ui] database_url: no database driver for it ({e})",
            "pip install 'litevlm[postgres]' for PostgreSQL",
        ) from e
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("feedbacks"):
                return []
            rows = conn.execute(text(_QUERY)).mappings().all()
    except SQLAlchemyError as e:
        cause = getattr(e, "orig", None) or e
        raise ServiceUnavailable(
            f"UI database {url.split('@')[-1]}: {type(e).__name__}: {cause}",
            "check [ui] database_url and that the database is running",
        ) from e
    finally:
        engine.dispose()
    out = []
    for r in rows:
        models = _metadata(r["metadata"]).get("models") or {}
        message_id = r["rated_id"]
        if not models and r["answer_id"]:
            models = _metadata(r["answer_metadata"]).get("models") or {}
            message_id = r["answer_id"]
        out.append(
            FeedbackRow(
                thread_id=r["thread_id"],
                message_id=message_id,
                user=r["user_identifier"],
                value=int(r["value"]),
                comment=r["comment"] or "",
                vision_model=models.get("vision") or "",
                adapter=models.get("adapter") or "",
                chat_model=models.get("chat") or "",
                created_at=r["feedback_created_at"] or r["step_created_at"] or "",
            )
        )
    return out


def write_csv(rows: list[FeedbackRow], out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow(row.model_dump())


def export_feedback(url: str, out: Path | None = None) -> int:
    """Write the feedback as CSV to ``out`` (stdout when None); return the number of rows."""
    rows = read_feedback(url)
    if out is None:
        write_csv(rows, sys.stdout)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="", encoding="utf-8") as f:
            write_csv(rows, f)
    return len(rows)
