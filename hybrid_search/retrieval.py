"""The retrieval pipeline: encode → retrieve per channel → fuse → rerank → explain.

Example:
    >>> from hybrid_search.retrieval import HybridSearcher
    >>> searcher = HybridSearcher(index, sparse=SparseEncoder.load("splade-tiny"), dense=DenseEncoder.load("minilm"))  # doctest: +SKIP
    >>> result = searcher.search("what is the capital of france", k=5, mode="hybrid")  # doctest: +SKIP
    >>> result.hits[0].explanation[0].token  # doctest: +SKIP
    'paris'
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from hybrid_search.encoders.dense import DenseEncoder
from hybrid_search.encoders.sparse import SparseEncoder
from hybrid_search.explain import explain
from hybrid_search.fusion import DEFAULT_RRF_K, FUSION_METHODS, fuse
from hybrid_search.index import Filters, SearchIndex, StoredDocument
from hybrid_search.rerank import Reranker
from hybrid_search.types import Hit, Ranking

MODES = ("sparse", "dense", "bm25", "hybrid")


class EmptyQueryError(ValueError):
    pass


@dataclass
class SearchResult:
    """Hits plus what the UI and CLI show around them."""

    query: str
    mode: str
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    channel_rankings: dict[str, list[str]] = field(default_factory=dict)
    fused_ranking: list[str] = field(default_factory=list)
    query_tokens: list[tuple[str, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Clock:
    """Accumulates wall time per stage: ``with clock("encode"): ...``."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + (time.perf_counter() - start) * 1000


