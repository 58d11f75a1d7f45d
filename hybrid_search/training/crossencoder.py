"""A cross-encoder reranker trained on the domain with sentence-transformers' ``CrossEncoderTrainer``.

No trained relevance cross-encoder can be downloaded offline, so ``hybrid-search finetune --arch cross-encoder``
makes one: a transformer (by default MiniLM's, taken out of the ``minilm`` sentence-transformers folder) with a
fresh one-logit head, trained with ``BinaryCrossEntropyLoss`` on (query, passage, 1) for every judged passage and
(query, hard negative, 0) for passages the hybrid retrieval ranks high but nobody judged relevant (see
:mod:`hybrid_search.training.negatives`). That is the recipe of sentence-transformers' MS MARCO cross-encoder
example (``training_ms_marco_bce.py``): BCE with ``pos_weight`` equal to the number of negatives per positive,
so that the rare positives weigh as much as the negatives together.

It is judged as it is used: the first stage (the fused sparse + dense ranking of the evaluation corpus) gives
the top ``rerank_top_n`` passages per query, the cross-encoder reorders them, and ir_measures scores both
orders. "Before" is the first stage, "after" the reranked one.
"""

from __future__ import annotations

import importlib
import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Files of a sentence-transformers folder that describe the bi-encoder around the transformer, not the
#: transformer itself; they are left out when the transformer becomes a cross-encoder.
_BI_ENCODER_FILES = {"modules.json", "config_sentence_transformers.json", "sentence_bert_config.json", "README.md"}


def _is_cross_encoder(folder: Path) -> bool:
    config = folder / "config.json"
    if not config.is_file():
        return False
    data = json.loads(config.read_text(encoding="utf-8"))
    return any(a.endswith("ForSequenceClassification") for a in data.get("architectures") or [])


def transformer_folder(path: str | Path, scratch: Path) -> Path:
    """The plain Hugging Face transformer inside ``path``, ready for ``CrossEncoder(folder, num_labels=1)``.

    A sentence-transformers folder (``modules.json``) holds the transformer plus pooling and normalisation
    modules; a cross-encoder needs the transformer alone, so its files are copied into ``scratch``.
    """
    folder = Path(path)
    modules = folder / "modules.json"
    if not modules.is_file() or _is_cross_encoder(folder):
        return folder
    entries = json.loads(modules.read_text(encoding="utf-8"))
    first = next((e for e in entries if e.get("type", "").endswith("Transformer")), entries[0])
    source = folder / first.get("path", "")
    scratch.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        if item.is_file() and item.name not in _BI_ENCODER_FILES:
            shutil.copy2(item, scratch / item.name)
    return scratch


def build_cross_encoder(base: str, *, device: str, max_length: int) -> Any:
    """A ``CrossEncoder`` with one output logit from ``base`` (built-in name, folder or Hub id).

    A cross-encoder folder (an earlier fine-tune) is loaded as it is, to train further; any other model
    gets a fresh, randomly initialised classification head.
    """
    from sentence_transformers import CrossEncoder

    from hybrid_search.models import resolve

    resolved = resolve(base)
    with tempfile.TemporaryDirectory(prefix="hybrid-search-ce-") as tmp:
        folder = transformer_folder(resolved.path, Path(tmp) / "transformer") if resolved.source == "local" else None
        model = CrossEncoder(
            str(folder) if folder else resolved.path, num_labels=1, max_length=max_length, device=device
        )
    return model


def labelled_pairs(dataset: Any) -> tuple[Any, int]:
    """``(query, positive, negative...)`` rows → ``(query, passage, label)`` rows, and negatives per positive."""
    import datasets

    negatives = [c for c in dataset.column_names if c.startswith("negative")]
    rows: dict[str, list[Any]] = {"query": [], "passage": [], "label": []}
    for row in dataset:
        for column, label in (("positive", 1.0), *((c, 0.0) for c in negatives)):
            rows["query"].append(row["query"])
            rows["passage"].append(row[column])
            rows["label"].append(label)
    return datasets.Dataset.from_dict(rows), max(1, len(negatives))


@dataclass
class RerankEvalResult:
    """First-stage and reranked effectiveness on one dataset (same shape as the sparse results)."""

    before: dict[str, Any]
    after: dict[str, Any]


