"""Datasets for fine-tuning: the layouts labs and papers use, checked, split by image, summarised.

Layouts (``DataConfig.layout``):

- ``jsonl`` / ``csv``: one row per example with an image column (``image``; also ``image_path``,
  ``file``, ``img_name``...), a ``question`` or ``prompt`` and an ``answer`` or ``caption``.
- ``vqa_rad``: the VQA-RAD public JSON (``image_name``, ``question``, ``answer``), images in
  ``VQA_RAD Image Folder/``.
- ``slake``: SLAKE's ``train.json``/``validation.json``/``test.json`` (``img_name``, ``question``,
  ``answer``, ``q_lang``), images in ``imgs/``.
- ``pathvqa``: PathVQA records (``image`` without extension, ``question``, ``answer``) as JSON or
  JSONL, images found by name under ``images/``.
- ``roco``: ROCO caption CSVs (``id``, ``name``, ``caption``), images in ``images/``.
- ``hf``: a folder written by ``datasets``' ``save_to_disk`` with ``image`` and text columns.

Splits are made **by image**: every question about one image lands in the same split, so the
model is never tested on an image it was trained on (VQA-RAD's official split has that leak).
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from finetune.config import DataConfig
from litevlm.errors import LiteVLMError

IMAGE_COLUMNS = (
    "image",
    "image_path",
    "image_file",
    "file",
    "filename",
    "img",
    "img_name",
    "image_name",
    "name",
    "path",
)
QUESTION_COLUMNS = ("question", "query", "instruction")
PROMPT_COLUMNS = ("prompt", "prefix")
ANSWER_COLUMNS = ("answer", "answers", "response", "suffix", "target")
CAPTION_COLUMNS = ("caption", "text", "report", "description")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".webp")
MAX_ERRORS_SHOWN = 5
# Row fields kept in ``Example.meta``: evaluation groups and scores by them.
META_COLUMNS = (
    "id",
    "qid",
    "answer_type",
    "question_type",
    "modality",
    "keywords",
    "options",
    "split",
    "source",
)


class DataError(LiteVLMError):
    """A dataset file is missing, malformed, or has rows that cannot be trained on."""


@dataclass
class Example:
    """One training example: an image, the PaliGemma prefix, and the answer to learn."""

    image: Any  # a path (str) or an in-memory PIL image (saved HF datasets)
    prompt: str
    answer: str
    image_id: str
    question: str | None = None
    kind: str = "vqa"  # vqa | caption
    synthetic: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


class SplitStats(BaseModel):
    examples: int
    images: int
    closed_fraction: float  # yes/no answers
    mean_answer_words: float
    synthetic: int
    captions: int


class DatasetStats(BaseModel):
    source: str
    layout: str
    splits: dict[str, SplitStats]
    top_answers: list[tuple[str, int]]


# ---------------------------------------------------------------- loading


def load_examples(cfg: DataConfig) -> list[Example]:
    """Read and validate every example of ``cfg``; raise ``DataError`` listing the bad rows."""
    path = Path(cfg.path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: data file or folder not found", "check data.path in the config")
    layout = detect_layout(path) if cfg.layout == "auto" else cfg.layout
    loader = _LOADERS[layout]
    rows, errors = loader(path, cfg)
    if errors:
        shown = "; ".join(errors[:MAX_ERRORS_SHOWN])
        more = (
            f" (and {len(errors) - MAX_ERRORS_SHOWN} more)"
            if len(errors) > MAX_ERRORS_SHOWN
            else ""
        )
        raise DataError(
            f"{path}: {len(errors)} bad row(s): {shown}{more}", "fix or drop those rows"
        )
    if not rows:
        raise DataError(f"{path}: no examples found", "check the layout and language settings")
    if cfg.max_samples:
        rows = rows[: cfg.max_samples]
    return rows


def detect_layout(path: Path) -> str:
    if path.is_dir():
        if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
            return "hf"
        if (path / "imgs").is_dir() and any(path.glob("*.json")):
            return "slake"
        if any(path.glob("*VQA_RAD*.json")):
            return "vqa_rad"
        if (path / "images").is_dir() and any(path.glob("*.csv")):
            return "roco"
        raise DataError(f"{path}: cannot tell the dataset layout", "set data.layout explicitly")
    if path.suffix == ".csv":
        return "csv"
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.suffix == ".json":
        if "vqa_rad" in path.name.lower():
            return "vqa_rad"
        return "jsonl"  # a JSON list of row objects reads like JSONL
    raise DataError(f"{path}: unknown data file type {path.suffix!r}", "use .jsonl, .csv or .json")


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV, JSON (a list, or a dict holding one) or JSONL file; ``DataError`` if bad."""
    try:
        if path.suffix == ".csv":
            with open(path, newline="", encoding="utf-8-sig") as f:
                return list(csv.DictReader(f))
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".json" or text.lstrip().startswith("["):
            data = json.loads(text)
            if isinstance(data, dict):  # {"data": [...]} or {"train": [...]}
                data = next((v for v in data.values() if isinstance(v, list)), [])
            return list(data)
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}: line {i} is not valid JSON: {e.msg}") from None
        return rows
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: cannot read: {e}") from None
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON: {e}") from None


