"""Similar cases that are tiles of a whole-slide image: where the tile is, in words."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def tile_where(meta: dict[str, Any]) -> str | None:
    """Where an indexed slide tile is: 'a tile of S.svs at x=.., y=.., WxH px at level 0
    (at M um/px)'; None for a case that is not a tile."""
    if not meta.get("slide") or meta.get("x") is None:
        return None
    name = Path(str(meta["slide"])).name
    mpp = f" (at {float(meta['mpp']):.3g} um/px)" if meta.get("mpp") else ""
    return (
        f"a tile of {name} at x={meta['x']}, y={meta['y']}, {meta['w']}x{meta['h']} px at "
        f"level 0{mpp}"
    )
