"""``litevlm literature``: search PubMed, arXiv, the web and Wikipedia from the command line."""

from __future__ import annotations

from pathlib import Path

import typer

from litevlm.commands.common import ConfigOption, print_json, settings


def _parse_sources(value: str | None) -> list[str] | None:
    if value is None:
        return None
    names = [s.strip().lower() for s in value.split(",") if s.strip()]
    known = ("pubmed", "arxiv", "web", "wikipedia")
    bad = [n for n in names if n not in known]
    if bad or not names:
        raise typer.BadParameter(
            f"unknown source {', '.join(bad) or '(none)'}; choose from {', '.join(known)}",
            param_hint="--source",
        )
    return names


def literature(
    query: str = typer.Argument(..., help="what to look for, e.g. 'nuclei segmentation H&E'"),
    source: str | None = typer.Option(
        None, "--source", "-s", help="comma-separated: pubmed,arxiv,web,wikipedia (default: config)"
    ),
    max_results: int | None = typer.Option(
        None, "--max", "-n", min=1, max=100, help="results per source (default: config, 5)"
    ),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON"),
    no_cache: bool = typer.Option(False, "--no-cache", help="ask the services, skip the cache"),
    config: Path | None = ConfigOption,
) -> None:
    """Search the literature; print numbered sources with links.

    A source that cannot answer (down, rate limited, no key) is reported and the others are still
    shown. Answers are cached on disk for literature.cache_ttl_s seconds; --no-cache skips that.
    """
    from litevlm.errors import ServiceUnavailable
    from tools.literature import search_literature

    names = _parse_sources(source)
    cfg = settings(config)
    if "pubmed" in (names or cfg.literature.sources) and not cfg.literature.email:
        typer.secho(
            "hint: set [literature] email (or LITEVLM_LITERATURE__EMAIL); NCBI asks for a contact",
            err=True,
        )
    result = search_literature(
        query,
        sources=names,
        max_results=max_results,
        settings=cfg.literature,
        use_cache=not no_cache,
        cache_dir=cfg.data_dir / "cache",
    )
    if as_json:
        print_json(result)
    else:
        for i, s in enumerate(result.sources, 1):
            head = f"[{i}] {s.title or s.id}"
            meta = []
            if s.authors:
                meta.append(s.authors[0] + (" et al." if len(s.authors) > 1 else ""))
            meta += [str(x) for x in (s.venue, s.year) if x]
            typer.echo(head)
            typer.echo(f"    {s.kind}: {s.id}" + (f" · {' · '.join(meta)}" if meta else ""))
            if s.url:
                typer.echo(f"    {s.url}")
            if s.snippet:
                snippet = s.snippet if len(s.snippet) <= 240 else s.snippet[:239] + "…"
                typer.echo(f"    {snippet}")
        if not result.sources:
            typer.echo("no sources found")
        cached = f", cached: {','.join(result.cached)}" if result.cached else ""
        typer.echo(f"({result.timings.get('total', 0.0):.2f} s{cached})", err=True)
    for name, reason in result.unavailable.items():
        typer.secho(f"{name}: {reason}", fg=typer.colors.YELLOW, err=True)
    if result.redacted:
        typer.secho(f"removed {result.redacted} identifier term(s) from the query", err=True)
    if (
        not result.sources
        and result.unavailable
        and len(result.unavailable) == len(names or cfg.literature.sources)
    ):
        raise ServiceUnavailable(
            "no literature source answered", "check the network, keys and [literature] settings"
        )


def register(app: typer.Typer) -> None:
    app.command("literature")(literature)
