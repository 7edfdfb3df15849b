"""User satisfaction: the UI's thumbs up/down (``litevlm feedback export`` CSV) per model."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

from finetune.evaluate.data import EvalDataError
from finetune.evaluate.schema import UNKNOWN, Satisfaction

_UP = {"1", "up", "+1", "true", "yes", "thumbs_up", "thumbsup", "👍", "positive", "good"}
_DOWN = {"0", "down", "-1", "false", "no", "thumbs_down", "thumbsdown", "👎", "negative", "bad"}


def feedback_satisfaction(path: str | Path) -> list[Satisfaction]:
    """Thumbs up/down from the UI's CSV export, per vision model and adapter version."""
    p = Path(path).expanduser()
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except OSError as e:
        raise EvalDataError(
            f"{p}: cannot read feedback: {e}", "export it with `litevlm feedback export`"
        ) from None
    if rows and "value" not in rows[0]:
        raise EvalDataError(
            f"{p}: no 'value' column (columns: {list(rows[0])})",
            "export it with `litevlm feedback export`",
        )
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        key = ((row.get("vision_model") or "").strip(), (row.get("adapter") or "").strip())
        groups[key].append(row)
    out = []
    for (model, adapter), rs in sorted(groups.items()):
        votes = [_vote(r.get("value")) for r in rs]
        up = sum(v is True for v in votes)
        down = sum(v is False for v in votes)
        out.append(
            Satisfaction(
                vision_model=model or UNKNOWN,
                adapter=adapter or "none",
                n=len(rs),
                up=up,
                down=down,
                satisfaction=up / (up + down) if up + down else None,
                comments=sum(bool((r.get("comment") or "").strip()) for r in rs),
            )
        )
    return out


def _vote(value: Any) -> bool | None:
    v = str(value or "").strip().lower()
    if v in _UP:
        return True
    if v in _DOWN:
        return False
    try:
        return float(v) > 0
    except ValueError:
        return None
