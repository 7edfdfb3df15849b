"""Write the small real-image dataset the tiny CPU example trains on (scikit-image samples).

.venv/bin/python examples/finetune/make_sample_data.py      # -> examples/finetune/data/
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from finetune.samples import write_sample_dataset  # noqa: E402
from tools.tiny_models import build_tiny_paligemma  # noqa: E402

if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    print(write_sample_dataset(here / "data") / "train.jsonl")
    # A tiny random PaliGemma stands in for the real one on machines without the weights.
    print(build_tiny_paligemma(here / "tiny-paligemma"))
