"""How a row is measured: every query through the real searcher, timed, with a deterministic ranking.

The run of a row holds rank scores of a canonical order (ties broken by document id, as trec_eval
does), so that engine and client fusion give the same numbers; latency is per query through
:meth:`~hybrid_search.retrieval.HybridSearcher.search`, after one warm-up encoding of each query.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_search.encoders import DenseEncoder, SparseEncoder, tokenize
from hybrid_search.options import SearchOptions
from hybrid_search.types import Document, Hit, SparseVector

from .rows import RowSpec

#: Relative tolerance under which two scores count as tied: the engine sums RRF terms in float32,
#: Python in float64, so the "same" score differs in the last bits between the two fusion paths.
TIE_TOLERANCE = 1e-6


def canonical_order(hits: Sequence[Hit], *, tol: float = TIE_TOLERANCE) -> list[str]:
    """The hits' order with ties made deterministic, so that every fusion path gives the same run.

    Hits whose scores agree within a relative ``tol`` form a tie group (reranked hits and the
    fused tail behind them are never grouped together), and a tie group is ordered by document id,
    descending: the order in which trec_eval, and so ir_measures, breaks ties.

    Example:
        >>> from hybrid_search.types import Hit
        >>> canonical_order([Hit("a", None, 0.5, 1), Hit("c", None, 0.5, 2), Hit("b", None, 0.4, 3)])
        ['c', 'a', 'b']
    """
    groups: list[list[Hit]] = []
    for hit in hits:
        if groups:
            prev = groups[-1][-1]
            same_segment = (prev.rerank_score is None) == (hit.rerank_score is None)
            scale = max(abs(prev.score), abs(hit.score), 1e-12)
            if same_segment and abs(prev.score - hit.score) <= tol * scale:
                groups[-1].append(hit)
                continue
        groups.append([hit])
    return [h.id for group in groups for h in sorted(group, key=lambda h: h.id, reverse=True)]


def rank_scores(ids: Sequence[str]) -> dict[str, float]:
    """Strictly decreasing scores ``n, n-1, ...`` that make a run file reproduce ``ids``' order exactly.

    Reranked rows mix cross-encoder scores (head) with fused scores (tail), which are not comparable;
    rank-based scores keep the evaluated order for every row alike.
    """
    n = len(ids)
    return {doc_id: float(n - i) for i, doc_id in enumerate(ids)}


def latency_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95 and mean of per-query latencies in milliseconds."""
    if not len(samples_ms):
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "mean_ms": float("nan")}
    arr = np.asarray(samples_ms, dtype=np.float64)
    p50, p95 = np.percentile(arr, [50, 95])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "mean_ms": float(arr.mean())}


def disk_usage(path: str | os.PathLike[str]) -> dict[str, int]:
    """Bytes allocated on disk under ``path``, split by what they store.

    Qdrant preallocates its memory-mapped files as sparse files, so the apparent size (hundreds of MB
    for a tiny index) says nothing; allocated blocks do. Keys: ``total``, ``sparse``, ``dense``
    (vector storage and indexes of those named vectors), ``payload`` (stored texts) and ``other``
    (write-ahead log, id trackers, configuration).
    """
    out = {"total": 0, "sparse": 0, "dense": 0, "payload": 0, "other": 0}
    for root, _, files in os.walk(path):
        parts = Path(root).relative_to(path).parts
        kind = "other"
        for part in parts:
            if part.endswith("-sparse") or part == "seismic":  # the accelerator serves the sparse channel
                kind = "sparse"
            elif part.endswith("-dense"):
                kind = "dense"
            elif part.startswith("payload"):
                kind = "payload"
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            size = st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
            out["total"] += size
            out[kind] += size
    return out


