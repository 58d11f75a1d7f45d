"""One benchmark run as a few named steps: load, encode and index, run the rows, evaluate, report.

:func:`run_benchmark` takes a :class:`~pipelines.bench.config.BenchConfig` (or its fields as keywords) and
returns the :class:`~pipelines.bench.report.BenchResult` whose outputs it has written.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hybrid_search.dataset import RetrievalDataset, load_dataset
from hybrid_search.metrics import evaluate, evaluate_per_query, measures, paired_significance
from hybrid_search.rerank import Reranker
from hybrid_search.types import Document, SparseVector

from .cache import CorpusVectors, _accelerate, build_index, open_store
from .config import DEFAULT_OUT, BenchConfig, _load_encoder
from .measure import _warm_up_and_count_dims, disk_usage, latency_stats, search_options, time_row
from .report import BenchResult, RowResult, write_outputs
from .rows import RowSpec
from .tuned import tuned_row

#: What :func:`~pipelines.bench.measure.time_row` returns for a row: run, latencies, stage medians, who fused.
Timed = tuple[dict[str, dict[str, float]], list[float], dict[str, float], str | None]


class _Clock:
    """Seconds per step of a run (``timings_s`` in results.json), laps adding up to the total."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self.start = self.t0 = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = self.laps.get(name, 0.0) + now - self.t0
        self.t0 = now

    def timings(self) -> dict[str, float]:
        return {**{k: round(v, 3) for k, v in self.laps.items()}, "total": round(time.perf_counter() - self.start, 3)}


@dataclass
class _Loaded:
    """The dataset, the queries to run and the loaded models."""

    data: RetrievalDataset
    qids: list[str]
    qrels: dict[str, Any]
    docs: list[Document]
    fingerprint: str
    out_dir: Path
    sparse: Any
    dense: Any
    reranker: Reranker | None


@dataclass
class _Indexed:
    """The corpus vectors and the index built from them."""

    index: Any
    reused: bool
    sizes: dict[str, int] | None
    cache_hits: dict[str, bool]
    sparse_vectors: Sequence[SparseVector] | None


def run_benchmark(
    dataset: str | os.PathLike[str] | RetrievalDataset, config: BenchConfig | None = None, **options: Any
) -> BenchResult:
    """Benchmark BM25, sparse, dense and hybrid retrieval (optionally reranked) on one dataset.

    Args:
        dataset: a BEIR folder, a NanoBEIR name (``nano-msmarco``), a Hub id, a local copy of a Hub
            dataset, or a loaded :class:`~hybrid_search.dataset.RetrievalDataset`.
        config: the run's options (see :class:`BenchConfig` for each); default ``BenchConfig()``.
        **options: :class:`BenchConfig` fields that override ``config``'s, e.g. ``sparse="splade-tiny"``.

    Returns:
        The :class:`BenchResult`; its outputs are written under ``config.out``.

    Raises:
        DatasetError: the dataset cannot be loaded (offline, a NanoBEIR name says to pass a BEIR folder).
        ValueError: inconsistent options, e.g. a hybrid combination without its model.
    """
    config = replace(config, **options) if config is not None else BenchConfig(**options)
    clock = _Clock()
    specs = config.plan()
    loaded = _load(dataset, config, clock)
    indexed = _encode_and_index(loaded, config, clock)
    specs = _with_tuned_row(specs, dataset, config, loaded, indexed, clock)
    timed, dims = _run_rows(specs, loaded, indexed, config)
    clock.lap("queries")
    rows, baseline = _evaluate_rows(specs, timed, dims, indexed.sizes, loaded.qrels, config)
    clock.lap("evaluate")
    result = _result(dataset, config, loaded, indexed, rows, baseline)
    result.timings_s = clock.timings()
    write_outputs(result, {name: t[0] for name, t in timed.items()}, loaded.out_dir)
    return result


