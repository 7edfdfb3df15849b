"""``litevlm measure``: count and measure objects, stains or intensities in an image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from litevlm.commands.common import ConfigOption, check_output_file, print_json, settings

KIND_HELP = (
    "auto, cells, nuclei, ihc, he, radiology, fundus or unknown (auto: from modality and colour)"
)


def register(app: typer.Typer) -> None:
    app.command("measure")(measure_cmd)


def measure_cmd(
    image: Path = typer.Argument(..., help="PNG, JPEG, TIFF, DICOM or NIfTI file"),
    kind: str = typer.Option("auto", "--kind", "-k", help=KIND_HELP),
    pixel_size: float | None = typer.Option(
        None, "--pixel-size", help="pixel size in micrometres (overrides metadata)"
    ),
    overlay: Path | None = typer.Option(
        None, "--overlay", "-o", help="save a PNG with contours and object numbers"
    ),
    frame: int | None = typer.Option(None, help="frame of a multi-frame DICOM / TIFF stack"),
    slice_index: int | None = typer.Option(None, "--slice", help="slice of a NIfTI volume"),
    objects: Path | None = typer.Option(
        None, "--objects", help="write the per-object table (.csv or .parquet; units in headers)"
    ),
    labels: Path | None = typer.Option(
        None, "--labels", help="write the label image (.tif; ids as in the table)"
    ),
    geojson: Path | None = typer.Option(
        None, "--geojson", help="write object outlines as QuPath-compatible GeoJSON"
    ),
    table: bool = typer.Option(False, "--table", help="also print the per-object table"),
    as_json: bool = typer.Option(False, "--json", help="print the Measurement as JSON"),
    config: Path | None = ConfigOption,
    region: str | None = typer.Option(
        None, "--region", help="slide region x,y,w,h (level-0 px) or x,y,w,h@LEVEL"
    ),
    mpp: float | None = typer.Option(None, "--mpp", help="measure a slide at this um/px"),
    heatmap: Path | None = typer.Option(None, "--heatmap", help="slide: density heat-map PNG"),
    tile_px: int = typer.Option(1024, "--tile", help="slide: tile size in pixels"),
    max_tiles: int | None = typer.Option(None, "--max-tiles", help="slide: at most N tiles"),
) -> None:
    """Measure an image: object counts and sizes, DAB/H&E stain fractions or CT/MR intensities.

    Sizes are in micrometres when the pixel size is known (metadata or --pixel-size), in pixels
    otherwise. Research use only.
    """
    from tools.images import load_image
    from tools.measure import measure

    cfg = settings(config).measure
    from tools.slides import is_slide

    if is_slide(image):  # whole-slide image: tile by tile, never loaded whole
        from litevlm.commands.slides import measure_slide_cmd

        heatmap = check_output_file(heatmap, "--heatmap")
        return measure_slide_cmd(
            image, region=region, mpp=mpp, heatmap=heatmap, tile_px=tile_px,
            max_tiles=max_tiles, kind=kind, settings=cfg, as_json=as_json,
        )  # fmt: skip
    overlay = check_output_file(overlay, "--overlay")
    loaded = load_image(image, frame=frame, slice_index=slice_index, max_pixels=cfg.max_pixels)
    result = measure(
        loaded, kind=kind, pixel_size_um=pixel_size, overlay_path=overlay, settings=cfg,
        objects_path=objects, labels_path=labels, geojson_path=geojson,
    )  # fmt: skip
    if as_json:
        print_json(result)
        return
    _print(result, image, table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _print(result, image: Path, show_objects: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    from litevlm.types import DISCLAIMER

    console = Console()
    title = f"{image.name}: {result.kind}"
    if result.count is not None:
        title += f", {result.count} objects"
    if not result.pixel_size_um:
        size = "pixel size unknown"
    elif result.units == "mm":
        size = f"{result.pixel_size_um / 1000:g} mm/px"
    else:
        size = f"{result.pixel_size_um:g} um/px"
    console.print(f"[bold]{title}[/bold]  (units: {result.units}, {size})")
    table = Table(show_header=True, header_style="bold")
    table.add_column("measure", no_wrap=True)
    for col in ("value", "median", "p5-p95", "unit"):
        table.add_column(col)
    for key, value in result.summary.items():
        if isinstance(value, dict) and "n" in value:
            if not value["n"]:
                table.add_row(key, "-", "", "", value.get("unit", ""))
                continue
            table.add_row(
                key,
                f"{_fmt(value['mean'])} ± {_fmt(value['std'])}",
                _fmt(value["median"]),
                f"{_fmt(value['p5'])} - {_fmt(value['p95'])}",
                value.get("unit", ""),
            )
        elif isinstance(value, dict):
            table.add_row(key, ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()), "", "", "")
        else:
            table.add_row(key, _fmt(value), "", "", "")
    console.print(table)
    if show_objects and result.objects:
        obj = Table(show_header=True, header_style="bold")
        cols = list(result.objects[0])
        for c in cols:
            obj.add_column(c)
        for row in result.objects:
            obj.add_row(*(_fmt(row.get(c, "")) for c in cols))
        console.print(obj)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")
    if result.overlay_path:
        console.print(f"overlay: {result.overlay_path}")
    for name, path in result.params.get("exports", {}).items():
        console.print(f"{name}: {path}")
    console.print(f"[dim]{DISCLAIMER}[/dim]")