def search_options(
    spec: RowSpec, *, prefetch_k: int, rrf_k: float, rerank_top_n: int, client_fusion: bool
) -> SearchOptions:
    """The :class:`SearchOptions` that run one row (a learned row keeps its own RRF k and prefetch depth)."""
    prefetch_k = spec.prefetch_k or prefetch_k
    return SearchOptions(
        # Every candidate is fetched, so a tie group at a later cut is whole whichever path fused.
        k=prefetch_k * len(spec.channels),
        mode="hybrid" if spec.hybrid else spec.channels[0],
        channels=tuple(spec.channels) if spec.hybrid else None,
        fusion=spec.fusion or "rrf",
        rrf_k=spec.rrf_k if spec.rrf_k is not None else rrf_k,
        weights=dict(spec.weights) if spec.weights else None,
        prefetch_k=prefetch_k,
        rerank=spec.rerank,
        rerank_top_n=rerank_top_n,
        # Token explanations are for people reading hits; timing them would penalise the sparse rows.
        explain=False,
        engine_fusion=not client_fusion,
        # Per-channel ranks are for display; with engine fusion the row is then one engine query.
        channel_ranks=False,
    )


def fused_by_label(labels: Sequence[str | None]) -> str | None:
    """A row's "fusion" column from what its searches recorded: ``engine``, ``client``, or both when a query
    fused elsewhere (an engine cannot prefetch a query whose sparse vector is empty).

    Example:
        >>> fused_by_label(["engine", "engine"]), fused_by_label([None]), fused_by_label(["engine", "client"])
        ('engine', None, 'engine+client')
    """
    found = [label for label in ("engine", "client") if label in labels]
    return "+".join(found) if found else None


def time_row(
    searcher: Any,
    queries: Mapping[str, str],
    options: SearchOptions,
    *,
    top_k: int | None = None,
    desc: str = "queries",
    progress: bool = True,
) -> tuple[dict[str, dict[str, float]], list[float], dict[str, float], str | None]:
    """Run every query through ``searcher.search(text, options)``, timing each call.

    Returns:
        ``(run, latencies in ms, median ms per search stage, who fused)``; the run holds rank scores of the
        canonical order (:func:`canonical_order`), cut to ``top_k`` when given; who fused is what the
        results recorded (:func:`fused_by_label`).
    """
    from tqdm.auto import tqdm

    # One untimed query first: lazy work (BM25 statistics, first reranker call) is not query latency.
    searcher.search(next(iter(queries.values())), options)
    run: dict[str, dict[str, float]] = {}
    times: list[float] = []
    stage_times: dict[str, list[float]] = {}
    fused_by: list[str | None] = []
    for qid, text in tqdm(
        list(queries.items()), desc=desc, unit="q", disable=not progress, dynamic_ncols=True, leave=False
    ):
        start = time.perf_counter()
        result = searcher.search(text, options)
        times.append((time.perf_counter() - start) * 1000)
        for stage, ms in result.timings_ms.items():
            stage_times.setdefault(stage, []).append(ms)
        fused_by.append(result.fused_by)
        run[qid] = rank_scores(canonical_order(result.hits)[:top_k])
    stages = {k: round(float(np.median(v)), 3) for k, v in stage_times.items()}
    return run, times, stages, fused_by_label(fused_by)


def _warm_up_and_count_dims(
    queries: Sequence[str],
    docs: Sequence[Document],
    sparse: SparseEncoder | None,
    sparse_vectors: Sequence[SparseVector] | None,
    dense: DenseEncoder | None,
) -> dict[str, tuple[float, float]]:
    """Encode each query once, as a search does, and return ``{channel: (avg active dims per query, per doc)}``.

    torch on CPU is slow the first time it meets an input length (about 250 ms for SPLADE-tiny here,
    against 6 ms warm), so timing a cold first pass would measure that, not the query path.
    BM25 counts distinct terms.
    """
    query_vectors = [sparse.encode_query([q])[0] for q in queries] if sparse is not None else []
    if dense is not None:
        for q in queries:
            dense.encode_query([q])
    dims = {
        "bm25": (
            float(np.mean([len(set(tokenize(q))) for q in queries])),
            float(np.mean([len(set(tokenize(d.full_text))) for d in docs])),
        )
    }
    if sparse is not None and sparse_vectors is not None:
        dims["sparse"] = (
            float(np.mean([v.nnz for v in query_vectors])),
            float(np.mean([v.nnz for v in sparse_vectors])),
        )
    if dense is not None:
        dims["dense"] = (float(dense.dimension), float(dense.dimension))
    return dims
