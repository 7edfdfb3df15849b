"""Read annotated image collections and index them.

Layouts (``layout="auto"`` picks one from what is on disk):

- ``folder``: an image folder with an optional sidecar, ``*.jsonl`` (one JSON object per line)
  or ``*.csv``, whose rows name the image (``image``/``file_name``/``filename``/``path``) and give
  ``caption`` plus any of modality, stain, organ, source, license. Images without a row are
  indexed with an empty caption.
- ``roco``: ROCO-style CSVs (``id,name,caption``; images in ``images/`` beside the CSV).
- ``vqa-rad``: the VQA-RAD JSON (``image_name``, ``question``, ``answer``, ``image_organ``;
  images in ``VQA_RAD Image Folder/`` or beside the JSON).
- ``slake``: SLAKE JSON files (``img_name``, ``question``, ``answer``, ``q_lang``,
  ``location``, ``modality``; images in ``imgs/``). English questions only.
- ``hf``: a Hugging Face dataset saved with ``save_to_disk`` (Dataset or DatasetDict).

For VQA layouts one record per image; its caption is the image's question-answer pairs.

Record ids are content hashes (image bytes + caption), so running the same command twice adds
nothing, and a run killed midway, run again, skips what is stored and adds the rest. Each
batch is written in one upsert, so a record is either fully stored or not at all.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from litevlm.errors import ImageLoadError, LiteVLMError
from tools.retrieval.store import FILTER_FIELDS, CaseRecord, Collection, RetrievalError

LAYOUTS = ("auto", "folder", "roco", "vqa-rad", "slake", "hf")
_IMAGE_KEYS = ("image", "file_name", "filename", "path", "image_path", "img", "name")
_CAPTION_KEYS = ("caption", "text", "description", "report", "findings")
_SLAKE_MODALITY = {"CT": "CT", "MRI": "MR", "X-Ray": "DX"}
_MAX_CAPTION = 2000


class Item(BaseModel):
    """One case before embedding: where its pixels come from and what is known about it."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    where: str = Field(description="file path or dataset row, for messages")
    path: Path | None = None
    pil: Any = Field(default=None, description="PIL image when the layout holds decoded pixels")
    caption: str = ""
    meta: dict[str, str] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict)
    tile: dict[str, Any] | None = Field(
        default=None, description="a tile of a slide: slide path, level-0 x, y, w, h, mpp"
    )


class SlideTiling(BaseModel):
    """How many tiles of each slide are indexed, and at which resolution."""

    tiles: int = 8
    mpp: float = 0.5
    tile_px: int = 224


class IngestReport(BaseModel):
    collection: str
    layout: str
    seen: int = 0
    added: int = 0
    already_present: int = 0
    duplicates: int = Field(0, description="files whose content (image + caption) came twice")
    failed: list[tuple[str, str]] = Field(default_factory=list, description="(where, why)")
    seconds: float = 0.0
    image_embedder: str | None = None
    text_embedder: str | None = None

    @property
    def rate(self) -> float:
        return self.added / self.seconds if self.seconds else 0.0


# -- layouts ------------------------------------------------------------------------------------
def detect_layout(path: Path) -> str:
    if path.is_file():
        if path.suffix == ".json":
            return _json_layout(path)
        if path.suffix == ".csv" and _roco_csv(path):
            return "roco"
        raise RetrievalError(
            f"{path}: cannot tell which layout this file is",
            "pass an image folder, a ROCO CSV, a VQA-RAD/SLAKE JSON or a saved HF dataset, "
            "or name it with --layout",
        )
    if not path.is_dir():
        raise RetrievalError(f"{path}: no such file or directory")
    if (path / "dataset_dict.json").is_file() or (path / "state.json").is_file():
        return "hf"
    if any(_roco_csv(p) for p in path.glob("*.csv")):
        return "roco"
    for p in sorted(path.glob("*.json")):
        try:
            return _json_layout(p)
        except RetrievalError:
            continue
    return "folder"


def _json_layout(path: Path) -> str:
    rows = _read_json(path)
    first = rows[0] if rows else {}
    if "img_name" in first:
        return "slake"
    if "image_name" in first:
        return "vqa-rad"
    raise RetrievalError(f"{path}: not a VQA-RAD or SLAKE JSON (no image_name/img_name)")


def _roco_csv(path: Path) -> bool:
    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        header = next(csv.reader(f), [])
    cols = {c.strip().lower() for c in header}
    return {"name", "caption"} <= cols and not cols & {"image", "file_name", "filename"}