def _pick(columns: list[str], names: tuple[str, ...]) -> str | None:
    lowered = {c.lower().strip(): c for c in columns}
    return next((lowered[n] for n in names if n in lowered), None)


def _rows_to_examples(
    rows: list[dict[str, Any]],
    cfg: DataConfig,
    source: Path,
    image_dir: Path,
    image_col: str | None = None,
    resolve: Any = None,
) -> tuple[list[Example], list[str]]:
    if not rows:
        return [], []
    columns = list(dict.fromkeys(k for row in rows for k in row))
    image_col = image_col or _pick(columns, IMAGE_COLUMNS)
    q_col, p_col = _pick(columns, QUESTION_COLUMNS), _pick(columns, PROMPT_COLUMNS)
    a_col, c_col = _pick(columns, ANSWER_COLUMNS), _pick(columns, CAPTION_COLUMNS)
    missing = []
    if image_col is None:
        missing.append("an image column (image, image_path, file...)")
    if a_col is None and c_col is None:
        missing.append("an answer column (answer or caption)")
    if missing:
        raise DataError(
            f"{source}: unknown columns {columns}: need {' and '.join(missing)}",
            "rename the columns or choose the right data.layout",
        )
    examples, errors = [], []
    for i, row in enumerate(rows, 1):
        where = f"row {i}"
        raw_image = row.get(image_col)
        if raw_image in (None, ""):
            errors.append(f"{where}: empty image")
            continue
        image_path = resolve(str(raw_image)) if resolve else image_dir / str(raw_image)
        in_memory = image_path is not None and not isinstance(image_path, str | Path)
        if image_path is None or not (in_memory or Path(image_path).is_file()):
            errors.append(f"{where}: image file not found: {image_path or raw_image}")
            continue
        answer = row.get(a_col) if a_col else None
        if isinstance(answer, list):
            answer = answer[0] if answer else ""
        kind = "vqa"
        if a_col is None or (answer in (None, "") and c_col and row.get(c_col)):
            answer, kind = row.get(c_col), "caption"
        answer = "" if answer is None else str(answer).strip()
        if not answer:
            errors.append(f"{where}: empty answer")
            continue
        question = str(row.get(q_col) or "").strip() if q_col else ""
        if p_col and row.get(p_col):
            prompt = str(row[p_col]).strip()
        elif question:
            prompt = cfg.prompt_template.format(question=question)
        elif kind == "caption" or q_col is None:
            prompt, kind = cfg.caption_prompt, "caption"
        else:
            errors.append(f"{where}: empty question")
            continue
        synthetic = str(row.get("synthetic", "")).lower() in ("1", "true", "yes")
        examples.append(
            Example(
                image=image_path if in_memory else str(image_path),
                prompt=prompt,
                answer=answer,
                image_id=_image_key(image_path if in_memory else str(image_path)),
                question=question or None,
                kind=kind,
                synthetic=synthetic,
                meta={k: row[k] for k in META_COLUMNS if row.get(k) not in (None, "")},
            )
        )
    return examples, errors


def _load_table(path: Path, cfg: DataConfig) -> tuple[list[Example], list[str]]:
    image_dir = Path(cfg.image_dir) if cfg.image_dir else path.parent
    return _rows_to_examples(read_rows(path), cfg, path, image_dir)


