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


def print_json(obj: Any) -> None:
    """Print a pydantic model, or anything json can dump, as JSON on stdout."""
    if hasattr(obj, "model_dump_json"):
        typer.echo(obj.model_dump_json(indent=2))
    else:
        typer.echo(json.dumps(obj, indent=2, default=str))
