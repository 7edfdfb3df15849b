"""Synthetic question-answer pairs from captions, for labs with captions but few expert labels.

With a chat model (``init_chat_model`` string, ``[agent] chat_model``) each caption is turned
into a few pairs whose answers are stated in the caption; without one, templates pull the
modality, organ and findings out of the caption. Duplicates are removed, and every pair carries
``synthetic: true`` and its generator so it can be filtered out or weighted later.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from finetune.data import CAPTION_COLUMNS, IMAGE_COLUMNS, DataError, _pick, read_rows

log = logging.getLogger("litevlm.synth_qa")


class CaptionRow(BaseModel):
    image: str
    caption: str


class QAPair(BaseModel):
    image: str
    question: str
    answer: str
    synthetic: bool = True
    generator: str
    source_caption: str


MODALITIES = {
    "x-ray": ("x-ray", "radiograph", "chest film"),
    "CT": (" ct ", "ct scan", "computed tomography"),
    "MRI": ("mri", "magnetic resonance", "t1-weighted", "t2-weighted", "flair"),
    "ultrasound": ("ultrasound", "sonograph", "echograph"),
    "immunohistochemistry": ("immunohisto", "ihc", "dab"),
    "histology": ("h&e", "histolog", "haematoxylin", "hematoxylin", "biopsy section"),
    "fundus photograph": ("fundus", "retina", "retinal"),
    "fluorescence microscopy": ("fluorescen", "dapi"),
    "microscopy": ("microscop", "micrograph"),
}
ORGANS = (
    "lung",
    "heart",
    "liver",
    "kidney",
    "brain",
    "breast",
    "bone",
    "retina",
    "colon",
    "prostate",
    "skin",
    "abdomen",
    "chest",
    "spine",
    "knee",
    "pancreas",
    "thyroid",
)
FINDINGS = (
    "fracture",
    "mass",
    "nodule",
    "effusion",
    "pneumothorax",
    "tumor",
    "tumour",
    "lesion",
    "haemorrhage",
    "hemorrhage",
    "cyst",
    "metastasis",
    "inflammation",
    "necrosis",
    "mitosis",
    "microaneurysm",
    "edema",
    "consolidation",
    "calcification",
)
NEGATIONS = ("no ", "without ", "absence of ", "negative for ", "free of ")

PROMPT = """You write training data for a medical vision-language model.
From the image caption below, write up to {n} question-answer pairs about the image.
Rules: every answer must be stated in the caption (no outside knowledge); answers are short
(a word or a phrase, or yes/no); questions are about what the image shows.
Reply with a JSON list only: [{{"question": "...", "answer": "..."}}]

Caption: {caption}"""


def load_captions(path: str | Path) -> list[CaptionRow]:
    """Rows with an image and a caption, from JSONL/CSV/JSON; raises ``DataError``."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: captions file not found")
    rows = read_rows(path)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    image_col, caption_col = _pick(columns, IMAGE_COLUMNS), _pick(columns, CAPTION_COLUMNS)
    if image_col is None or caption_col is None:
        raise DataError(
            f"{path}: unknown columns {columns}: need an image and a caption column",
            "name them image and caption",
        )
    out = []
    for i, r in enumerate(rows, 1):
        caption = str(r.get(caption_col) or "").strip()
        if not caption:
            raise DataError(f"{path}: row {i}: empty caption")
        out.append(CaptionRow(image=str(r.get(image_col) or ""), caption=caption))
    return out


def _negated(text: str, term: str) -> bool:
    i = text.find(term)
    window = text[max(0, i - 20) : i]
    return any(n in window for n in NEGATIONS)


def template_pairs(row: CaptionRow) -> list[QAPair]:
    """Pairs whose answers can be read off the caption by keyword, no model needed."""
    text = f" {row.caption.lower()} "
    qa: list[tuple[str, str]] = [("what does this image show?", row.caption.rstrip("."))]
    modality = next((m for m, keys in MODALITIES.items() if any(k in text for k in keys)), None)
    if modality:
        qa.append(("what imaging modality is this?", modality))
    organ = next((o for o in ORGANS if re.search(rf"\b{o}s?\b", text)), None)
    if organ:
        qa.append(("which organ is shown?", organ))
    for term in FINDINGS:
        if re.search(rf"\b{term}(e?s)?\b", text):
            article = "an" if term[0] in "aeiou" else "a"
            qa.append((f"is there {article} {term}?", "no" if _negated(text, term) else "yes"))
    return [
        QAPair(
            image=row.image, question=q, answer=a, generator="template", source_caption=row.caption
        )
        for q, a in qa
    ]