def _load(dataset: str | os.PathLike[str] | RetrievalDataset, config: BenchConfig, clock: _Clock) -> _Loaded:
    """Load the dataset and the models, and pick the judged queries with text (the first ``max_queries``)."""
    data = dataset if isinstance(dataset, RetrievalDataset) else load_dataset(dataset, split=config.split)
    clock.lap("load_dataset")
    sparse, dense = _load_encoder("sparse", config.sparse), _load_encoder("dense", config.dense)
    reranker = Reranker.load(config.reranker) if isinstance(config.reranker, str) else config.reranker
    clock.lap("load_models")

    qids = [q for q in data.judged_queries if data.queries.get(q, "").strip()]
    if config.max_queries is not None:
        qids = qids[: config.max_queries]
    if not qids:
        raise ValueError(f"dataset {data.name} has no judged query with text")
    judged = data.judged_queries if config.max_queries is None else qids
    out = config.out
    return _Loaded(
        data=data,
        qids=qids,
        qrels={q: data.qrels[q] for q in judged},
        docs=list(data.corpus.values()),
        fingerprint=data.fingerprint(),
        out_dir=Path(out) if out is not None else Path(DEFAULT_OUT) / re.sub(r"[^A-Za-z0-9._-]+", "_", data.name),
        sparse=sparse,
        dense=dense,
        reranker=reranker,
    )


def _encode_and_index(loaded: _Loaded, config: BenchConfig, clock: _Clock) -> _Indexed:
    """Encode the corpus (or read it from the embedding cache) and build or reuse the index."""
    store = open_store(config.cache, config.progress)
    cache_hits: dict[str, bool] = {}
    sparse_vectors = dense_matrix = None
    if loaded.sparse is not None:
        sparse_vectors, cache_hits["sparse"] = store.sparse(loaded.sparse, loaded.docs, loaded.fingerprint)
    if loaded.dense is not None:
        dense_matrix, cache_hits["dense"] = store.dense(loaded.dense, loaded.docs, loaded.fingerprint)
    clock.lap("encode_corpus")

    corpus = CorpusVectors(loaded.docs, sparse_vectors, dense_matrix, loaded.fingerprint)
    index, reused = build_index(
        config.index_backend, loaded.out_dir, corpus, loaded.sparse, loaded.dense, progress=config.progress
    )
    if config.sparse_ann:
        index = _accelerate(index, config.sparse_ann, reused, config.progress)
    clock.lap("build_index")
    return _Indexed(index=index, reused=reused, sizes=None, cache_hits=cache_hits, sparse_vectors=sparse_vectors)


def _with_tuned_row(
    specs: list[RowSpec], dataset: Any, config: BenchConfig, loaded: _Loaded, indexed: _Indexed, clock: _Clock
) -> list[RowSpec]:
    """The rows plus the learned-fusion row (:mod:`pipelines.bench.tuned`), before the reranked copies."""
    try:
        row = tuned_row(dataset, config, loaded, indexed.index)
    except BaseException:
        indexed.index.close()
        raise
    clock.lap("tune")
    if row is None:
        return specs
    plain = [s for s in specs if not s.rerank]
    reranked = [s for s in specs if s.rerank]
    return [*plain, row, *reranked, *([replace(row, rerank=True)] if reranked else [])]


def _run_rows(
    specs: Sequence[RowSpec], loaded: _Loaded, indexed: _Indexed, config: BenchConfig
) -> tuple[dict[str, Timed], dict[str, tuple[float, float]]]:
    """Time every row's queries with ``query_threads`` torch threads, then close the index.

    Also measures the index's storage (into ``indexed.sizes``) and the active dimensions per channel.

    Returns:
        ``({row name: timed}, {channel: (avg active dims per query, per doc)})``.
    """
    import torch

    from hybrid_search.retrieval import HybridSearcher

    index = indexed.index
    torch_threads = torch.get_num_threads()
    if config.query_threads:
        torch.set_num_threads(config.query_threads)
    try:
        indexed.sizes = disk_usage(index.path) if config.index_backend == "qdrant-edge" else None
        searcher = HybridSearcher(index, sparse=loaded.sparse, dense=loaded.dense, reranker=loaded.reranker)
        texts = [loaded.data.queries[q] for q in loaded.qids]
        dims = _warm_up_and_count_dims(texts, loaded.docs, loaded.sparse, indexed.sparse_vectors, loaded.dense)
        queries = dict(zip(loaded.qids, texts))
        timed = {
            spec.name: time_row(
                searcher,
                queries,
                search_options(
                    spec,
                    prefetch_k=config.prefetch_k,
                    rrf_k=config.rrf_k,
                    rerank_top_n=config.rerank_top_n,
                    client_fusion=config.client_fusion,
                ),
                top_k=config.top_k,
                desc=spec.name,
                progress=config.progress,
            )
            for spec in specs
        }
    finally:
        torch.set_num_threads(torch_threads)
        index.close()
    return timed, dims


