"""The model card (``README.md``) written next to a fine-tuned model.

sentence-transformers writes its own card when the model is saved (architecture, training arguments, loss
logs). :func:`write_model_card` puts a section with this project's before/after evaluation at the top of it,
after the card's YAML metadata block, so that Hub tooling still reads the metadata.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hybrid_search.training.data import describe_dropped

MARKER_START = "<!-- hybrid-search:finetune:start -->"
MARKER_END = "<!-- hybrid-search:finetune:end -->"


def _fmt(value: float | None, scale: float = 100.0, digits: int = 2) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def result_rows(report: dict[str, Any]) -> list[tuple[str, dict[str, float], float, float]]:
    """``(before|after, metrics, query active dims, document active dims)`` for each result the report has: the
    rows of the model card's table and of ``finetune``'s terminal summary."""
    rows = []
    for name in ("before", "after"):
        res = report.get(name)
        if res:
            rows.append((name, res["metrics"], res["query_active_dims"], res["document_active_dims"]))
    return rows


def _data_lines(report: dict[str, Any]) -> list[str]:
    """Where the training examples came from, what was left out, and how hard negatives were mined."""
    cfg, data = report["config"], report["data"]
    lines = [
        "## Training data",
        "",
        f"- Source: `{data['source']}` ({data['kind']}), {data['examples']} training examples"
        + (f", {data['validation']} held out for validation" if data.get("validation") else "")
        + ".",
    ]
    dropped = describe_dropped(data.get("dropped", {}))
    if dropped:
        lines.append(f"- Left out: {dropped}.")
    if data.get("pseudo_queries"):
        m = cfg["mining"]
        lines.append(
            f"- Beside the labelled pairs, {data['pseudo_queries']} pseudo-query pairs mined from their documents "
            f"(`--pseudo-query-ratio {cfg['pseudo_query_ratio']}`; inverse cloze task, a sentence cropped to "
            f"{m['max_query_words']} words as the query, the rest of its passage the positive)."
        )
    if data["kind"] == "self-supervised":
        m = cfg["mining"]
        lines.append(
            f"- Pairs mined by the inverse cloze task: a sentence (cropped to {m['max_query_words']} words) is the "
            f"query, the rest of its passage the positive (the sentence kept in it with probability "
            f"{m['keep_sentence_prob']}); {m['pairs_per_doc']} pair(s) per passage, seed {m['seed']}. No labelled query."
        )
    mined = report.get("hard_negatives")
    if mined:
        lines.append(
            f"- {mined['num_negatives']} hard negative(s) per pair from the hybrid ranking "
            f"({' + '.join(mined['channels'])}: {mined['sparse_model']}"
            + (f", {mined['dense_model']}" if mined.get("dense_model") else "")
            + f"; ranks {mined['range_min']}-{mined['range_max']}, positives excluded, candidates within "
            f"{mined['relative_margin']:.0%} of the positive's score skipped): {mined['negatives']} mined for "
            f"{mined['queries']} queries, {mined['false_negative_guard']} candidates skipped as likely positives, "
            f"{mined['rows_dropped']} rows left without enough negatives."
        )
    teacher = report.get("teacher")
    if teacher:
        fit = teacher["fit"]
        correlation = "–" if fit.get("correlation") is None else f"{fit['correlation']:.2f}"
        lines.append(
            f"- Distilled (`--teacher {teacher['kind']}`, {teacher['loss']}) from the ensemble of the teacher channels "
            f"({' + '.join(teacher['channels'])}): {teacher['normalisation']}; one margin (positive − negative) per "
            f"negative, scaled into the student's units by {fit['scale']:.3f}, the RMS of the base student's margins "
            f"({fit['student_margin_rms']:.3f}) over the teacher's ({fit['teacher_margin_rms']:.3f}) on "
            f"{fit['margins']} training margins (correlation {correlation}; ranked the wrong way: teacher "
            f"{fit['teacher_wrong_share']:.1%}, base student {fit['student_wrong_share']:.1%})."
        )
    if report.get("eval_guard"):
        lines.append(
            f"- Training queries equal to or containing any of the {report['eval_guard']} evaluation queries were "
            "dropped before training."
        )
    return lines


def _validation_lines(t: dict[str, Any]) -> list[str]:
    """Validation loss, validation nDCG@10 and the reranker's blend weight, where the run has them."""
    lines = []
    if t.get("validation_loss_before") is not None:
        lines.append(
            f"- Validation loss (held-out pairs): {t['validation_loss_before']:.4f} before → "
            f"{t['validation_loss_after']:.4f} after."
        )
    if t.get("validation_ndcg10_after") is not None:
        lines.append(
            f"- Validation nDCG@10 (held-out training queries over the training corpus): "
            f"{_fmt(t.get('validation_ndcg10_before'))} before → {_fmt(t['validation_ndcg10_after'])} after."
        )
    blend = t.get("interpolation")
    if blend and blend.get("chosen_on"):
        lines.append(
            f"- Final score = {blend['weight']} × cross-encoder + {1 - blend['weight']:.1f} × first-stage rank "
            f"(both min-max scaled per query), the weight chosen on {blend['chosen_on']}."
        )
    return lines