def _load_vqa_rad(path: Path, cfg: DataConfig) -> tuple[list[Example], list[str]]:
    if path.is_dir():
        found = sorted(path.glob("*VQA_RAD*.json")) or sorted(path.glob("*.json"))
        if not found:
            raise DataError(f"{path}: no VQA-RAD JSON file in this folder")
        path = found[0]
    image_dir = Path(cfg.image_dir) if cfg.image_dir else path.parent / "VQA_RAD Image Folder"
    if not image_dir.is_dir():
        image_dir = path.parent
    return _rows_to_examples(read_rows(path), cfg, path, image_dir, image_col="image_name")


def _load_slake(path: Path, cfg: DataConfig) -> tuple[list[Example], list[str]]:
    files = (
        [path]
        if path.is_file()
        else [
            path / n for n in ("train.json", "validation.json", "test.json") if (path / n).exists()
        ]
    )
    if not files:
        raise DataError(f"{path}: no SLAKE train.json/validation.json/test.json here")
    root = path if path.is_dir() else path.parent
    image_dir = Path(cfg.image_dir) if cfg.image_dir else root / "imgs"
    examples, errors = [], []
    for f in files:
        rows = [r for r in read_rows(f) if r.get("q_lang", cfg.language) == cfg.language]
        ex, err = _rows_to_examples(rows, cfg, f, image_dir, image_col="img_name")
        examples += ex
        errors += [f"{f.name} {e}" for e in err]
    return examples, errors


def _stem_index(image_dir: Path) -> dict[str, Path]:
    return {p.stem: p for p in image_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}


def _load_pathvqa(path: Path, cfg: DataConfig) -> tuple[list[Example], list[str]]:
    files = [path] if path.is_file() else sorted([*path.glob("*.json"), *path.glob("*.jsonl")])
    if not files:
        raise DataError(f"{path}: no PathVQA JSON/JSONL files here")
    root = path if path.is_dir() else path.parent
    image_dir = Path(cfg.image_dir) if cfg.image_dir else root / "images"
    if not image_dir.is_dir():
        image_dir = root
    index = _stem_index(image_dir)  # PathVQA names images without their extension

    def resolve(name: str) -> Path | None:
        direct = image_dir / name
        return direct if direct.is_file() else index.get(Path(name).stem)

    examples, errors = [], []
    for f in files:
        ex, err = _rows_to_examples(read_rows(f), cfg, f, image_dir, resolve=resolve)
        examples += ex
        errors += err
    return examples, errors


def _load_roco(path: Path, cfg: DataConfig) -> tuple[list[Example], list[str]]:
    files = [path] if path.is_file() else sorted(path.glob("*.csv"))
    if not files:
        raise DataError(f"{path}: no ROCO caption CSV here")
    root = path if path.is_dir() else path.parent
    image_dir = Path(cfg.image_dir) if cfg.image_dir else root / "images"
    examples, errors = [], []
    for f in files:
        rows = read_rows(f)
        col = _pick(list(rows[0]) if rows else [], ("name", "image", "file"))
        ex, err = _rows_to_examples(rows, cfg, f, image_dir, image_col=col)
        examples += ex
        errors += err
    return examples, errors


