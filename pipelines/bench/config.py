"""The options of one benchmark run, in one value: :class:`BenchConfig`, checked before anything slow."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hybrid_search.constants import DEFAULT_RRF_K
from hybrid_search.encoders import DenseEncoder, SparseEncoder
from hybrid_search.models import is_none as _is_none
from hybrid_search.rerank import Reranker

from .cache import BACKENDS
from .rows import RowSpec, parse_hybrid, parse_weights, plan_rows
from .tuned import TUNED, check_tune_split

DEFAULT_OUT = ".hybrid-search/bench"


@dataclass(frozen=True)
class BenchConfig:
    """How to benchmark a dataset: the models, the rows, the index and the outputs.

    Attributes:
        sparse, dense: model names or loaded encoders; ``None`` (or ``"none"``) leaves a channel out.
        reranker: a cross-encoder name/folder or a :class:`~hybrid_search.rerank.Reranker`; adds a
            ``+ reranker`` copy of every row.
        hybrid: channel combinations to fuse, e.g. ``"sparse+dense,sparse+dense+bm25"`` (default
            sparse+dense when both models are given).
        fusions: fusion methods for the hybrid combinations (``rrf``, ``dbsf``, ``convex``, ``zscore``), and
            ``tuned``: a row of the fusion ``hybrid-search tune`` chooses on ``tune_split`` (see
            :mod:`pipelines.bench.tuned`; added anyway when the index carries a tuned fusion).
        tune_split: the qrels split ``tuned`` learns on; must differ from ``split``.
        weighted: weighted-RRF rows, e.g. ``["sparse=2,dense=1"]``.
        bm25: include the BM25 row.
        index_backend: ``qdrant-edge`` (an exact-search index folder under ``out``) or ``qdrant-local``
            (qdrant-client in memory).
        out: output folder (default ``.hybrid-search/bench/<dataset>``).
        rel_threshold: minimum grade that counts as relevant for MRR, MAP and recall.
        client_fusion: fuse in Python instead of in the engine; gives the same numbers.
        top_k: cut every row's ranking to this many hits before evaluation. ``None`` (default)
            evaluates everything retrieved: a single channel's top ``prefetch_k`` and a fusion's
            whole candidate list (up to ``prefetch_k`` × channels), as the reference figures do.
        prefetch_k: hits retrieved per channel (for a fusion: candidates per channel before fusing).
        rrf_k: the RRF constant (ranks start at 1).
        rerank_top_n: candidates the cross-encoder rescores.
        split: qrels split of a BEIR folder.
        max_queries: evaluate only the first N judged queries (quick runs).
        cache: ``True`` for the default embedding cache, a folder, an
            :class:`~pipelines.embedding_cache.EmbeddingCache`, or ``False`` to always encode.
        significance_resamples: resamples of the randomisation test.
        query_threads: torch threads while queries are timed (``None``: leave torch's setting). One
            thread measures per-query latency the way a server handling concurrent requests sees it,
            and keeps it stable on a busy machine: with two threads on two shared cores, SPLADE-tiny
            query encoding here swung between 8 and 240 ms.
        sparse_ann: ``"seismic"``: the sparse channel (alone and in every fusion) is served by a Seismic
            accelerator built beside the benchmark's index (``indexers/seismic.py``) instead of exact search.
        progress: progress bars on stderr.
    """

    sparse: str | SparseEncoder | None = "splade-tiny"
    dense: str | DenseEncoder | None = "minilm"
    reranker: str | Reranker | None = None
    hybrid: str | Sequence[str] | Sequence[Sequence[str]] | None = None
    fusions: Sequence[str] = ("rrf",)
    tune_split: str = "train"
    weighted: Sequence[str | Mapping[str, float]] = ()
    bm25: bool = True
    index_backend: str = "qdrant-edge"
    out: str | os.PathLike[str] | None = None
    rel_threshold: int = 1
    client_fusion: bool = False
    top_k: int | None = None
    prefetch_k: int = 100
    rrf_k: float = DEFAULT_RRF_K
    rerank_top_n: int = 100
    split: str = "test"
    max_queries: int | None = None
    cache: bool | str | os.PathLike[str] | Any = True
    significance_resamples: int = 10000
    query_threads: int | None = 1
    sparse_ann: str | None = None
    progress: bool = True

    def plan(self) -> list[RowSpec]:
        """Check the options and plan the rows, before anything slow: a typo should not cost a corpus encoding.

        Raises:
            ValueError: inconsistent options, e.g. a hybrid combination without its model.
        """
        if self.index_backend not in BACKENDS:
            raise ValueError(f"unknown index backend {self.index_backend!r}; choose one of {', '.join(BACKENDS)}")
        if (self.top_k is not None and self.top_k < 1) or self.prefetch_k < 1 or self.rerank_top_n < 1:
            raise ValueError("top_k, prefetch_k and rerank_top_n must be positive")
        check_tune_split(self)
        combos = parse_hybrid(self.hybrid) if self.hybrid is not None else None
        weight_maps = [parse_weights(w) for w in self.weighted]
        available = [c for c, model in (("sparse", self.sparse), ("dense", self.dense)) if not _is_none(model)]
        if not available:
            raise ValueError("the benchmark index needs a sparse or a dense model (--sparse / --dense)")
        return plan_rows(
            available,
            hybrid=combos,
            fusions=[f for f in self.fusions if f != TUNED],
            weighted=weight_maps,
            bm25=self.bm25,
            rerank=self.reranker is not None,
        )


def _load_encoder(kind: str, value: Any, **options: Any) -> Any:
    """None for 'none', a loaded encoder for a name (``options`` go to its ``load``), else ``value`` itself."""
    if _is_none(value):
        return None
    if isinstance(value, str):
        return SparseEncoder.load(value, **options) if kind == "sparse" else DenseEncoder.load(value, **options)
    return value