def _settings_lines(report: dict[str, Any]) -> list[str]:
    cfg, t = report["config"], report["training"]
    lines = [
        "## Settings",
        "",
        f"- Loss: {t['loss']}",
        f"- Learning rate {t['learning_rate']}"
        + (f" (static query weights {t['static_learning_rate']})" if t.get("static_learning_rate") is not None else "")
        + f", batch size {t.get('batch_size') or cfg['batch_size']}, epochs {cfg['epochs']}"
        + (f", max steps {cfg['max_steps']}" if cfg.get("max_steps", -1) > 0 else "")
        + f", max sequence length while training {t.get('max_seq_length') or cfg['max_seq_length']}, seed {cfg['seed']}.",
        f"- Steps: {t['steps']}; training time {t['seconds']:.0f} s.",
    ]
    if t.get("first_loss") is not None:
        lines.append(
            f"- Training loss: {t['first_loss']:.4f} at the first logged step → {t['last_loss']:.4f} at the last."
        )
    return lines + _validation_lines(t)


def _evaluation_lines(report: dict[str, Any]) -> list[str]:
    """The before/after table on the evaluation set, and the change with its p-value."""
    before, after = report.get("before"), report.get("after")
    if not (before or after):
        return []
    ref: Any = after or before
    reranker = report["config"]["arch"] == "cross-encoder"
    lines = [
        "",
        f"## Evaluation on `{ref['dataset']}`",
        "",
        (
            f"{ref['queries']} judged queries, {ref['documents']} documents, "
            + (
                f"the first stage (RRF of the mining models' exact rankings) reranked on its top "
                f"{report['training'].get('rerank_top_n')}; before = the first stage alone"
                if reranker
                else "exact dot-product search over the whole corpus"
            )
            + f". nDCG@10 uses the graded judgements; MRR@10, MAP and R@100 count grade ≥ {ref['rel_threshold']} "
            "as relevant. Active dimensions are the mean non-zero entries per vector."
        ),
        "",
        "| model | nDCG@10 | MRR@10 | MAP | R@100 | query active dims | document active dims |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m, q_dims, d_dims in result_rows(report):
        lines.append(
            f"| {name} | {_fmt(m['nDCG@10'])} | {_fmt(m['MRR@10'])} | {_fmt(m['MAP'])} | {_fmt(m['R@100'])} "
            f"| {q_dims:.1f} | {d_dims:.1f} |"
        )
    if before and after:
        delta = after["metrics"]["nDCG@10"] - before["metrics"]["nDCG@10"]
        p = report.get("ndcg10_p_value")
        test = f" (paired randomisation test over the {ref['queries']} queries: p = {p:.3f})" if p is not None else ""
        lines += ["", f"nDCG@10 changed by {delta * 100:+.2f} points{test}."]
    return lines


def _use_lines(report: dict[str, Any]) -> list[str]:
    out = report["output"]
    if report["config"]["arch"] == "cross-encoder":
        use = f"hybrid-search search QUERY --index PATH --rerank {out}"
        code = ["from hybrid_search.rerank import Reranker", f"reranker = Reranker.load({out!r})"]
    else:
        use = f"hybrid-search index CORPUS --index PATH --sparse {out}"
        code = ["from hybrid_search.encoders import SparseEncoder", f"encoder = SparseEncoder.load({out!r})"]
    return ["", "## Use", "", "```bash", use, "```", "", "```python", *code, "```"]


def render_results_section(report: dict[str, Any]) -> str:
    """Markdown for the fine-tuning summary: data, settings, before/after table, training losses."""
    cfg = report["config"]
    trainer = report["training"].get("trainer") or (
        "CrossEncoderTrainer" if cfg["arch"] == "cross-encoder" else "SparseEncoderTrainer"
    )
    lines = [
        MARKER_START,
        f"# {Path(report['output']).name}: {cfg['arch']} fine-tuned from `{cfg['base']}`",
        "",
        f"Fine-tuned with `hybrid-search finetune` (sentence-transformers `{trainer}`).",
        "",
        *_data_lines(report),
        "",
        *_settings_lines(report),
        *_evaluation_lines(report),
        *_use_lines(report),
        MARKER_END,
    ]
    return "\n".join(lines) + "\n"


def write_model_card(folder: str | Path, report: dict[str, Any]) -> Path:
    """Insert (or replace) the results section in ``folder/README.md``; create the file if missing."""
    path = Path(folder) / "README.md"
    section = render_results_section(report)
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    if MARKER_START in existing and MARKER_END in existing:
        head, _, rest = existing.partition(MARKER_START)
        _, _, tail = rest.partition(MARKER_END)
        text = head + section.rstrip("\n") + tail
    elif existing.startswith("---\n"):
        end = existing.find("\n---", 4)
        cut = existing.find("\n", end + 4) + 1 if end != -1 else 0
        text = existing[:cut] + "\n" + section + "\n" + existing[cut:]
    else:
        text = section + ("\n" + existing if existing else "")
    path.write_text(text, encoding="utf-8")
    return path
