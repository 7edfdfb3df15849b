"""Evaluate models, adapters and prompts side by side, or score answers already generated.

One module per job:

- ``data``: test sets (through ``finetune.data``'s ``Example``) and answer files;
- ``scoring``: ``strict`` / ``llava-med`` / ``medgemma`` scores (``llava_med``: LLaVA-Med's
  published scorer reproduced);
- ``vision``: every call into the vision model; ``timing``: answering with latency and memory;
- ``judge``: LLM-judged factuality; ``hooks``: the trainer's metrics;
- ``satisfaction``: the UI's thumbs up/down; ``render``: JSON / Markdown / HTML / plots;
- ``run``: ``evaluate(data, specs)``, the loop ``litevlm eval`` runs.

Importing this package loads no model library: ``litevlm score`` stays light.
"""

from finetune.evaluate.data import (
    AnswerRow,
    EvalDataError,
    answer_type,
    load_answers,
    load_test_set,
    make_example,
)
from finetune.evaluate.hooks import (
    generation_metrics,
    make_compute_metrics,
    preprocess_logits_for_metrics,
)
from finetune.evaluate.render import (
    markdown_table,
    satisfaction_table,
    to_html,
    to_markdown,
    write_report,
)
from finetune.evaluate.run import evaluate, pair_specs
from finetune.evaluate.satisfaction import feedback_satisfaction
from finetune.evaluate.schema import (
    EvalReport,
    ModelReport,
    ModelSpec,
    Prediction,
    Satisfaction,
    Timing,
    Verdict,
)
from finetune.evaluate.scoring import SCORINGS, score_answers, score_one, score_predictions
from finetune.evaluate.timing import generate_answers, percentile
from finetune.evaluate.vision import adapter_name, load_vision_model

__all__ = [
    "SCORINGS",
    "AnswerRow",
    "EvalDataError",
    "EvalReport",
    "ModelReport",
    "ModelSpec",
    "Prediction",
    "Satisfaction",
    "Timing",
    "Verdict",
    "adapter_name",
    "answer_type",
    "evaluate",
    "feedback_satisfaction",
    "generate_answers",
    "generation_metrics",
    "load_answers",
    "load_test_set",
    "load_vision_model",
    "make_compute_metrics",
    "make_example",
    "markdown_table",
    "pair_specs",
    "percentile",
    "preprocess_logits_for_metrics",
    "satisfaction_table",
    "score_answers",
    "score_one",
    "score_predictions",
    "to_html",
    "to_markdown",
    "write_report",
]
