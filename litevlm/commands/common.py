"""Helpers shared by the command modules (cheap imports only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

ConfigOption = typer.Option(
    None, "--config", "-c", help="litevlm.toml to use (default: $LITEVLM_CONFIG, ./litevlm.toml)"
)


def settings(config: Path | None = None, **overrides: Any):
    """Load settings; invalid values raise ConfigError, which the CLI prints on one line."""
    from litevlm.config import load_settings

    return load_settings(config, **overrides)


def check_output_file(path: Path | None, option: str) -> Path | None:
    """Refuse, before any slow work, an output file path that cannot be written."""
    from litevlm.errors import ConfigError

    if path is None:
        return None
    p = Path(path).expanduser()
    if p.is_dir():
        raise ConfigError(
            f"{option} {p}: is a directory, not a file name", f"e.g. {option} {p / 'out.png'}"
        )
    parent = p.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"{option} {p}: {parent} is a file, not a folder")
    return p


def check_output_dir(path: Path, option: str) -> Path:
    from litevlm.errors import ConfigError

    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{option} {p}: is a file, not a folder", "name a new or existing folder")
    return p


def print_json(obj: Any) -> None:
    """Print a pydantic model, or anything json can dump, as JSON on stdout."""
    if hasattr(obj, "model_dump_json"):
        typer.echo(obj.model_dump_json(indent=2))
    else:
        typer.echo(json.dumps(obj, indent=2, default=str))
