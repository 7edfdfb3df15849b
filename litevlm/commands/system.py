"""``litevlm config`` and ``litevlm inspect``. ``doctor`` lives in vision.py."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from litevlm.commands.common import ConfigOption, print_json, settings


def register(app: typer.Typer) -> None:
    app.command("config")(config_cmd)
    app.command("inspect")(inspect_cmd)


def config_cmd(
    config: Path | None = ConfigOption,
    show: bool = typer.Option(False, "--show", help="print the documented reference file"),
) -> None:
    """Validate and print the effective configuration (or the documented reference)."""
    if show:
        from litevlm.config import reference_toml

        typer.echo(reference_toml(), nl=False)
        return
    # Keys and passwords are SecretStr (printed as **********); a database URL may carry one.
    text = settings(config).model_dump_json(indent=2)
    typer.echo(re.sub(r"(://[^:/@\s\"]+:)[^@\s\"]+@", r"\1**********@", text))


def inspect_cmd(
    image: Path = typer.Argument(..., help="PNG, JPEG, TIFF, DICOM or NIfTI file"),
    frame: int | None = typer.Option(None, help="frame of a multi-frame DICOM / TIFF stack"),
    slice_index: int | None = typer.Option(None, "--slice", help="slice of a NIfTI volume"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Load an image as every tool sees it and print its de-identified metadata."""
    from tools.images import load_image

    li = load_image(image, frame=frame, slice_index=slice_index)
    if as_json:
        print_json(li)
        return
    if "slide" in li.metadata:
        from litevlm.commands.slides import print_slide_info

        print_slide_info(image, li.metadata["slide"])
        return
    typer.echo(f"{image}: {li.image.width}x{li.image.height} {li.modality}")
    if li.pixel_size_mm:
        typer.echo(f"  pixel size: {li.pixel_size_mm[0]:.4g} x {li.pixel_size_mm[1]:.4g} mm")
    for key, value in li.metadata.items():
        typer.echo(f"  {key}: {value}")
    if li.identifiers:
        typer.echo(f"  ({len(li.identifiers)} identifying header fields withheld)")
