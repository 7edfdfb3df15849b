"""Whole-slide images in ``litevlm inspect`` and ``litevlm measure``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from litevlm.commands.common import print_json


def print_slide_info(path: Path, info: dict[str, Any]) -> None:
    w, h = info["width"], info["height"]
    size = f" = {info['width_mm']} x {info['height_mm']} mm" if info.get("width_mm") else ""
    typer.echo(f"{path}: whole-slide image ({info['format']}), {w} x {h} px{size}")
    mpp = f"{info['mpp']:.4g} um/px" if info.get("mpp") else "pixel size unknown"
    obj = f", {info['objective_power']:g}x objective" if info.get("objective_power") else ""
    typer.echo(f"  level 0: {mpp}{obj}")
    for lv in info["levels"][1:]:
        size = f"{lv['width']} x {lv['height']}"
        typer.echo(f"  level {lv['level']}: {size} (downsample {lv['downsample']:g})")
    typer.echo("  (label and macro images are never read: they can show identifiers)")


def measure_slide_cmd(
    image: Path,
    *,
    region: str | None,
    mpp: float | None,
    heatmap: Path | None,
    tile_px: int,
    max_tiles: int | None,
    kind: str,
    settings: Any,
    as_json: bool,
) -> None:
    from rich.progress import Progress

    from litevlm.types import DISCLAIMER
    from tools.slides import open_slide, parse_region
    from tools.slides.measure import measure_slide

    try:
        reg = parse_region(region) if region else None
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--region") from e
    with open_slide(image) as slide, Progress(transient=True, disable=as_json) as bar:
        task = bar.add_task("measuring tiles", total=None)
        result = measure_slide(
            slide, region=reg, mpp=mpp, tile_px=tile_px, kind=kind, max_tiles=max_tiles,
            heatmap_path=heatmap, settings=settings,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
    if as_json:
        print_json(result)
        return
    where = f"region {result.region}" if result.region else "all tissue"
    typer.echo(
        f"{image.name}: {where}, {result.tiles_measured} tiles at {result.mpp or '?'} um/px "
        f"({result.tiles_skipped} without tissue skipped)"
    )
    typer.echo(f"  objects ({result.kind}): {result.count}")
    if result.tissue_mm2:
        typer.echo(f"  tissue measured: {result.tissue_mm2:.4g} mm^2")
        typer.echo(f"  density: {result.density_per_mm2:.4g} per mm^2 of tissue")
    if result.area_um2:
        a = result.area_um2
        typer.echo(
            f"  object area: median {a['median']:.3g} um^2 (p5-p95 {a['p5']:.3g}-{a['p95']:.3g})"
        )
    for t in result.top_tiles(3):
        if t.density_per_mm2:
            typer.echo(
                f"  dense tile: x={t.x}, y={t.y}, {t.w}x{t.h} px: {t.count} objects, "
                f"{t.density_per_mm2:.4g}/mm^2"
            )
    for w in result.warnings:
        typer.echo(f"warning: {w}")
    if result.heatmap_path:
        typer.echo(f"heat-map: {result.heatmap_path}")
    typer.echo(DISCLAIMER)