def _load_hf(path: Path, cfg: DataConfig) -> tuple[list[Example], list[str]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except Exception as e:  # datasets raises several types for a bad folder
        raise DataError(f"{path}: not a saved Hugging Face dataset: {e}") from None
    parts = ds.values() if isinstance(ds, datasets.DatasetDict) else [ds]
    examples, errors = [], []
    for part in parts:
        image_col = _pick(part.column_names, IMAGE_COLUMNS)
        if image_col is None:
            raise DataError(
                f"{path}: unknown columns {part.column_names}: need an image column (image...)"
            )
        images = part[image_col]
        rows = [{**row, image_col: str(i)} for i, row in enumerate(part.remove_columns(image_col))]

        def resolve(key: str, images: list[Any] = images) -> Any:
            image = images[int(key)]
            if isinstance(image, str) and not Path(image).is_absolute():
                return path / image
            return image

        ex, err = _rows_to_examples(rows, cfg, path, path, image_col, resolve=resolve)
        examples += ex
        errors += err
    return examples, errors


def _image_key(image: Any) -> str:
    if isinstance(image, str):
        return str(Path(image).resolve())
    return hashlib.sha1(image.tobytes()).hexdigest()


_LOADERS = {
    "jsonl": _load_table,
    "csv": _load_table,
    "vqa_rad": _load_vqa_rad,
    "slake": _load_slake,
    "pathvqa": _load_pathvqa,
    "roco": _load_roco,
    "hf": _load_hf,
}


# ---------------------------------------------------------------- splits and statistics


def split_by_image(
    examples: list[Example], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[Example]]:
    """Train/val/test with no image in two splits; the same seed gives the same split."""
    if val_fraction < 0 or test_fraction < 0 or val_fraction + test_fraction >= 1:
        raise DataError(
            f"val_fraction={val_fraction} and test_fraction={test_fraction} leave no training data",
            "use fractions that add up to less than 1",
        )
    images = sorted({e.image_id for e in examples})
    random.Random(seed).shuffle(images)
    n = len(images)
    n_test = round(n * test_fraction) if test_fraction else 0
    n_val = round(n * val_fraction) if val_fraction else 0
    # A held-out split asked for gets at least one image while training keeps one.
    if test_fraction and n_test == 0 and n - n_val > 1:
        n_test = 1
    if val_fraction and n_val == 0 and n - n_test > 1:
        n_val = 1
    which = {img: "test" for img in images[:n_test]}
    which.update({img: "val" for img in images[n_test : n_test + n_val]})
    splits: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for e in examples:
        splits[which.get(e.image_id, "train")].append(e)
    return splits


def _is_closed(answer: str) -> bool:
    return answer.strip().lower().rstrip(".") in ("yes", "no")


def dataset_stats(
    splits: dict[str, list[Example]], source: str = "", layout: str = ""
) -> DatasetStats:
    stats = {}
    for name, rows in splits.items():
        n = len(rows)
        stats[name] = SplitStats(
            examples=n,
            images=len({e.image_id for e in rows}),
            closed_fraction=round(sum(_is_closed(e.answer) for e in rows) / n, 3) if n else 0.0,
            mean_answer_words=round(sum(len(e.answer.split()) for e in rows) / n, 2) if n else 0.0,
            synthetic=sum(e.synthetic for e in rows),
            captions=sum(e.kind == "caption" for e in rows),
        )
    answers = Counter(e.answer.lower() for rows in splits.values() for e in rows)
    return DatasetStats(
        source=source, layout=layout, splits=stats, top_answers=answers.most_common(5)
    )


def format_stats(stats: DatasetStats) -> str:
    head = f"{'split':<6} {'examples':>8} {'images':>7} {'yes/no':>7} {'ans.words':>9} {'synth':>6}"
    lines = [f"data: {stats.source} ({stats.layout})", head]
    for name, s in stats.splits.items():
        lines.append(
            f"{name:<6} {s.examples:>8} {s.images:>7} {s.closed_fraction:>7.2f} "
            f"{s.mean_answer_words:>9.1f} {s.synthetic:>6}"
        )
    top = ", ".join(f"{a!r}×{n}" for a, n in stats.top_answers)
    lines.append(f"top answers: {top}")
    return "\n".join(lines)


def load_splits(cfg: DataConfig, seed: int) -> tuple[dict[str, list[Example]], DatasetStats]:
    """Load, validate and split ``cfg``'s data; return the splits and their statistics."""
    examples = load_examples(cfg)
    splits = split_by_image(examples, cfg.val_fraction, cfg.test_fraction, seed)
    layout = cfg.layout if cfg.layout != "auto" else detect_layout(Path(cfg.path))
    return splits, dataset_stats(splits, str(cfg.path), layout)


# ---------------------------------------------------------------- images


def open_image(image: Any) -> Any:
    """An example's image as a PIL RGB image (files go through litevlm's one image loader)."""
    if not isinstance(image, str):
        return image.convert("RGB")
    try:
        from tools.images import load_image
    except ImportError:  # the loader ships with the product; plain PIL keeps data tools usable
        from PIL import Image

        with Image.open(image) as im:
            return im.convert("RGB")
    return load_image(image).image
