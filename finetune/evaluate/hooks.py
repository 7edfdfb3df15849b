"""Evaluation inside training: ``compute_metrics`` for ``transformers.Trainer`` and the
generation step ``finetune.trainer`` calls, scored as ``litevlm eval`` scores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from finetune.metrics import summarize


def preprocess_logits_for_metrics(logits: Any, labels: Any) -> Any:
    """Keep only the argmax ids so the trainer does not hold vocabulary-sized logits."""
    if isinstance(logits, tuple):
        logits = logits[0]
    return logits.argmax(-1)


def _metric_values(s: Any) -> dict[str, float]:
    """The scores of a ``MetricSummary`` (not its counts), as the trainer logs them."""
    return {
        k: float(v)
        for k, v in s.model_dump(exclude={"extra"}).items()
        if v is not None and not k.startswith("n")
    }


def make_compute_metrics(tokenizer: Any) -> Callable[[Any], dict[str, float]]:
    """A ``compute_metrics`` for ``transformers.Trainer``: decode and score the answer span.

    Accepts argmax ids (with ``preprocess_logits_for_metrics``), raw logits, or generated ids.
    Ids shaped like the labels are teacher-forced next-token predictions: position t predicts
    label t+1, so they are shifted before the answer tokens (labels != -100) are decoded. The
    answer type comes from the reference (yes/no -> closed, long -> description).
    """
    tok = getattr(tokenizer, "tokenizer", tokenizer)

    def compute(eval_pred: Any) -> dict[str, float]:
        import numpy as np

        preds, labels = eval_pred.predictions, eval_pred.label_ids
        if isinstance(preds, tuple):
            preds = preds[0]
        preds, labels = np.asarray(preds), np.asarray(labels)
        if preds.ndim == 3:
            preds = preds.argmax(-1)
        shifted = preds.shape == labels.shape
        hyps, refs = [], []
        for p, lab in zip(preds, labels, strict=True):
            mask = lab != -100
            ref_ids = lab[mask]
            if shifted:
                hyp_ids = p[:-1][mask[1:]]
                ref_ids = lab[1:][mask[1:]]
            else:
                hyp_ids = p[p >= 0]
            hyps.append(tok.decode(hyp_ids.tolist(), skip_special_tokens=True).strip())
            refs.append(tok.decode(ref_ids.tolist(), skip_special_tokens=True).strip())
        return _metric_values(summarize(hyps, refs))

    return compute


def generation_metrics(max_examples: int = 32, max_new_tokens: int = 24) -> Callable[..., dict]:
    """The trainer's evaluation step (``finetune.trainer.MetricsFn``): greedy answers for the
    first ``max_examples`` validation examples, scored by ``summarize`` as ``litevlm eval`` does,
    so training curves and evaluation reports use the same numbers."""

    def compute(model: Any, processor: Any, examples: list[Any]) -> dict[str, float]:
        import torch

        from finetune.data import open_image
        from finetune.formatting import chat_messages

        tok = getattr(processor, "tokenizer", processor)
        paligemma = getattr(model.config, "model_type", "") == "paligemma"
        first = next(model.parameters())
        hyps, refs = [], []
        was_training = model.training
        model.eval()
        try:
            for ex in examples[:max_examples]:
                image = open_image(ex.image)
                if paligemma:
                    text = ex.prompt
                else:
                    text = processor.apply_chat_template(
                        chat_messages(ex, with_answer=False),
                        tokenize=False,
                        add_generation_prompt=True,
                    )
                inputs = processor(images=[image], text=[text], return_tensors="pt")
                inputs = {k: v.to(first.device) for k, v in inputs.items()}
                if "pixel_values" in inputs and first.dtype.is_floating_point:
                    inputs["pixel_values"] = inputs["pixel_values"].to(first.dtype)
                with torch.no_grad():
                    out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
                new = out[0, inputs["input_ids"].shape[1] :]
                hyps.append(tok.decode(new, skip_special_tokens=True).strip())
                refs.append(ex.answer)
        finally:
            model.train(was_training)
        return _metric_values(summarize(hyps, refs))

    return compute