def make_chat_model(name: str, agent: Any = None) -> Any:
    """A LangChain chat model from an ``init_chat_model`` string and the [agent] settings
    (base_url, API key, timeout, max_tokens: the agent's own ``load_chat_model``)."""
    from agent.context import load_chat_model
    from litevlm.config import AgentConfig

    config = (
        agent.model_copy(update={"chat_model": name}) if agent else AgentConfig(chat_model=name)
    )
    return load_chat_model(config)


def answerable(pair: dict[str, str], caption: str) -> bool:
    """Whether the caption states the answer: its numbers, names and words (agent.grounding)."""
    from agent.grounding import check, source_support
    from litevlm.types import Source

    support = source_support([Source(kind="case", id="caption", snippet=caption)])
    return check(pair["answer"], support, pair["question"]) is None


def _parse_pairs(text: str) -> list[dict[str, str]]:
    match = re.search(r"\[.*\]", text, re.S)
    if not match:
        return []
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return []
    return [
        {"question": str(d["question"]).strip(), "answer": str(d["answer"]).strip()}
        for d in data
        if isinstance(d, dict) and d.get("question") and d.get("answer")
    ]


def model_pairs(row: CaptionRow, chat: Any, n: int) -> list[QAPair]:
    reply = chat.invoke(PROMPT.format(n=n, caption=row.caption))
    content = reply.content if hasattr(reply, "content") else str(reply)
    name = getattr(chat, "model_name", None) or getattr(chat, "model", None) or type(chat).__name__
    parsed = _parse_pairs(content if isinstance(content, str) else json.dumps(content))
    # A small model invents: only pairs whose answer the caption states are kept.
    return [
        QAPair(image=row.image, generator=str(name), source_caption=row.caption, **p)
        for p in parsed
        if answerable(p, row.caption)
    ][:n]


def _key(p: QAPair) -> tuple[str, str]:
    return p.image, re.sub(r"[^a-z0-9 ]", "", p.question.lower()).strip()


def synthesize(rows: list[CaptionRow], chat: Any = None, per_caption: int = 5) -> list[QAPair]:
    """Pairs for every caption (model first, templates if it gives none), duplicates removed."""
    from tqdm import tqdm

    seen: set[tuple[str, str]] = set()
    out: list[QAPair] = []
    for row in tqdm(rows, desc="synth-qa", disable=len(rows) < 50):
        pairs = []
        if chat is not None:
            try:
                pairs = model_pairs(row, chat, per_caption)
            except Exception as e:
                if _unreachable(e):  # no server at all: say so once, write nothing
                    from litevlm.errors import ServiceUnavailable

                    where = getattr(chat, "openai_api_base", None) or getattr(chat, "base_url", "")
                    raise ServiceUnavailable(
                        f"synth-qa: the chat model at {where or 'its provider'} is not reachable "
                        f"({type(e).__name__})",
                        "start the server, fix [agent] base_url, or use --templates",
                    ) from e
                # a timeout or a bad answer on one caption: that caption gets templates
                log.warning("synth-qa: the chat model failed on %s (%s); templates", row.image, e)
        if not pairs:
            # The description pair plus up to per_caption-1 keyword pairs.
            pairs = template_pairs(row)[:per_caption]
        for p in pairs:
            if _key(p) not in seen:
                seen.add(_key(p))
                out.append(p)
    return out


def _unreachable(e: BaseException) -> bool:
    """A refused or unresolvable connection (not a timeout or a bad answer)."""
    while e is not None:
        if type(e).__name__ in {"APIConnectionError", "ConnectError", "ConnectionRefusedError"}:
            return "timeout" not in type(e).__name__.lower()
        e = e.__cause__ or e.__context__
    return False


def write_pairs(pairs: list[QAPair], path: str | Path) -> Path:
    path = Path(path)
    with open(path, "w") as f:
        for p in pairs:
            f.write(p.model_dump_json() + "\n")
    return path
