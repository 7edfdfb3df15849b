"""What a report run reads: the questions file and the images (files, folders)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from litevlm.errors import ConfigError


def load_questions(path: str | Path | None) -> tuple[list[str], dict[str, list[str]]]:
    """(default questions, per-image questions) from a YAML file; a plain list is defaults."""
    if path is None:
        return [], {}
    import yaml

    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as e:
        raise ConfigError(f"{p}: questions file not found", "check the --questions path") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}", "fix the syntax") from e
    if isinstance(data, list):
        data = {"default": data}
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: expected a mapping with 'default' and 'images'")
    default = data.get("default") or []
    per_image = data.get("images") or {}
    if not isinstance(default, list) or not all(isinstance(q, str) for q in default):
        raise ConfigError(f"{p}: 'default' must be a list of questions")
    if not isinstance(per_image, dict) or not all(
        isinstance(v, list) and all(isinstance(q, str) for q in v) for v in per_image.values()
    ):
        raise ConfigError(f"{p}: 'images' must map file names to lists of questions")
    return list(default), {str(k): list(v) for k, v in per_image.items()}


def collect_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, and the supported images inside folders (sorted)."""
    from tools.images import is_supported, iter_images
    from tools.slides import group_slide_files

    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():  # a DICOM WSI's instances are one slide: its folder
            out += group_slide_files([f for f in iter_images(p) if is_supported(f)])
        else:
            out.append(p)  # a missing or unsupported file is reported as bad, not skipped
    return out