def _as_result(
    run: dict[str, dict[str, float]], dataset: Any, rel_threshold: int, name: str, seconds: float
) -> dict[str, Any]:
    from hybrid_search.metrics import evaluate, evaluate_per_query

    return {
        "dataset": dataset.name,
        "system": name,
        "metrics": evaluate(run, dataset.qrels, rel_threshold=rel_threshold),
        "query_active_dims": 0.0,
        "document_active_dims": 0.0,
        "queries": len(run),
        "documents": len(dataset.corpus),
        "rel_threshold": rel_threshold,
        "seconds": seconds,
        "extra": {"per_query_ndcg10": evaluate_per_query(run, dataset.qrels, rel_threshold=rel_threshold)["nDCG@10"]},
    }


def first_stage(dataset: Any, scores: dict[str, Any], depth: int, rrf_k: float) -> dict[str, list[str]]:
    """The fused ranking of every judged query (``{qid: [doc ids, best first]}``)."""
    from hybrid_search.training.negatives import fused_order

    qids = [q for q in dataset.judged_queries if q in dataset.queries]
    doc_ids = list(dataset.corpus)
    return {q: [doc_ids[i] for i in fused_order(scores, row, depth, rrf_k)] for row, q in enumerate(qids)}


def evaluate_reranker(
    score: Any, dataset: Any, ranking: dict[str, list[str]], *, top_n: int, rel_threshold: int, progress: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(first stage, reranked)`` results: ``score(query, texts in first-stage order)`` reorders each query's
    top ``top_n`` (``Reranker.rerank``, so the stored interpolation weight applies as in ``bench``)."""
    from tqdm.auto import tqdm

    started = time.perf_counter()
    before_run = {q: {d: 1.0 / (r + 1) for r, d in enumerate(ids)} for q, ids in ranking.items()}
    before = _as_result(before_run, dataset, rel_threshold, "first stage", 0.0)
    after_run: dict[str, dict[str, float]] = {}
    for qid, ids in tqdm(ranking.items(), desc="reranking", unit="query", disable=not progress):
        head, tail = ids[:top_n], ids[top_n:]
        scores = score(dataset.queries[qid], [dataset.corpus[d].full_text for d in head]) if head else []
        order = sorted(zip(head, (float(s) for s in scores)), key=lambda item: (-item[1], item[0]))
        # Reranked passages stay above the rest, in the first stage's order.
        after_run[qid] = {d: 2.0 + len(order) - r for r, (d, _) in enumerate(order)}
        after_run[qid].update({d: 1.0 / (r + 2) for r, d in enumerate(tail)})
    after = _as_result(after_run, dataset, rel_threshold, f"+ reranker (top {top_n})", time.perf_counter() - started)
    return before, after


def _first_stage_ranking(cfg: Any, dataset: Any, device: str, cache: Any) -> dict[str, list[str]]:
    """The fused sparse + dense ranking of ``dataset``'s judged queries (the teacher of the mining)."""
    from hybrid_search.training.negatives import channel_scores

    qids = [q for q in dataset.judged_queries if q in dataset.queries]
    scores = channel_scores(
        [dataset.queries[q] for q in qids],
        list(dataset.corpus.values()),
        dataset.fingerprint(),
        cfg.negatives,
        device=device,
        progress=cfg.progress,
        cache=cache,
    )
    return first_stage(dataset, scores, cfg.negatives.depth, cfg.negatives.rrf_k)


def _rerank_eval(
    cfg: Any, reranker: Any, eval_set: Any, device: str, cache: Any, state: dict[str, Any], out: Path
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """First stage (from the state on resume), reranked with the chosen weight, and the cross-encoder alone."""
    from hybrid_search.rerank import interpolate
    from hybrid_search.training.finetune import _save_state

    ranking = state.get("first_stage")
    if ranking is None:
        ranking = _first_stage_ranking(cfg, eval_set, device, cache)
        state["first_stage"] = ranking
        _save_state(out, state)
    args = {"top_n": cfg.rerank_top_n, "rel_threshold": cfg.rel_threshold, "progress": cfg.progress}
    scored: dict[tuple[str, ...], Any] = {}

    def raw(query: str, texts: list[str]) -> Any:  # the cross-encoder scores each pair once for both runs
        key = (query, *texts)
        if key not in scored:
            scored[key] = reranker.score(query, texts)
        return scored[key]

    before, alone = evaluate_reranker(raw, eval_set, ranking, **args)
    _, after = evaluate_reranker(lambda q, t: interpolate(raw(q, t), reranker.weight), eval_set, ranking, **args)
    return before, after, alone


# --------------------------------------------------------------------------- validation on training queries

#: Interpolation weights tried on the held-out training queries (0: the first stage alone, 1: the reranker alone).
WEIGHTS = tuple(round(0.1 * i, 1) for i in range(11))


def split_rows_by_query(rows: Any, size: int, seed: int) -> tuple[Any, Any | None]:
    """Hold out every row of ``size`` training queries (at most a tenth): the reranker is judged on queries it
    never saw, which a split by rows would not give (a query's other positives would stay in training)."""
    import numpy as np

    queries = sorted(set(rows["query"]))
    size = min(size, len(queries) // 10)
    if size <= 0:
        return rows, None
    held = set(np.random.default_rng(seed).choice(queries, size=size, replace=False).tolist())
    keep = [i for i, q in enumerate(rows["query"]) if q not in held]
    out = [i for i, q in enumerate(rows["query"]) if q in held]
    return rows.select(keep), rows.select(out)


def choose_weight(
    model: Any, dataset: Any, ranking: dict[str, list[str]], cfg: Any
) -> tuple[float, list[tuple[float, float]]]:
    """The interpolation weight with the best nDCG@10 on the held-out training queries (ties: the smaller
    weight, the nearer the first stage). The cross-encoder scores each pair once; only the blend varies."""
    from hybrid_search.metrics import evaluate
    from hybrid_search.rerank import interpolate

    top = {q: ids[: cfg.rerank_top_n] for q, ids in ranking.items()}
    raw = {
        q: model.predict([(dataset.queries[q], dataset.corpus[d].full_text) for d in ids], show_progress_bar=False)
        for q, ids in top.items()
        if ids
    }
    curve = []
    for weight in WEIGHTS:
        run = {}
        for q, ids in top.items():
            blended: Any = interpolate(raw[q], weight) if ids else []
            run[q] = {d: float(s) - 1e-9 * r for r, (d, s) in enumerate(zip(ids, blended))}
        curve.append((weight, float(evaluate(run, dataset.qrels, rel_threshold=1)["nDCG@10"])))
    best = max(curve, key=lambda point: (point[1], -point[0]))
    return best[0], curve


# --------------------------------------------------------------------------- the run


def _train(
    cfg: Any, model: Any, train_set: Any, loss_set: Any, n_negatives: int, device: str, run: tuple[Path, Any, Any]
) -> dict[str, Any]:
    """Train with ``BinaryCrossEntropyLoss`` (``run``: output folder, state, checkpoint to resume from); return
    the training part of the report."""
    import importlib

    import torch
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments
    from sentence_transformers.cross_encoder.losses import BinaryCrossEntropyLoss

    from hybrid_search.training.build import recipe

    ft = importlib.import_module("hybrid_search.training.finetune")
    loss = BinaryCrossEntropyLoss(model, pos_weight=torch.tensor(float(n_negatives)))
    learning_rate = cfg.learning_rate if cfg.learning_rate is not None else recipe("cross-encoder").learning_rate
    args = ft._training_arguments(cfg, run[0], len(train_set), learning_rate, device, CrossEncoderTrainingArguments)
    trainer = CrossEncoderTrainer(
        model=model,
        args=args,
        train_dataset=train_set,
        eval_dataset=loss_set,
        loss=loss,
        callbacks=[ft._progress_callback(cfg.progress)],
    )
    out, state, resume = run
    result, seconds, validation_before, validation_after = ft._run_trainer(trainer, loss_set, state, out, resume)
    return {
        "loss": f"BinaryCrossEntropyLoss(pos_weight={n_negatives})",
        "learning_rate": learning_rate,
        "static_learning_rate": None,
        "epochs": cfg.epochs,
        "seconds": seconds,
        **ft.trainer_outcome(result, trainer, device, cfg.precision),
        "validation_loss_before": validation_before,
        "validation_loss_after": validation_after,
        "resumed_from": resume,
    }


def _save_and_reload(model: Any, out: Path, probe: list[tuple[str, str]], device: str) -> tuple[Any, float]:
    from sentence_transformers import CrossEncoder

    model.save_pretrained(str(out))
    reloaded = CrossEncoder(str(out.resolve()), device=device)
    diff = float(abs(model.predict(probe) - reloaded.predict(probe)).max()) if probe else 0.0
    if diff > 1e-4:
        raise RuntimeError(f"the saved reranker in {out} scores differently from the trained one ({diff})")
    return reloaded, diff


def _choose_and_store_weight(
    cfg: Any, reranker: Any, held: Any, docs: list[Any], fingerprint: str, out: Path, device: str, cache: Any
) -> dict[str, Any]:
    """Pick the interpolation weight on the held-out training queries and write it next to the model."""
    from hybrid_search.rerank import SETTINGS_FILE
    from hybrid_search.training.negatives import channel_scores

    if held is None:
        return {"weight": 1.0, "chosen_on": None, "validation_ndcg10": None}
    from hybrid_search.training.evaluate import validation_dataset

    dataset = validation_dataset(held, docs)
    qids = list(dataset.queries)
    scores = channel_scores(
        [dataset.queries[q] for q in qids], docs, fingerprint, cfg.negatives, device=device, cache=cache
    )
    ranking = first_stage(dataset, scores, cfg.negatives.depth, cfg.negatives.rrf_k)
    weight, curve = choose_weight(reranker.model, dataset, ranking, cfg)
    settings = {
        "weight": weight,
        "chosen_on": f"nDCG@10 of {len(qids)} held-out training queries, top {cfg.rerank_top_n} of the fused ranking",
        "validation_ndcg10": dict(curve),
    }
    (out / SETTINGS_FILE).write_text(json.dumps(settings, indent=2), encoding="utf-8")
    reranker.weight = weight
    return settings


def finetune_cross_encoder(cfg: Any, *, device: str, cache: Any = None) -> dict[str, Any]:
    """``hybrid-search finetune --arch cross-encoder``: mine, train, save, choose the interpolation weight on
    held-out training queries, and judge as a reranker.

    Args:
        cfg: a :class:`~hybrid_search.training.FinetuneConfig` (``base`` default ``minilm``).
        device: the resolved torch device.
        cache: see :func:`hybrid_search.training.finetune`.
    """
    from transformers import set_seed

    from hybrid_search.rerank import Reranker
    from hybrid_search.training.build import recipe

    ft = importlib.import_module("hybrid_search.training.finetune")
    started = time.perf_counter()
    eval_set, eval_queries, data = ft._prepare_run(cfg)
    if data.has_label:
        raise ValueError("--arch cross-encoder trains on (query, positive[, negatives]) rows; drop the label column")
    out, resume_from, state = ft._open_output(cfg)
    rows, negatives = ft._with_negatives(cfg, data, eval_set, out, state, device, cache)
    train_rows, held = split_rows_by_query(rows, cfg.validation_size, cfg.seed)
    train_set, n_negatives = labelled_pairs(train_rows)
    loss_set = labelled_pairs(held)[0] if held is not None else None

    set_seed(cfg.seed)  # the classification head starts random
    max_length = cfg.max_seq_length or recipe("cross-encoder").max_seq_length
    model = build_cross_encoder(cfg.base, device=device, max_length=max_length)
    training = _train(cfg, model, train_set, loss_set, n_negatives, device, (out, state, resume_from))
    probe = list(zip(train_set["query"][:4], train_set["passage"][:4]))
    reloaded, reload_diff = _save_and_reload(model, out, probe, device)
    reranker = Reranker(reloaded, cfg.out)
    docs, fingerprint = ft._mining_corpus(data, eval_set)
    interpolation = _choose_and_store_weight(cfg, reranker, held, docs, fingerprint, out, device, cache)
    before = after = raw = None
    if eval_set is not None:
        before, after, raw = _rerank_eval(cfg, reranker, eval_set, device, cache, state, out)
    training.update(
        max_seq_length=max_length,
        rerank_top_n=cfg.rerank_top_n,
        reload_max_abs_diff=reload_diff,
        interpolation=interpolation,
        reranker_alone=raw and {"metrics": raw["metrics"], "system": raw["system"]},
    )
    outcome = ft.Outcome(training, before, after, negatives)
    report = ft._report(cfg, out, data, (train_set, loss_set), eval_queries, outcome, started)
    return ft._write_report(out, report)