def _evaluate_rows(
    specs: Sequence[RowSpec],
    timed: Mapping[str, Timed],
    dims: Mapping[str, tuple[float, float]],
    sizes: Mapping[str, int] | None,
    qrels: Mapping[str, Any],
    config: BenchConfig,
) -> tuple[list[RowResult], RowResult | None]:
    """Score every row with ir_measures and test it against the best single channel (the baseline)."""
    t = config.rel_threshold
    rows = []
    for spec in specs:
        run, times, stages, fused_by = timed[spec.name]
        channel_bytes = None
        if sizes is not None:
            vector_channels = [c for c in spec.channels if c != "bm25"]
            channel_bytes = sum(sizes[c] for c in vector_channels) if vector_channels else None
        rows.append(
            RowResult(
                spec=spec,
                metrics=evaluate(run, qrels, t),
                latency=latency_stats(times),
                per_query=evaluate_per_query(run, qrels, t)["nDCG@10"],
                fused_by=fused_by,
                avg_active_dims_query=sum(dims[c][0] for c in spec.channels),
                avg_active_dims_doc=sum(dims[c][1] for c in spec.channels),
                index_bytes=channel_bytes,
                stages_ms=stages,
            )
        )
    singles = [r for r in rows if not r.spec.hybrid and not r.spec.rerank and not r.spec.source]
    baseline = max(singles, key=lambda r: r.metrics["nDCG@10"]) if singles else None
    for row in rows:
        if baseline is not None and row is not baseline:
            row.p_value = paired_significance(
                row.per_query, baseline.per_query, n_resamples=config.significance_resamples
            )
    return rows, baseline


def _result(
    dataset: str | os.PathLike[str] | RetrievalDataset,
    config: BenchConfig,
    loaded: _Loaded,
    indexed: _Indexed,
    rows: list[RowResult],
    baseline: RowResult | None,
) -> BenchResult:
    """The :class:`BenchResult` of a run: its rows and what produced them (dataset, settings, index, cache)."""
    data = loaded.data
    return BenchResult(
        dataset={
            "name": data.name,
            "spec": str(dataset) if not isinstance(dataset, RetrievalDataset) else data.name,
            "fingerprint": loaded.fingerprint,
            "documents": len(loaded.docs),
            "queries": len(data.queries),
            "evaluated_queries": len(loaded.qrels),
            "run_queries": len(loaded.qids),
        },
        rel_threshold=config.rel_threshold,
        measures={short: str(measure) for short, measure in measures(config.rel_threshold).items()},
        rows=rows,
        baseline=baseline.name if baseline else None,
        settings=_settings(config, loaded, indexed.index),
        index={
            "backend": config.index_backend,
            "location": str(indexed.index.location),
            "reused": indexed.reused,
            "bytes": indexed.sizes,
        },
        cache=indexed.cache_hits,
    )


def _settings(config: BenchConfig, loaded: _Loaded, index: Any) -> dict[str, Any]:
    """The ``settings`` of results.json: the models and the retrieval options every row ran with."""
    sparse, dense, reranker = loaded.sparse, loaded.dense, loaded.reranker
    return {
        "sparse": sparse.settings() if sparse else None,
        "dense": dense.settings() if dense else None,
        "sparse_max_seq_length": sparse.max_seq_length if sparse else None,
        "dense_max_seq_length": dense.max_seq_length if dense else None,
        "reranker": reranker.name if reranker else None,
        "rerank_top_n": config.rerank_top_n if reranker else None,
        "top_k": config.top_k,
        "prefetch_k": config.prefetch_k,
        "rrf_k": config.rrf_k,
        "exact": not config.sparse_ann,
        "sparse_ann": (index.meta.sparse_ann or None) if config.sparse_ann else None,
        "client_fusion": config.client_fusion,
        "explain_hits": False,
        "query_threads": config.query_threads,
        "split": config.split,
    }