def _read_json(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise RetrievalError(f"{path}: not readable JSON: {e}") from e
    if isinstance(data, dict):
        data = next((v for v in data.values() if isinstance(v, list)), [])
    return [r for r in data if isinstance(r, dict)]


def _meta(row: dict[str, Any]) -> dict[str, str]:
    return {k: str(row[k]) for k in FILTER_FIELDS if row.get(k) not in (None, "")}


def _first_key(row: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    return next((k for k in keys if row.get(k) not in (None, "")), None)


def read_sidecar(path: Path) -> list[dict[str, Any]]:
    """Rows of a JSONL or CSV sidecar; a bad line is reported with its number."""
    if path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            return [{k.strip(): v for k, v in row.items() if k} for row in csv.DictReader(f)]
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise RetrievalError(
                f"{path}:{n}: not valid JSON: {e}", "fix or remove the line"
            ) from e
    return rows


def _slide_tiles(path: Path, row: dict[str, Any] | None, tiling: SlideTiling) -> Iterator[Item]:
    """A slide's indexed rows: a bounded number of tissue tiles spread over it (never its label
    or macro image, nor anything from its metadata), each recording where it is."""
    from tools.slides import open_slide
    from tools.slides.tiles import sample_tiles

    row = row or {}
    cap = _first_key(row, _CAPTION_KEYS)
    with open_slide(path) as slide:
        picks = sample_tiles(slide, tiling.tiles, mpp=tiling.mpp, tile_px=tiling.tile_px)
    for t in picks:
        tile = {"slide": str(path), "x": t.x, "y": t.y, "w": t.w, "h": t.h, "mpp": t.mpp}
        tile |= {"px_w": t.px_w, "px_h": t.px_h}
        yield Item(
            where=f"{path} tile x={t.x}, y={t.y}",
            caption=str(row[cap]) if cap else "",
            meta={"modality": "histology", **_meta(row)},
            extra={k: v for k, v in tile.items() if k not in ("px_w", "px_h")},
            tile=tile,
        )


def _folder(root: Path, tiling: SlideTiling | None = None) -> Iterator[Item]:
    from tools.images import iter_images
    from tools.slides import group_slide_files, is_slide

    sidecars = sorted(root.glob("*.jsonl")) + sorted(root.glob("*.csv"))
    by_file: dict[Path, dict[str, Any]] = {}
    for side in sidecars:
        for row in read_sidecar(side):
            key = _first_key(row, _IMAGE_KEYS)
            if key:
                by_file[(root / str(row[key])).resolve()] = row
    seen: set[Path] = set()
    for p, row in by_file.items():
        seen.add(p)
        if p.exists() and is_slide(p):
            continue  # its tiles are indexed below, with this row's caption
        cap = _first_key(row, _CAPTION_KEYS)
        extra = {
            k: v
            for k, v in row.items()
            if k not in (*FILTER_FIELDS, *_IMAGE_KEYS, *_CAPTION_KEYS) and v not in (None, "")
        }
        yield Item(
            where=str(p),
            path=p,
            caption=str(row[cap]) if cap else "",
            meta=_meta(row),
            extra=extra,
        )
    for p in group_slide_files(iter_images(root)):
        if is_slide(p):
            try:
                row = by_file.get(p.resolve())
                yield from _slide_tiles(p.resolve(), row, tiling or SlideTiling())
            except LiteVLMError as e:  # listed as failed, the run goes on
                yield Item(where=str(p), caption="", extra={"error": str(e)})
        elif p.resolve() not in seen:
            yield Item(where=str(p), path=p.resolve())


def _roco(path: Path) -> Iterator[Item]:
    csvs = [path] if path.is_file() else [p for p in sorted(path.glob("*.csv")) if _roco_csv(p)]
    for c in csvs:
        images = c.parent / "images"
        for row in read_sidecar(c):
            row = {k.lower(): v for k, v in row.items()}
            p = images / row["name"] if images.is_dir() else c.parent / row["name"]
            yield Item(
                where=str(p),
                path=p,
                caption=(row.get("caption") or "").strip(),
                meta={"source": "ROCO", **_meta(row)},
                extra={"roco_id": row.get("id", "")},
            )


def _vqa(path: Path, layout: str) -> Iterator[Item]:
    files = [path] if path.is_file() else sorted(path.glob("*.json"))
    if layout == "slake":
        files = [f for f in files if f.name != "KG.json"] if path.is_dir() else files
    groups: dict[Path, dict[str, Any]] = {}
    for f in files:
        try:
            if _json_layout(f) != layout:
                continue
        except RetrievalError:
            continue
        for row in _read_json(f):
            if layout == "slake":
                if row.get("q_lang", "en") != "en":
                    continue
                img = f.parent / "imgs" / row["img_name"]
                meta = {
                    "source": "SLAKE",
                    "organ": str(row.get("location") or ""),
                    "modality": _SLAKE_MODALITY.get(str(row.get("modality")), "unknown"),
                }
            else:
                folder = f.parent / "VQA_RAD Image Folder"
                img = (folder if folder.is_dir() else f.parent) / row["image_name"]
                meta = {"source": "VQA-RAD", "organ": str(row.get("image_organ") or "").lower()}
            g = groups.setdefault(img, {"meta": meta, "qa": []})
            g["qa"].append(f"Q: {row.get('question', '').strip()} A: {row.get('answer', '')}")
    for img, g in groups.items():
        caption = " ".join(dict.fromkeys(g["qa"]))[:_MAX_CAPTION]
        yield Item(
            where=str(img),
            path=img,
            caption=caption,
            meta={k: v for k, v in g["meta"].items() if v},
        )


def _hf(path: Path) -> tuple[int, Iterator[Item]]:
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(path))
    except Exception as e:
        raise RetrievalError(f"{path}: not a saved Hugging Face dataset: {e}") from e
    splits = dict(ds) if isinstance(ds, DatasetDict) else {"": ds}
    total = sum(len(d) for d in splits.values())

    def rows() -> Iterator[Item]:
        for split, d in splits.items():
            image_col = _hf_image_column(d)
            if image_col is None:
                raise RetrievalError(f"{path}: no image column in split {split or 'default'}")
            for i, row in enumerate(d):
                cap = _first_key(row, _CAPTION_KEYS)
                caption = str(row[cap]) if cap else ""
                if not caption and row.get("question"):
                    caption = f"Q: {row['question']} A: {row.get('answer', '')}"
                yield Item(
                    where=f"{path}::{split}[{i}]" if split else f"{path}[{i}]",
                    pil=row[image_col],
                    caption=caption,
                    meta=_meta(row),
                )

    return total, rows()


def _hf_image_column(d: Any) -> str | None:
    from datasets import Image

    for name, feature in d.features.items():
        if isinstance(feature, Image):
            return name
    return "image" if "image" in d.column_names else None


def read_items(
    path: str | Path, layout: str = "auto", tiling: SlideTiling | None = None
) -> tuple[str, int | None, Iterator[Item]]:
    """(layout, number of items when known, items) for ``path``."""
    path = Path(path).expanduser()
    if layout not in LAYOUTS:
        raise RetrievalError(f"unknown layout {layout!r}", f"one of: {', '.join(LAYOUTS)}")
    if not path.exists():
        raise RetrievalError(f"{path}: no such file or directory")
    if layout == "auto":
        layout = detect_layout(path)
    if layout == "hf":
        total, items = _hf(path)
        return layout, total, items
    if layout == "folder":
        listed = list(_folder(path, tiling))
    elif layout == "roco":
        listed = list(_roco(path))
    else:
        listed = list(_vqa(path, layout))
    return layout, len(listed), iter(listed)


# -- ids, pixels --------------------------------------------------------------------------------
def _slide_digest(path: Path) -> str:
    """A slide's content id without reading gigabytes: the files' sizes, heads and tails."""
    h = hashlib.sha256()
    for f in sorted(q for q in path.iterdir() if q.is_file()) if path.is_dir() else [path]:
        size = f.stat().st_size
        with open(f, "rb") as fh:
            h.update(str(size).encode() + fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            h.update(fh.read())
    return h.hexdigest()


def _image_bytes(item: Item) -> bytes:
    if item.extra.get("error"):
        raise ValueError(item.extra["error"])
    if item.tile is not None:  # a tile is its slide and its box at its resolution
        t = item.tile
        box = f"{t['x']},{t['y']},{t['w']},{t['h']}@{t['mpp']}"
        return f"{_slide_digest(Path(t['slide']))}|{box}".encode()
    if item.path is not None:
        return item.path.read_bytes()
    pil = item.pil
    if isinstance(pil, dict) and pil.get("bytes"):
        return pil["bytes"]
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def image_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def case_id(image_sha256: str, caption: str) -> str:
    """Content hash of the image bytes and the caption: same case, same id, on any machine."""
    return hashlib.sha256(f"{image_sha256}\0{caption}".encode()).hexdigest()[:32]


def _load(item: Item) -> Any:
    if item.tile is not None:
        from litevlm.types import LoadedImage
        from tools.slides import open_slide
        from tools.slides.tiles import TileChoice, read_tile_image

        t = item.tile
        with open_slide(t["slide"]) as slide:
            box = {k: t[k] for k in TileChoice.model_fields if k in t}
            pil = read_tile_image(slide, TileChoice(**box, why="sample"))
        mm = t["mpp"] / 1000 if t.get("mpp") else None
        return LoadedImage(image=pil, modality="histology", pixel_size_mm=(mm, mm) if mm else None)
    if item.path is not None:
        from tools.images import load_image

        return load_image(item.path)
    from PIL import Image

    from litevlm.types import LoadedImage

    pil = item.pil
    if isinstance(pil, dict):
        pil = Image.open(io.BytesIO(pil["bytes"]))
    return LoadedImage(image=pil.convert("RGB"))


# -- the run ------------------------------------------------------------------------------------
def ingest(
    path: str | Path,
    collection: Collection,
    *,
    image_embedder: Any = None,
    text_embedder: Any = None,
    layout: str = "auto",
    batch_size: int = 32,
    tenant: str | None = None,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
    tiling: SlideTiling | None = None,
) -> IngestReport:
    """Embed and upsert every readable case under ``path``; unreadable ones are listed. A
    whole-slide image is indexed as ``tiling.tiles`` tissue tiles, each a row of its own."""
    start = time.perf_counter()
    layout, total, items = read_items(path, layout, tiling)
    report = IngestReport(
        collection=collection.name,
        layout=layout,
        image_embedder=getattr(image_embedder, "model_id", None),
        text_embedder=getattr(text_embedder, "model_id", None),
    )
    for name, emb in (("image", image_embedder), ("text", text_embedder)):
        if emb is not None:
            collection.spec.check(name, emb.model_id, emb.dim, collection.name)

    bar, task = _progress(progress, total, f"indexing {Path(path).name}")
    try:
        batch: list[Item] = []
        for item in items:
            batch.append(item)
            if len(batch) == batch_size:
                _batch(batch, collection, image_embedder, text_embedder, tenant, report)
                _advance(bar, task, len(batch), on_batch)
                batch = []
        if batch:
            _batch(batch, collection, image_embedder, text_embedder, tenant, report)
            _advance(bar, task, len(batch), on_batch)
    finally:
        if bar is not None:
            bar.stop()
    collection.finish()
    report.seconds = time.perf_counter() - start
    return report


def _batch(
    items: list[Item],
    collection: Collection,
    image_embedder: Any,
    text_embedder: Any,
    tenant: str | None,
    report: IngestReport,
) -> None:
    report.seen += len(items)
    keyed: list[tuple[Item, str, str]] = []
    for item in items:
        try:
            digest = image_digest(_image_bytes(item))
        except (OSError, ValueError, AttributeError) as e:
            report.failed.append((item.where, f"cannot read: {e}"))
            continue
        cid = case_id(digest, item.caption)
        if any(k[2] == cid for k in keyed):  # one upsert must not carry an id twice
            report.duplicates += 1
            continue
        keyed.append((item, digest, cid))
    present = collection.existing_ids([k[2] for k in keyed], tenant=tenant)
    report.already_present += len(present)

    records, images, captions = [], [], []
    for item, digest, cid in keyed:
        if cid in present:
            continue
        try:
            loaded = _load(item)
        except (ImageLoadError, LiteVLMError, OSError, ValueError) as e:
            report.failed.append((item.where, str(e)))
            continue
        meta = dict(item.meta)
        meta.setdefault("modality", loaded.modality or "unknown")
        uri = item.tile["slide"] if item.tile else str(item.path) if item.path else item.where
        records.append(
            CaseRecord(
                id=cid,
                caption=item.caption,
                uri=uri,
                extra={**item.extra, "image_sha256": digest},
                **meta,
            )
        )
        images.append(loaded)
        captions.append(item.caption)
    if not records:
        return
    vectors: dict[str, np.ndarray] = {}
    if image_embedder is not None:
        vectors["image"] = image_embedder.embed_images(images)
    if text_embedder is not None:
        has = [i for i, c in enumerate(captions) if c.strip()]
        x = np.full((len(records), text_embedder.dim), np.nan, np.float32)
        if has:
            x[has] = text_embedder.embed_texts([captions[i] for i in has])
        vectors["text"] = x
    collection.upsert(records, vectors, tenant=tenant)
    report.added += len(records)


def _progress(enabled: bool, total: int | None, label: str) -> tuple[Any, Any]:
    if not enabled:
        return None, None
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        transient=False,
    )
    bar.start()
    task = bar.add_task(label, total=total, rate="")
    return bar, task


def _advance(bar: Any, task: Any, n: int, on_batch: Callable[[int], None] | None) -> None:
    if bar is not None:
        bar.advance(task, n)
        speed = bar.tasks[0].speed
        bar.update(task, rate=f"{speed:.1f} img/s" if speed else "")
    if on_batch is not None:
        on_batch(n)


def migrate(source: Collection, target_store: Any, name: str | None = None, tenant=None) -> int:
    """Copy a collection, vectors included (no re-embedding), into another store."""
    dest = target_store.create_collection(name or source.name, source.spec)
    moved = 0
    for records, vectors in source.iter_batches(tenant=tenant):
        dest.upsert(records, vectors, tenant=tenant)
        moved += len(records)
    dest.finish()
    return moved
