"""``hybrid-search tune``: learn the fusion from judged queries, and save it with the index.

Each channel (sparse, dense, BM25) ranks every judged query of the training split (and of ``--eval-split``)
once, deep enough for the largest prefetch depth tried, through a real exact-search index built the way
``bench`` builds one (corpus vectors from :mod:`pipelines.embedding_cache`). The rankings are cached on disk,
so a rerun reads them back (as arrays, keyed by the models' folders: no model is loaded) and only re-fuses in
memory: a grid of about a thousand settings over SciFact's 809 training queries takes a few seconds.

The choice (:mod:`hybrid_search.tuning`) uses the training queries only: nDCG@10 from ir_measures, 5-fold
cross-validation, and the one-standard-error rule towards the simpler setting, a channel alone being the
simplest of all. With ``--eval-split``, the best single channel, default RRF and the tuned fusion are scored
on those queries side by side, with paired randomisation tests. With ``--index``, the tuned fusion is saved
in that index's metadata, where ``search`` reads it as its default.

Example:
    >>> from pipelines.tune import TuneOptions, run_tune
    >>> report = run_tune(TuneOptions("../shared/data/scifact", split="train", eval_split="test"))  # doctest: +SKIP
    >>> report["chosen"]["setting"]["method"]  # doctest: +SKIP
    'rrf'
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_search.dataset import DatasetError, RetrievalDataset, load_dataset
from hybrid_search.fusion import fuse
from hybrid_search.metrics import evaluate, evaluate_per_query, paired_significance
from hybrid_search.models import folder_signature, is_none
from hybrid_search.tuning import (
    DEFAULT_RRF,
    PREFETCH_DEPTHS,
    CandidateTable,
    Decision,
    FusionSetting,
    NdcgScorer,
    RankingArrays,
    candidate_space,
    choose,
    cv_folds,
    fold_means,
    fusion_record,
    nested_cv,
    nested_picks,
    score_settings,
    verify_with_ir_measures,
)
from hybrid_search.types import Ranking

DEFAULT_OUT = ".hybrid-search/tune"
_RANKINGS_FORMAT = 2


@dataclass
class TuneOptions:
    """What ``tune`` learns from and where it writes.

    Attributes:
        dataset: a BEIR folder (or anything :func:`~hybrid_search.dataset.load_dataset` reads).
        split: the qrels split the choice is made on.
        eval_split: a second split to report on (never used to choose); ``None`` for none.
        index: an index location to save the tuned fusion into; its models are used unless given.
        sparse, dense: model names or loaded encoders (``"none"`` drops the channel); default: the index's,
            else splade-tiny and MiniLM.
        folds: cross-validation folds; seed: their shuffle.
        out: folder of the tune's own exact-search index and ranking cache (default
            ``.hybrid-search/tune/DATASET``).
        cache: the embedding cache: ``True`` (default folder), ``False`` (off) or a folder.
        progress: progress bars on stderr.
        dense_backend: the dense encoder's inference backend (see ``bench --dense-backend``).
    """

    dataset: str
    split: str = "train"
    eval_split: str | None = None
    index: str | None = None
    sparse: Any = None
    dense: Any = None
    folds: int = 5
    seed: int = 0
    out: str | None = None
    cache: bool | str = True
    progress: bool = True
    dense_backend: str | None = None


# --------------------------------------------------------------------------- data


def load_splits(options: TuneOptions) -> tuple[RetrievalDataset, RetrievalDataset | None]:
    """The training split and the evaluation split (same corpus and queries, other judgements)."""
    if options.eval_split is not None and options.eval_split == options.split:
        raise ValueError(
            f"--eval-split must differ from --split (both {options.split!r}): the tuned fusion "
            "is chosen on --split and reported on --eval-split"
        )
    try:
        train = load_dataset(options.dataset, split=options.split)
    except DatasetError as error:
        raise DatasetError(
            f"{error}. tune learns from judged queries: --split names a qrels file "
            "(a collection with only a test split can be tuned with --split test and no "
            "--eval-split; cross-validation then keeps the estimate honest)"
        ) from None
    held = load_dataset(options.dataset, split=options.eval_split) if options.eval_split else None
    for data, split in ((train, options.split), (held, options.eval_split)):
        if data is not None and not [q for q in data.judged_queries if data.queries.get(q, "").strip()]:
            raise DatasetError(f"split {split!r} of {data.name} has no judged query with text")
    return train, held


def _judged(data: RetrievalDataset) -> list[str]:
    return [q for q in data.judged_queries if data.queries.get(q, "").strip()]


class _Models:
    """The tune's sparse and dense models: named from the options (or the index's metadata), loaded only when
    rankings must be computed or the index checked, since loading both costs a warm tune most of its time."""

    def __init__(self, options: TuneOptions) -> None:
        sparse, dense = options.sparse, options.dense
        if options.index and (sparse is None or dense is None):
            from indexers import open_index

            index = open_index(options.index)
            try:
                sparse = sparse if sparse is not None else (index.meta.sparse or {}).get("name", "none")
                dense = dense if dense is not None else (index.meta.dense or {}).get("name", "none")
            finally:
                index.close()
        self.sparse = "splade-tiny" if sparse is None else sparse
        self.dense = "minilm" if dense is None else dense
        self.backend = options.dense_backend
        self._loaded: tuple[Any, Any] | None = None

    def load(self) -> tuple[Any, Any]:
        """``(sparse, dense)`` encoders; ``None`` for a channel left out."""
        if self._loaded is None:
            from pipelines.bench import _load_encoder

            sparse = _load_encoder("sparse", self.sparse)
            dense = None if is_none(self.dense) else _load_encoder("dense", self.dense, backend=self.backend)
            self._loaded = (sparse, dense)
        return self._loaded

    def keys(self) -> dict[str, Any]:
        """What names the rankings these models make: each model's folder signature
        (:func:`~hybrid_search.models.folder_signature`), read without loading it; a model that has no local
        folder (a Hub id, an encoder object) is loaded and keyed by its weights."""
        named = {"sparse": self.sparse, "dense": self.dense}
        quick: dict[str, Any] = {}
        for kind, model in named.items():
            if is_none(model):
                quick[kind] = None
            elif isinstance(model, str) and (signature := folder_signature(model)) is not None:
                quick[kind] = {**signature, **({"backend": self.backend} if kind == "dense" else {})}
            else:
                from pipelines.bench import _index_keys

                return {"weights": _index_keys(*self.load()), "backend": self.backend}
        return quick


# --------------------------------------------------------------------------- channel rankings


def rankings_key(fingerprint: str, model_keys: Mapping[str, Any], queries: Mapping[str, str], depth: int) -> str:
    """16 hex digits naming one set of channel rankings: corpus, models, query texts and depth."""
    blob = json.dumps([_RANKINGS_FORMAT, fingerprint, dict(model_keys), sorted(queries.items()), depth], sort_keys=True)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]


def read_rankings(path: Path) -> RankingArrays | None:
    """The cached rankings at ``path``; ``None`` when it is missing or unreadable (they are then recomputed)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            channels = [str(c) for c in stored["channels"]]
            return RankingArrays(
                [str(q) for q in stored["qids"]],
                stored["ids"],
                {c: stored[f"docs_{c}"] for c in channels},
                {c: stored[f"scores_{c}"] for c in channels},
            )
    except (OSError, ValueError, KeyError):
        return None