class HybridSearcher:
    """Runs queries against an index with the models that built it.

    Args:
        index: any :class:`~hybrid_search.index.SearchIndex`.
        sparse, dense: the encoders; each must match what the index recorded, or
            :class:`~hybrid_search.index.ModelMismatchError` is raised here, before any query runs.
        reranker: an optional cross-encoder.
    """

    def __init__(
        self,
        index: SearchIndex,
        sparse: SparseEncoder | None = None,
        dense: DenseEncoder | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        index.meta.check_models(sparse.settings() if sparse else None, dense.settings() if dense else None)
        self.index = index
        self.sparse = sparse
        self.dense = dense
        self.reranker = reranker
        self._pool: ThreadPoolExecutor | None = None  # the dense query encoder's thread, made on first use

    def _channels(self, mode: str, channels: Sequence[str] | None) -> list[str]:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
        wanted = list(channels) if channels else (["sparse", "dense"] if mode == "hybrid" else [mode])
        for channel in wanted:
            if channel == "sparse" and (self.sparse is None or not self.index.meta.sparse):
                raise ValueError("sparse search needs a sparse model and an index built with one")
            if channel == "dense" and (self.dense is None or not self.index.meta.dense):
                raise ValueError("dense search needs a dense model and an index built with one")
        return wanted

    def search(
        self,
        query: str,
        k: int = 10,
        *,
        mode: str = "hybrid",
        channels: Sequence[str] | None = None,
        fusion: str = "rrf",
        rrf_k: float = DEFAULT_RRF_K,
        weights: Mapping[str, float] | None = None,
        prefetch_k: int = 100,
        filters: Filters | None = None,
        rerank: bool = True,
        rerank_top_n: int = 50,
        explain_hits: bool = True,
        engine_fusion: bool = True,
        channel_ranks: bool = True,
    ) -> SearchResult:
        """Search in one of the four modes.

        Args:
            query: the query text; empty or whitespace-only raises :class:`EmptyQueryError`.
            k: hits to return.
            mode: ``sparse``, ``dense``, ``bm25`` or ``hybrid``.
            channels: the channels a hybrid search fuses (default sparse + dense; add ``bm25`` for three).
            fusion: ``rrf``, ``dbsf`` or ``convex``; ``rrf_k`` and per-channel ``weights`` tune it.
            prefetch_k: candidates taken from each channel before fusion.
            filters: ``{field: value | [values]}`` equality filters on document metadata.
            rerank: rerank the top ``rerank_top_n`` with the cross-encoder, when there is one.
            explain_hits: decode each hit's sparse token overlap with the query.
            engine_fusion: let the engine fuse when it computes the same formula (sparse + dense only).
            channel_ranks: also run each channel on its own, to report every hit's per-channel rank and
                score. Without it, an engine-fused search is one engine query.
        """
        if not query or not query.strip():
            raise EmptyQueryError("the query is empty; type some words to search for")
        if k <= 0:
            raise ValueError("k must be positive")
        if fusion not in FUSION_METHODS:
            raise ValueError(f"unknown fusion method {fusion!r}; choose one of {', '.join(FUSION_METHODS)}")
        wanted = self._channels(mode, channels)
        self.index.meta.check_filters(filters)
        clock = _Clock()
        qsparse = qdense = None
        need_sparse = self.sparse is not None and ("sparse" in wanted or explain_hits and self.index.meta.sparse)
        with clock("encode"):
            # Both query encoders release the GIL in their matrix products: the dense one runs on a
            # second thread while the sparse one runs here, so the encoding costs the slower of the two.
            # An inference-free sparse query is a table lookup: then the dense encoder runs alone, on
            # every core.
            beside = "dense" in wanted and need_sparse and not self.sparse.query_is_lookup
            dense_job = self._encoder_thread().submit(self._encode_dense, query, clock, False) if beside else None
            if need_sparse:
                with clock("encode_sparse"):
                    qsparse = self.sparse.encode_query([query])[0]
            if dense_job is not None:
                qdense = dense_job.result()
            elif "dense" in wanted:
                qdense = self._encode_dense(query, clock, True)

        depth = max(k, rerank_top_n if rerank and self.reranker else k)
        engine_fused = engine_fusion and set(wanted) == {"sparse", "dense"}
        rankings: dict[str, Ranking] = {}
        for channel in wanted if channel_ranks or not engine_fused else []:
            with clock(f"search_{channel}"):
                if channel == "sparse":
                    rankings[channel] = self.index.search_sparse(qsparse, prefetch_k if len(wanted) > 1 else depth, filters)
                elif channel == "dense":
                    rankings[channel] = self.index.search_dense(qdense, prefetch_k if len(wanted) > 1 else depth, filters)
                else:
                    rankings[channel] = self.index.search_bm25(query, prefetch_k if len(wanted) > 1 else depth, filters)

        if len(wanted) == 1:
            fused = rankings[wanted[0]][:depth]
        else:
            with clock("fusion"):
                if engine_fused:
                    fused = self.index.search_hybrid(
                        qsparse, qdense, depth, prefetch_k=prefetch_k, fusion=fusion, rrf_k=rrf_k,
                        weights=weights, filters=filters,
                    )
                else:
                    fused = fuse(fusion, rankings, k=rrf_k, weights=weights, limit=depth)

        ids = [h.id for h in fused]
        explaining = explain_hits and qsparse is not None
        # Without a reranker the fused list is the page: its documents, sparse vectors and lexical ids
        # come back in one engine round trip. With one, only the page's vectors are fetched, after it.
        page_only = explaining and len(ids) <= k
        stored = {s.document.id: s for s in self.index.fetch(ids, sparse=page_only)}
        docs = {i: s.document for i, s in stored.items()}
        rerank_scores: dict[str, float] = {}
        order = ids
        if rerank and self.reranker is not None and ids:
            head = ids[:rerank_top_n]
            with clock("rerank"):
                scores = self.reranker.score(query, [docs[i].full_text if i in docs else "" for i in head])
            rerank_scores = dict(zip(head, map(float, scores)))
            order = sorted(head, key=lambda i: -rerank_scores[i]) + ids[rerank_top_n:]
        order = order[:k]

        fused_scores = {h.id: h.score for h in fused}
        channel_pos = {c: {h.id: (r, h.score) for r, h in enumerate(rk, start=1)} for c, rk in rankings.items()}
        hits = []
        for rank, doc_id in enumerate(order, start=1):
            hit = Hit(
                id=doc_id,
                document=docs.get(doc_id),
                score=rerank_scores.get(doc_id, fused_scores[doc_id]),
                rank=rank,
                fused_score=fused_scores[doc_id] if len(wanted) > 1 else None,
                rerank_score=rerank_scores.get(doc_id),
            )
            for channel, positions in channel_pos.items():
                if doc_id in positions:
                    hit.channel_ranks[channel], hit.channel_scores[channel] = positions[doc_id]
            hits.append(hit)

        if explaining and hits:
            with clock("explain"):
                self._explain(qsparse, hits, stored if page_only else None)
        # An index with a sparse accelerator (indexers.seismic) reports which sparse path ran and its cost.
        clock.timings.update(getattr(self.index, "pop_timings", dict)())

        return SearchResult(
            query=query,
            mode=mode,
            hits=hits,
            timings_ms=clock.timings,
            channel_rankings={c: [h.id for h in rk] for c, rk in rankings.items()},
            fused_ranking=ids,
            query_tokens=self.sparse.decode(qsparse, top_k=30) if qsparse is not None else [],
        )

    def _encode_dense(self, query: str, clock: _Clock, alone: bool) -> Any:
        with clock("encode_dense"):
            return self.dense.encode_query([query], alone=alone)[0]

    def _encoder_thread(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="hybrid-search-encode")
        return self._pool

    def _explain(self, qsparse: Any, hits: list[Hit], stored: Mapping[str, StoredDocument] | None) -> None:
        if stored is None:
            stored = {s.document.id: s for s in self.index.fetch([h.id for h in hits], sparse=True)}
        # Documents indexed without lexical ids (older indexes, other writers) are tokenised here.
        untold = [h for h in hits if h.id in stored and stored[h.id].lexical is None and h.document is not None]
        tokenised = dict(zip((h.id for h in untold), self.sparse.texts_token_ids(
            [h.document.full_text for h in untold]))) if untold else {}
        for hit in hits:
            entry = stored.get(hit.id)
            if entry is None or entry.sparse is None:
                continue
            own = entry.lexical if entry.lexical is not None else tokenised.get(hit.id)
            hit.explanation = explain(qsparse, entry.sparse, self.sparse.token, own)
