"""Test sets and answer files: what ``litevlm eval`` and ``litevlm score`` read.

A test set is read by ``finetune.data`` (JSONL/JSON/CSV rows, or the VQA-RAD, SLAKE, PathVQA,
ROCO and saved-HF layouts) into its ``Example``s; the fields evaluation needs (``id``,
``question_type``, ``modality``, ``keywords``, ``options``) are normalised into ``Example.meta``.
An answer file (``litevlm score``) holds answers already generated, one JSON object a line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError, field_validator

from finetune.data import Example
from finetune.evaluate.schema import UNKNOWN
from finetune.metrics import infer_answer_type
from litevlm.errors import LiteVLMError


class EvalDataError(LiteVLMError):
    """The test set or answer file is missing, malformed or has unusable rows."""


def load_test_set(path: str | Path, limit: int | None = None) -> list[Example]:
    """Read a test set; raise ``EvalDataError`` naming the file, row and field on bad input."""
    from finetune.config import DataConfig
    from finetune.data import DataError, load_examples

    p = Path(path).expanduser()
    if not p.exists():
        raise EvalDataError(f"{p}: test set not found", "pass --data a JSONL/CSV file or folder")
    # One split file of SLAKE (test.json beside imgs/) is read with SLAKE's layout.
    slake = p.is_file() and p.suffix == ".json" and (p.parent / "imgs").is_dir()
    try:
        examples = load_examples(DataConfig(path=str(p), layout="slake" if slake else "auto"))
    except DataError as e:
        raise EvalDataError(e.message, e.hint) from None
    out = [_with_eval_meta(e, i) for i, e in enumerate(examples, 1)]
    return out[:limit] if limit else out


def make_example(
    image: Any,
    question: str,
    answer: str,
    *,
    id: str = "",
    question_type: str | None = None,
    modality: str = UNKNOWN,
    keywords: list[str] | None = None,
    options: list[str] | None = None,
) -> Example:
    """An evaluation example built in code (benchmarks, tests, other tools)."""
    meta = {"id": id, "question_type": question_type, "modality": modality}
    meta |= {"keywords": keywords, "options": options}
    e = Example(
        image=image,
        prompt=question,
        answer=answer,
        image_id=str(image),
        question=question,
        meta={k: v for k, v in meta.items() if v not in (None, "")},
    )
    return _with_eval_meta(e, 1)


def _with_eval_meta(e: Example, i: int) -> Example:
    m = e.meta
    qt = m.get("question_type") or m.get("answer_type") or m.get("type")
    if e.kind == "caption" and not qt:
        qt = "description"
    e.meta = {
        **m,
        "id": str(m.get("id") or m.get("qid") or i),
        "question_type": str(qt).strip().lower() if qt else None,
        "modality": str(m.get("modality") or UNKNOWN),
        "keywords": listish(m.get("keywords")),
        "options": listish(m.get("options")),
    }
    return e


def listish(v: Any) -> list[str] | None:
    """A list, or a ";"-separated string (CSV cells), as a list of strings."""
    if v in (None, ""):
        return None
    if isinstance(v, list | tuple):
        return [str(x) for x in v]
    return [s.strip() for s in str(v).split(";") if s.strip()]


def answer_type(e: Example) -> str:
    return infer_answer_type(e.answer, e.meta.get("question_type"), e.meta.get("options"))


# ---------------------------------------------------------------- answer files


class AnswerRow(BaseModel):
    """One line of an answer file: a question, its reference, and the answer to score."""

    id: str = ""
    question: str
    answer: str
    prediction: str
    answer_type: Literal["closed", "open"]
    options: list[str] | None = None

    @field_validator("answer_type", mode="before")
    @classmethod
    def _type(cls, v: Any) -> Any:
        v = str(v).strip().lower() if v is not None else v
        return {"yes/no": "closed", "yes_no": "closed", "close": "closed"}.get(v, v)

    @field_validator("answer", "prediction", "question", mode="before")
    @classmethod
    def _text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v

    @field_validator("options", mode="before")
    @classmethod
    def _options(cls, v: Any) -> Any:
        return listish(v) if isinstance(v, str) else v


def load_answers(path: str | Path) -> list[AnswerRow]:
    """Read an answer file (JSONL); one ``EvalDataError`` naming the line and field if bad."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise EvalDataError(f"{p}: answer file not found", "pass a JSONL file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise EvalDataError(f"{p}: cannot read: {e}") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise EvalDataError(f"{p}: line {n} is not valid JSON: {e.msg}") from None
        if not isinstance(obj, dict):
            raise EvalDataError(f"{p}: line {n} is not a JSON object")
        try:
            row = AnswerRow.model_validate(obj)
        except ValidationError as e:
            err = e.errors()[0]
            field = ".".join(str(x) for x in err["loc"]) or "line"
            what = "missing" if err["type"] == "missing" else err["msg"]
            raise EvalDataError(
                f"{p}: line {n}: field {field!r}: {what}",
                "each line needs question, answer, prediction and answer_type (closed or open)",
            ) from None
        rows.append(row if row.id else row.model_copy(update={"id": str(n)}))
    if not rows:
        raise EvalDataError(f"{p}: no answers", "the file has no lines")
    return rows
