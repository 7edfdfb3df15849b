"""``litevlm config``: show the effective configuration. ``doctor`` lives in vision.py."""

from __future__ import annotations

from pathlib import Path

import typer

from litevlm.commands.common import ConfigOption, settings


def register(app: typer.Typer) -> None:
    app.command("config")(config_cmd)


def config_cmd(
    config: Path | None = ConfigOption,
    show: bool = typer.Option(False, "--show", help="print the documented reference file"),
) -> None:
    """Validate and print the effective configuration (or the documented reference)."""
    if show:
        typer.echo((Path(__file__).parent.parent / "litevlm.toml").read_text())
        return
    s = settings(config)
    typer.echo(s.model_dump_json(indent=2))