def _write_rankings(path: Path, arrays: RankingArrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:  # a file object: np.savez would add ".npz" to a name
        np.savez(
            fh,
            channels=np.array(list(arrays.docs), dtype=str),
            qids=np.array(arrays.qids, dtype=str),
            ids=arrays.ids,
            **{f"docs_{c}": d for c, d in arrays.docs.items()},
            **{f"scores_{c}": v for c, v in arrays.scores.items()},
        )
    tmp.replace(path)


def search_channels(
    index: Any, sparse: Any, dense: Any, queries: Mapping[str, str], depth: int, *, progress: bool = True
) -> dict[str, dict[str, Ranking]]:
    """Every query's ranking in every channel the models allow, ``depth`` deep, encoded one query at a time
    as ``search`` encodes it."""
    from tqdm.auto import tqdm

    out: dict[str, dict[str, Ranking]] = {
        c: {}
        for c in ("sparse", "dense", "bm25")
        if c == "bm25" or (c == "sparse" and sparse) or (c == "dense" and dense)
    }
    for qid, text in tqdm(
        list(queries.items()), desc="ranking queries per channel", unit="q", disable=not progress, dynamic_ncols=True
    ):
        if sparse is not None:
            out["sparse"][qid] = index.search_sparse(sparse.encode_query([text])[0], depth)
        if dense is not None:
            out["dense"][qid] = index.search_dense(dense.encode_query([text])[0], depth)
        out["bm25"][qid] = index.search_bm25(text, depth)
    return out


def channel_rankings(
    data: RetrievalDataset,
    queries: Mapping[str, str],
    models: _Models,
    depth: int,
    out: Path,
    options: TuneOptions,
    timings: dict[str, float],
) -> tuple[RankingArrays, bool]:
    """The channel rankings of ``queries``, from the ranking cache under ``out``, or computed (the corpus
    encoded through the embedding cache, indexed exactly, every query ranked per channel) and cached.

    Returns:
        ``(rankings, cached)``.
    """
    start = time.perf_counter()
    fingerprint = data.fingerprint()
    path = out / f"rankings-{rankings_key(fingerprint, models.keys(), queries, depth)}.npz"
    stored = read_rankings(path) if options.cache is not False else None
    if stored is not None and stored.qids == list(queries):
        timings["rankings"] = time.perf_counter() - start
        return stored, True
    from pipelines.bench import CorpusVectors, build_index  # a cold run's only: they import torch
    from pipelines.embedding_cache import EmbeddingCache

    sparse, dense = models.load()
    docs = list(data.corpus.values())
    store = EmbeddingCache(
        None if isinstance(options.cache, bool) else options.cache,
        progress=options.progress,
        enabled=bool(options.cache),
    )
    svecs = store.sparse(sparse, docs, fingerprint)[0] if sparse is not None else None
    dmat = store.dense(dense, docs, fingerprint)[0] if dense is not None else None
    timings["encode_corpus"] = time.perf_counter() - start
    if sparse is None and dense is None:  # BM25 alone needs no vector index: the same channel, in memory
        index: Any = _Bm25Only(docs)
    else:
        corpus = CorpusVectors(docs, svecs, dmat, fingerprint)
        index, _ = build_index("qdrant-edge", out, corpus, sparse, dense, progress=options.progress)
    try:
        rankings = search_channels(index, sparse, dense, queries, depth, progress=options.progress)
    finally:
        index.close()
    arrays = RankingArrays.from_rankings(rankings, list(queries))
    if options.cache is not False:
        for stale in [*out.glob("rankings-*.npz"), *out.glob("rankings-*.json.gz")]:
            stale.unlink()
        _write_rankings(path, arrays)
    timings["rankings"] = time.perf_counter() - start - timings["encode_corpus"]
    return arrays, False


class _Bm25Only:
    """The BM25 channel an index would serve (:meth:`BaseIndex.search_bm25`), for a tune with no model."""

    def __init__(self, docs: Sequence[Any]) -> None:
        from hybrid_search.encoders.bm25 import BM25Channel

        self._bm25 = BM25Channel([d.id for d in docs], [d.full_text for d in docs])

    def search_bm25(self, text: str, k: int) -> Ranking:
        return self._bm25.search(text, k)

    def close(self) -> None:
        pass


# --------------------------------------------------------------------------- evaluation


def system_run(
    rankings: Mapping[str, Mapping[str, Ranking]], setting: FusionSetting, qids: Sequence[str], depth: int = 100
) -> dict[str, dict[str, float]]:
    """A TREC-style run of one setting through :func:`hybrid_search.fusion.fuse` (the code ``search`` runs
    client-side): a channel alone gives its top ``depth``, a fusion its whole candidate list."""
    run: dict[str, dict[str, float]] = {}
    for qid in qids:
        if setting.fused:
            cut = {c: rankings[c].get(qid, [])[: setting.prefetch_k] for c in setting.channels}
            fused = fuse(setting.method or "rrf", cut, k=setting.rrf_k, weights=setting.weight_map)
        else:
            fused = rankings[setting.channels[0]].get(qid, [])[:depth]
        run[qid] = {h.id: h.score for h in fused}
    return run


def evaluate_systems(
    rankings: Mapping[str, Mapping[str, Ranking]],
    systems: Mapping[str, FusionSetting],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    resamples: int = 10000,
) -> dict[str, Any]:
    """Each system's metrics on ``qrels``' queries, with paired randomisation tests on per-query nDCG@10
    against the best channel alone and against default RRF."""
    qids = list(qrels)
    rows = {}
    for name, setting in systems.items():
        run = system_run(rankings, setting, qids)
        rows[name] = {
            "setting": setting.to_record(),
            "label": setting.label,
            "metrics": evaluate(run, qrels),
            "per_query": evaluate_per_query(run, qrels)["nDCG@10"],
        }
    singles = [n for n, s in systems.items() if not s.fused]
    baseline = max(singles, key=lambda n: rows[n]["metrics"]["nDCG@10"])
    for name, row in rows.items():
        for other, key in ((baseline, "p_vs_best_single"), ("default RRF", "p_vs_default_rrf")):
            if other in rows and other != name:
                row[key] = paired_significance(row["per_query"], rows[other]["per_query"], n_resamples=resamples)
    for row in rows.values():
        del row["per_query"]
    return {"queries": len(qids), "best_single": baseline, "rows": rows}


# --------------------------------------------------------------------------- the run


def _setting_summary(setting: FusionSetting, decision: Any, i: int) -> dict[str, Any]:
    return {
        "setting": setting.to_record(),
        "label": setting.label,
        "cv_ndcg10": float(decision.mean[i]),
        "cv_std": float(decision.std[i]),
        "gap_to_best": float(decision.gap[i]),
        "se": float(decision.se[i]),
    }


@dataclass
class _Grid:
    """The training side of a tune: every setting's per-query nDCG@10, the CV folds and the decision."""

    settings: list[FusionSetting]
    per_query: np.ndarray
    scores: np.ndarray
    decision: Decision
    nested: np.ndarray
    kernel_check: dict[str, Any]


def run_tune(options: TuneOptions) -> dict[str, Any]:
    """Learn the fusion; see the module docstring. Returns the report ``--json`` prints."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    train, held = load_splits(options)
    models = _Models(options)
    timings["load"] = time.perf_counter() - started
    train_q, held_q = _judged(train), _judged(held) if held else []
    queries = {q: train.queries[q] for q in dict.fromkeys(train_q + held_q)}
    out = Path(options.out) if options.out else Path(DEFAULT_OUT) / re.sub(r"[^A-Za-z0-9._-]+", "_", train.name)
    arrays, cached = channel_rankings(train, queries, models, max(PREFETCH_DEPTHS), out, options, timings)
    rankings = arrays.as_rankings()

    tick = time.perf_counter()
    grid = tune_on(arrays.rows(train_q), {q: train.qrels[q] for q in train_q}, options)
    timings["tune"] = time.perf_counter() - tick
    report = _training_report(options, train, len(train_q), len(held_q), grid)
    report["cache"] = {"rankings": cached, "folder": str(out)}
    chosen = grid.settings[grid.decision.chosen]
    if held is not None:
        tick = time.perf_counter()
        report["eval"] = evaluate_systems(rankings, _eval_systems(rankings, chosen), {q: held.qrels[q] for q in held_q})
        timings["eval"] = time.perf_counter() - tick
    if options.index:
        d = grid.decision
        learned = {
            "dataset": train.name,
            "split": options.split,
            "cv_mean": d.mean[d.chosen],
            "cv_std": d.std[d.chosen],
        }
        report["saved"] = save_to_index(options.index, chosen, *models.load(), **learned)
    timings["total"] = time.perf_counter() - started
    report["timings_s"] = {k: round(v, 2) for k, v in timings.items()}
    return report


def tune_on(rankings: RankingArrays, qrels: Mapping[str, Mapping[str, int]], options: TuneOptions) -> _Grid:
    """Score the whole grid on the training queries (numpy kernel), re-score what is reported with
    ir_measures, and choose by cross-validation. Pure given the rankings (one row per query of ``qrels``, in
    its order): no file, no model."""
    qids = list(qrels)
    settings = candidate_space(list(rankings.docs))
    table = CandidateTable.from_arrays(rankings)
    per_query = score_settings(table, settings, qrels, progress=options.progress)
    folds = cv_folds(len(qids), options.folds, options.seed)
    first = choose(settings, fold_means(per_query, folds))
    # Every setting a number is reported for, re-scored by ir_measures; then decided again on those values.
    reported = [first.chosen, first.best, first.best_single, *np.argsort(-first.mean)[:10]]
    reported += [i for i, s in enumerate(settings) if s == DEFAULT_RRF or not s.fused]
    reported += nested_picks(settings, fold_means(per_query, folds))
    worst = verify_with_ir_measures(table, settings, per_query, reported, NdcgScorer(qrels))
    scores = fold_means(per_query, folds)
    decision, nested = choose(settings, scores), nested_cv(settings, scores)
    check = {"settings_rescored_by_ir_measures": len(set(map(int, reported))), "max_abs_diff": worst}
    return _Grid(settings, per_query, scores, decision, nested, check)


def _training_report(
    options: TuneOptions, train: RetrievalDataset, n_train: int, n_held: int, grid: _Grid
) -> dict[str, Any]:
    """The part of the report that the training split alone decides."""
    settings, decision = grid.settings, grid.decision
    fused = [i for i, s in enumerate(settings) if s.fused]
    best_fusion = max(fused, key=lambda i: decision.mean[i]) if fused else None

    def summary(i: int | None) -> dict[str, Any] | None:
        return _setting_summary(settings[i], decision, int(i)) if i is not None else None

    return {
        "dataset": {
            "name": train.name,
            "spec": str(options.dataset),
            "documents": len(train.corpus),
            "split": options.split,
            "train_queries": n_train,
            "eval_split": options.eval_split,
            "eval_queries": n_held,
        },
        "objective": "nDCG@10 (ir_measures), mean over the training queries",
        "cv": {
            "folds": options.folds,
            "seed": options.seed,
            "rule": "one standard error: the simplest setting whose CV mean is within one standard error "
            "of the best (standard error of the paired fold-wise difference)",
        },
        "settings_tried": len(settings),
        "scoring": {
            "grid": "numpy nDCG@10 kernel (trec_eval's definition)",
            "reported": "ir_measures nDCG@10",
            **grid.kernel_check,
        },
        "chosen": summary(decision.chosen),
        "best": summary(decision.best),
        "best_single": summary(decision.best_single),
        "best_fusion": summary(best_fusion),
        "default_rrf": _default_summary(settings, decision),
        "nested_cv": {
            "ndcg10": float(grid.nested.mean()),
            "std": float(grid.nested.std(ddof=1)),
            "what": "held-out score of the whole tuning procedure (choose on k-1 folds, score the k-th)",
        },
        "within_noise": int(decision.within.sum()),
        "top": [summary(int(i)) for i in np.argsort(-decision.mean)[:10]],
        "recommendation": _recommendation(
            settings[decision.chosen], settings[decision.best_single], settings, decision, best_fusion
        ),
    }


def _eval_systems(rankings: Mapping[str, Any], chosen: FusionSetting) -> dict[str, FusionSetting]:
    """What ``--eval-split`` compares: each channel alone, default RRF (when there are both vector channels)
    and the tuned fusion."""
    systems = {f"{c} alone": FusionSetting((c,), None) for c in rankings}
    if {"sparse", "dense"} <= set(rankings):
        systems["default RRF"] = DEFAULT_RRF
    systems["tuned"] = chosen
    return systems


def _default_summary(settings: Sequence[FusionSetting], decision: Any) -> dict[str, Any] | None:
    if DEFAULT_RRF not in settings:
        return None
    i = list(settings).index(DEFAULT_RRF)
    return _setting_summary(DEFAULT_RRF, decision, i)


def _recommendation(
    chosen: FusionSetting,
    single: FusionSetting,
    settings: Sequence[FusionSetting],
    decision: Any,
    best_fusion: int | None,
) -> str:
    if chosen.fused:
        gain = decision.mean[decision.chosen] - decision.mean[decision.best_single]
        return (
            f"use {chosen.label}: cross-validated nDCG@10 {100 * decision.mean[decision.chosen]:.2f}, "
            f"{100 * gain:+.2f} over the best channel alone ({single.channels[0]})"
        )
    if best_fusion is None:
        return f"use {single.channels[0]} alone: it is the only channel"
    gap = decision.mean[best_fusion] - decision.mean[decision.best_single]
    return (
        f"no fusion beats {single.channels[0]} alone beyond noise in cross-validation (best fusion: "
        f"{settings[best_fusion].label}, {100 * gap:+.2f} nDCG@10 ± {100 * decision.se[decision.best_single]:.2f}); "
        f"search with {single.channels[0]} alone"
    )


def save_to_index(
    location: str,
    setting: FusionSetting,
    sparse: Any,
    dense: Any,
    *,
    dataset: str,
    split: str,
    cv_mean: float,
    cv_std: float,
) -> dict[str, Any]:
    """Record the tuned fusion in the index's metadata; the index must have been built with the same models."""
    from indexers import open_index

    index = open_index(location)
    try:
        index.meta.check_models(sparse.settings() if sparse else None, dense.settings() if dense else None)
        missing = [c for c in setting.channels if c not in index.meta.channels]
        if missing:
            raise ValueError(f"the tuned fusion uses {', '.join(missing)}, which the index at {location} lacks")
        index.meta.fusion = fusion_record(setting, dataset=dataset, split=split, cv_ndcg10=cv_mean, cv_std=cv_std)
        index.save_meta()
        return {"index": location, "fusion": index.meta.fusion}
    finally:
        index.close()


# --------------------------------------------------------------------------- CLI


def format_report(report: Mapping[str, Any]) -> str:
    """The report as text: the decision, the top settings, and the evaluation table."""
    ds = report["dataset"]
    chosen = report["chosen"]
    lines = [
        (
            f"{ds['name']}: {ds['documents']:,} documents; tuned on {ds['train_queries']} judged '{ds['split']}' "
            f"queries, {report['cv']['folds']}-fold CV over {report['settings_tried']} settings"
        ),
        f"chosen: {chosen['label']}  CV nDCG@10 {100 * chosen['cv_ndcg10']:.2f} ± {100 * chosen['cv_std']:.2f} (fold std)",
        f"  {report['recommendation']}",
        (
            f"  best by CV mean: {report['best']['label']} {100 * report['best']['cv_ndcg10']:.2f}; "
            f"{report['within_noise']} settings within one standard error"
        ),
        (
            f"  nested CV (the tuning procedure itself): {100 * report['nested_cv']['ndcg10']:.2f} "
            f"± {100 * report['nested_cv']['std']:.2f}"
        ),
    ]
    if "eval" in report:
        ev = report["eval"]
        lines += [
            "",
            f"on '{ds['eval_split']}' ({ev['queries']} judged queries, never used to choose):",
            "",
            "| system | nDCG@10 | MRR@10 | MAP | R@100 | p vs best single | p vs default RRF |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for name, row in ev["rows"].items():
            m = row["metrics"]
            p1 = "baseline" if name == ev["best_single"] else f"{row.get('p_vs_best_single', float('nan')):.3f}"
            p2 = f"{row['p_vs_default_rrf']:.3f}" if "p_vs_default_rrf" in row else "–"
            label = f"{name}: {row['label']}" if name == "tuned" else name
            lines.append(
                f"| {label} | {100 * m['nDCG@10']:.2f} | {100 * m['MRR@10']:.2f} | {100 * m['MAP']:.2f} "
                f"| {100 * m['R@100']:.2f} | {p1} | {p2} |"
            )
    if "saved" in report:
        lines += ["", f"saved in the metadata of {report['saved']['index']}: search uses it by default"]
    return "\n".join(lines)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hybrid-search tune`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "tune",
        help="learn the fusion (method, RRF k, weights, channels, prefetch) from judged queries",
        description="Rank every judged query once per channel (cached), re-fuse with a grid of fusion settings, "
        "choose by cross-validated nDCG@10 on --split with the one-standard-error rule (a channel alone when no "
        "fusion beats it), report on --eval-split, and save the choice into --index's metadata.",
    )
    p.add_argument("--dataset", required=True, help="BEIR folder with the judged split(s)")
    p.add_argument("--split", default="train", help="qrels split to learn from (default train)")
    p.add_argument("--eval-split", help="qrels split to report on, never used to choose (e.g. test)")
    p.add_argument("--index", help="save the tuned fusion into this index's metadata (its models are used)")
    p.add_argument("--sparse", help="sparse model, or 'none' (default: the index's, else splade-tiny)")
    p.add_argument("--dense", help="dense model, or 'none' (default: the index's, else minilm)")
    p.add_argument("--dense-backend", default=None, help="dense inference backend (see bench --dense-backend)")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the fold shuffle (default 0)")
    p.add_argument("--out", help=f"folder for the tune's index and ranking cache (default {DEFAULT_OUT}/DATASET)")
    p.add_argument("--no-cache", action="store_true", help="recompute embeddings and rankings")
    p.add_argument("--cache-dir", help="embedding cache folder (default: the model cache's embeddings/ folder)")
    p.add_argument(
        "--device", help="where models run: auto, cpu, cuda, cuda:N or mps (default: $HYBRID_SEARCH_DEVICE, else auto)"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_tune)
    return p


def cmd_tune(args: argparse.Namespace) -> int:
    if args.device:
        import os

        from hybrid_search.device import ENV_VAR, requested_device

        os.environ[ENV_VAR] = requested_device(args.device)  # every encoder reads it
    report = run_tune(
        TuneOptions(
            args.dataset,
            split=args.split,
            eval_split=args.eval_split,
            index=args.index,
            sparse=args.sparse,
            dense=args.dense,
            folds=args.folds,
            seed=args.seed,
            out=args.out,
            cache=False if args.no_cache else (args.cache_dir or True),
            progress=not args.no_progress,
            dense_backend=args.dense_backend,
        )
    )
    print(json.dumps(report, indent=2, ensure_ascii=False) if args.json else format_report(report))
    print(
        f"tuned in {report['timings_s']['total']:.1f}s (rankings {'cached' if report['cache']['rankings'] else 'computed'})",
        file=sys.stderr,
    )
    return 0
