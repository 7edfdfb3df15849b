"""The evaluation report: the side-by-side table, breakdowns, plots; JSON, Markdown and HTML.

Markdown and HTML come from one ``litevlm.render.Page`` (the renderer the agent's report uses).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from finetune.evaluate.schema import EvalReport, ModelReport, Satisfaction
from litevlm.render import Figure, Page, Paragraph, Section, Table, render_html, render_markdown
from litevlm.render import markdown_table as md_table

COLUMNS = [
    ("closed_accuracy", "closed acc."),
    ("open_recall", "open recall"),
    ("open_f1", "open F1"),
    ("open_exact_match", "open EM"),
    ("tokenized_f1", "tok. F1 (all)"),
    ("bleu4", "BLEU-4"),
    ("rouge_l", "ROUGE-L"),
    ("keyword_recall", "keyword rec."),
]
TIMING_HEAD = ["p50 s", "p95 s", "tok/s", "peak MB", "batch"]
SCORING_NOTES = {
    "strict": "Closed accuracy: first yes/no (or option) named after normalisation, hedges "
    '("left or right") wrong. Open: distinct-token recall, token F1 (SQuAD), exact match.',
    "llava-med": "Scored as LLaVA-Med v1.0's script (b9a98a7) scores, quirks included: closed = "
    'prediction holds "yes"/"no" and the reference as substrings; open recall counts '
    "repeated predicted words. Comparable with LLaVA-Med's published table.",
    "medgemma": "Scored as the MedGemma model card reports: tokenised F1 (SQuAD normalisation) "
    "over all questions (tok. F1 (all)) and exact-match accuracy on the closed subset.",
}
DISCLAIMER = "Research use only, not a medical device."


def _fmt(v: float | None, digits: int = 3) -> str:
    return "–" if v is None else f"{v:.{digits}f}"


def _metric(summary: object, key: str) -> float | None:
    v = getattr(summary, key, None)
    return summary.extra.get(key) if v is None and hasattr(summary, "extra") else v  # type: ignore[attr-defined]


def side_by_side(report: EvalReport) -> Table:
    """One row per model: metrics, then generation time."""
    head = ["model", "n", *(c[1] for c in COLUMNS), *TIMING_HEAD]
    rows = []
    for m in report.models:
        t = m.timing
        cells = [m.spec.name(), str(m.overall.n)]
        cells += [_fmt(_metric(m.overall, k)) for k, _ in COLUMNS]
        if t:
            mem = _fmt(t.peak_memory_mb, 0) + (" (GPU)" if t.memory_kind == "cuda" else "")
            cells += [_fmt(t.latency_p50_s), _fmt(t.latency_p95_s), _fmt(t.tokens_per_s, 1), mem]
            cells.append(str(t.batch_size))
        else:
            cells += ["–"] * len(TIMING_HEAD)
        rows.append(cells)
    return Table(head=head, rows=rows)


def breakdown(report: EvalReport, attr: str) -> Table:
    keys = sorted({k for m in report.models for k in getattr(m, attr)})
    rows = []
    for k in keys:
        for m in report.models:
            s = getattr(m, attr).get(k)
            if s is not None:
                rows.append(
                    [k, m.spec.name(), str(s.n), *(_fmt(_metric(s, c)) for c, _ in COLUMNS)]
                )
    return Table(head=["group", "model", "n", *(c[1] for c in COLUMNS)], rows=rows)


def satisfaction_table(rows: Sequence[Satisfaction]) -> Table:
    head = ["vision model", "adapter", "n", "👍", "👎", "satisfaction", "comments"]
    body = [
        [
            r.vision_model,
            r.adapter,
            str(r.n),
            str(r.up),
            str(r.down),
            _fmt(r.satisfaction, 2),
            str(r.comments),
        ]
        for r in rows
    ]
    return Table(head=head, rows=body)


def judge_table(report: EvalReport) -> Table | None:
    judged = [m for m in report.models if m.judge]
    if not judged:
        return None
    head = ["model", "judge", "n", "mean score", "correct", "sig. errors", "agrees w/ tokens"]
    rows = [
        [
            m.spec.name(),
            j.model,
            str(j.n),
            _fmt(j.mean_score),
            str(j.correct),
            str(j.errors),
            f"{_fmt(j.agreement, 2)} (n={j.n_compared})",
        ]
        for m in judged
        if (j := m.judge)
    ]
    return Table(head=head, rows=rows)


def _predictions(m: ModelReport, limit: int = 200) -> Table:
    head = ["id", "type", "question", "reference", "prediction", "correct", "F1", "judge"]
    rows = []
    for p in m.predictions[:limit]:
        ok = "–" if p.correct is None else ("yes" if p.correct else "no")
        judge = f"{p.judge.verdict}: {p.judge.reasons}" if p.judge else ""
        rows.append(
            [p.id, p.answer_type, p.question, p.answer, p.prediction, ok, _fmt(p.token_f1), judge]
        )
    return Table(head=head, rows=rows, caption=f"first {min(limit, len(m.predictions))} answers")


def markdown_table(report: EvalReport) -> str:
    """The side-by-side table as Markdown (what the terminal prints)."""
    return md_table(side_by_side(report))


def to_page(report: EvalReport, plots: dict[str, str] | None = None) -> Page:
    lines = []
    if report.data:
        lines.append(
            f"Data: {report.data} ({report.n_examples} examples), scoring "
            f"{report.scoring}, {report.created}."
        )
    sections = []
    if report.models:
        note = SCORING_NOTES.get(report.scoring, "")
        timing = (
            "Latency per example = batch time / batch size; peak memory is the GPU's "
            "allocation on CUDA, the process's peak RSS on CPU. Descriptions: corpus "
            "BLEU-4 (sacrebleu), ROUGE-L F (rouge-score), keyword recall."
        )
        sections.append(
            Section(
                title="Side by side",
                blocks=[side_by_side(report), Paragraph(text=f"{note} {timing}")],
            )
        )
        sections.append(
            Section(title="Per question type", blocks=[breakdown(report, "by_question_type")])
        )
        sections.append(Section(title="Per modality", blocks=[breakdown(report, "by_modality")]))
        if (jt := judge_table(report)) is not None:
            sections.append(
                Section(
                    title="LLM judge (factuality)",
                    blocks=[
                        jt,
                        Paragraph(
                            text="Rubric: docs/evaluation.md. Agreement: share of judged "
                            "closed/open rows where judge-correct (score >= 0.5) equals the "
                            "token metric's correct (closed) or F1 >= 0.5 (open)."
                        ),
                    ],
                )
            )
    if plots:
        sections.append(
            Section(
                title="Plots",
                blocks=[Figure(src=f, alt=name, caption=name) for name, f in plots.items()],
            )
        )
    if report.satisfaction:
        sections.append(
            Section(
                title="User satisfaction (UI feedback)",
                blocks=[satisfaction_table(report.satisfaction)],
            )
        )
    if report.models:
        sections.append(
            Section(
                title="Answers",
                blocks=[
                    Section(title=m.spec.name(), blocks=[_predictions(m)]) for m in report.models
                ],
            )
        )
    return Page(title="litevlm evaluation", disclaimer=DISCLAIMER, lines=lines, sections=sections)


def to_markdown(report: EvalReport, plots: dict[str, str] | None = None) -> str:
    return render_markdown(to_page(report, plots))


def to_html(report: EvalReport, plots: dict[str, str] | None = None) -> str:
    return render_html(to_page(report, plots))


def make_plots(report: EvalReport, out_dir: Path) -> dict[str, str]:
    """metrics.png (bars per metric and model) and latency.png (per-example latency boxes)."""
    if not report.models:
        return {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = [m.spec.name() for m in report.models]
    keys = [
        (k, label)
        for k, label in COLUMNS
        if any(_metric(m.overall, k) is not None for m in report.models)
    ]
    files = {}
    if keys:
        fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(keys) * max(1, len(names)) ** 0.5), 4))
        width = 0.8 / len(names)
        x = np.arange(len(keys))
        for j, m in enumerate(report.models):
            vals = [_metric(m.overall, k) or 0.0 for k, _ in keys]
            ax.bar(x + j * width - 0.4 + width / 2, vals, width, label=names[j])
        ax.set_xticks(x, [label for _, label in keys], rotation=20)
        ax.set_ylim(0, 1)
        ax.set_ylabel("score")
        ax.legend(fontsize="small")
        ax.set_title("Metrics per model")
        fig.tight_layout()
        fig.savefig(out_dir / "metrics.png", dpi=110)
        plt.close(fig)
        files["metrics per model"] = "metrics.png"
    lat = [[p.latency_s for p in m.predictions] for m in report.models]
    if any(lat):
        fig, ax = plt.subplots(figsize=(max(5, 1.5 * len(names)), 3.5))
        ax.boxplot(lat, showfliers=True)
        ax.set_xticks(range(1, len(names) + 1), names, rotation=15)
        ax.set_ylabel("seconds per example")
        ax.set_title("Generation latency")
        fig.tight_layout()
        fig.savefig(out_dir / "latency.png", dpi=110)
        plt.close(fig)
        files["latency distribution"] = "latency.png"
    return files


def write_report(report: EvalReport, out_dir: str | Path, plots: bool = True) -> dict[str, Path]:
    """report.json, report.md, report.html (+ metrics.png, latency.png) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figs = make_plots(report, out) if plots else {}
    paths = {
        "json": out / "report.json",
        "markdown": out / "report.md",
        "html": out / "report.html",
    }
    paths["json"].write_text(report.model_dump_json(indent=2), encoding="utf-8")
    page = to_page(report, figs)
    paths["markdown"].write_text(render_markdown(page), encoding="utf-8")
    paths["html"].write_text(render_html(page), encoding="utf-8")
    for f in figs.values():
        paths[f.removesuffix(".png")] = out / f
    return paths
