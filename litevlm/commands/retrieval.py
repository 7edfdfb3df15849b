"""``litevlm index`` and ``litevlm similar``: build a similar-case collection and query it."""

from __future__ import annotations

from pathlib import Path

import typer

from litevlm.commands.common import ConfigOption, print_json, settings


def _overrides(
    collection: str | None, embedder: str | None, backend: str | None, tenant: str | None
) -> dict:
    r: dict = {}
    if collection:
        r["collection"] = collection
    if embedder:
        r["embedder"] = embedder
    if backend:
        r["backend"] = backend
    if tenant:
        r["tenant"] = tenant
    return {"retrieval": r} if r else {}


def _parse_filters(items: list[str] | None) -> dict[str, str]:
    from litevlm.errors import ConfigError

    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--filter {item!r} is not key=value", "e.g. --filter modality=CT")
        out[key.strip()] = value.strip()
    return out


def index(
    path: Path | None = typer.Argument(
        None, help="image folder (+ JSONL/CSV sidecar), ROCO CSV, VQA-RAD/SLAKE JSON or HF dataset"
    ),
    collection: str | None = typer.Option(
        None, "--collection", help="collection name (default: retrieval.collection, cases)"
    ),
    layout: str = typer.Option("auto", help="auto, folder, roco, vqa-rad, slake or hf"),
    embedder: str | None = typer.Option(
        None, "--embedder", help="image model: hf-hub:..., CLIP/SigLIP id or dir, classical:..."
    ),
    backend: str | None = typer.Option(None, help="lancedb or weaviate"),
    tenant: str | None = typer.Option(None, help="tenant (Weaviate multi-tenancy)"),
    no_text: bool = typer.Option(False, "--no-text", help="skip caption embeddings"),
    migrate_to: str | None = typer.Option(
        None, "--migrate-to", help="copy the LanceDB collection, vectors included, to: weaviate"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
    config: Path | None = ConfigOption,
) -> None:
    """Index annotated images for similar-case search (re-running adds nothing twice)."""
    from tools.retrieval import Retriever, open_store
    from tools.retrieval.ingest import migrate

    s = settings(config, **_overrides(collection, embedder, backend, tenant))
    if migrate_to:
        if migrate_to != "weaviate":
            raise typer.BadParameter("--migrate-to accepts: weaviate")
        source = open_store(s, "lancedb").open_collection(s.retrieval.collection)
        target = open_store(s, "weaviate")
        try:
            moved = migrate(source, target, tenant=s.retrieval.tenant)
        finally:
            target.close()
        typer.echo(f"moved {moved} records of {source.name!r} to Weaviate")
        return
    if path is None:
        raise typer.BadParameter("give a PATH to index (or --migrate-to weaviate)")
    if not path.exists():  # before the embedders load (15-27 s)
        from tools.retrieval.store import RetrievalError

        raise RetrievalError(f"{path}: no such file or directory", "check the path to index")
    retriever = Retriever(s)
    try:
        report = retriever.index(path, layout=layout, text=not no_text, progress=not as_json)
    finally:
        retriever.close()
    if as_json:
        print_json(report)
        return
    typer.echo(
        f"{report.collection}: {report.added} added, {report.already_present} already present, "
        f"{len(report.failed)} skipped ({report.layout} layout, {report.rate:.1f} cases/s)"
    )
    typer.echo(f"image embedder: {report.image_embedder}; text embedder: {report.text_embedder}")
    for where, why in report.failed:
        typer.secho(f"  skipped {where}: {why}", fg=typer.colors.YELLOW, err=True)


def similar(
    image: Path | None = typer.Argument(None, help="query image (any format litevlm loads)"),
    text: str | None = typer.Option(None, "--text", help="text query (captions)"),
    k: int = typer.Option(5, "--k", min=1, max=1000),
    filter_: list[str] | None = typer.Option(
        None, "--filter", help="key=value on modality, stain, organ, source, license"
    ),
    collection: str | None = typer.Option(None, "--collection"),
    embedder: str | None = typer.Option(None, "--embedder"),
    backend: str | None = typer.Option(None, help="lancedb or weaviate"),
    tenant: str | None = typer.Option(None),
    as_json: bool = typer.Option(False, "--json"),
    config: Path | None = ConfigOption,
) -> None:
    """Find indexed cases similar to an image and/or a text."""
    from tools.images import load_image
    from tools.retrieval import Retriever
    from tools.retrieval.tiles import tile_where

    if image is None and not text:
        raise typer.BadParameter("give an IMAGE, --text, or both")
    s = settings(config, **_overrides(collection, embedder, backend, tenant))
    loaded = load_image(image) if image is not None else None
    retriever = Retriever(s)
    try:
        cases = retriever.similar(image=loaded, text=text, k=k, filters=_parse_filters(filter_))
    finally:
        retriever.close()
    if as_json:
        print_json([c.model_dump(mode="json") for c in cases])
        return
    if not cases:
        typer.echo("no matches")
    for i, c in enumerate(cases, 1):
        meta = ", ".join(f"{k}={v}" for k, v in c.metadata.items() if k in _SHOWN)
        where = tile_where(c.metadata)
        typer.echo(f"{i}. {c.score:.3f}  {c.image_uri}" + (f"\n   {where}" if where else ""))
        typer.echo(f"   {c.caption[:200]}\n   {meta}")
    if cases:
        typer.echo(f"scores from: {cases[0].embedder} ({cases[0].match})")


_SHOWN = ("modality", "stain", "organ", "source")


def register(app: typer.Typer) -> None:
    app.command("index")(index)
    app.command("similar")(similar)
