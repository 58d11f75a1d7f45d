"""The retrieval pipeline: encode → retrieve per channel → fuse → rerank → page → explain.

Example:
    >>> from hybrid_search.retrieval import HybridSearcher
    >>> from hybrid_search.options import SearchOptions
    >>> searcher = HybridSearcher(index, sparse=SparseEncoder.load("splade-tiny"), dense=DenseEncoder.load("minilm"))  # doctest: +SKIP
    >>> result = searcher.search("what is the capital of france", SearchOptions(k=5))  # doctest: +SKIP
    >>> result.hits[0].explanation[0].token  # doctest: +SKIP
    'paris'
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from hybrid_search.constants import CHANNELS, MODES, TIMING_PARENTS  # noqa: F401 - MODES, TIMING_PARENTS re-exported
from hybrid_search.encoders.dense import DenseEncoder
from hybrid_search.encoders.sparse import SparseEncoder
from hybrid_search.explain import explain
from hybrid_search.fusion import Terms, fusion_terms, rank_terms, term_total
from hybrid_search.index import SearchIndex, StoredDocument, who_fuses
from hybrid_search.options import SearchOptions
from hybrid_search.rerank import Reranker
from hybrid_search.types import Hit, Ranking


class EmptyQueryError(ValueError):
    pass


@dataclass
class SearchResult:
    """Hits plus what the UI and CLI show around them.

    Attributes:
        timings_ms: milliseconds per stage; ``encode_sparse`` and ``encode_dense`` are parts of ``encode``
            (:data:`TIMING_PARENTS`), so the stages do not add up to :attr:`total_ms`.
        total_ms: the search's wall time, measured once.
        fused_by: ``engine`` or ``client`` for a fused search, ``None`` for one channel.
        fusion_source: where the fusion settings came from (see :class:`~hybrid_search.options.SearchOptions`).
        fusion_residual: for an engine-fused search with per-channel rankings, the largest difference
            between a hit's engine score and the sum of its :attr:`Hit.fusion_terms` (0 up to rounding);
            ``None`` when there are no terms to check.
    """

    query: str
    mode: str
    hits: list[Hit]
    timings_ms: dict[str, float] = field(default_factory=dict)
    channel_rankings: dict[str, list[str]] = field(default_factory=dict)
    fused_ranking: list[str] = field(default_factory=list)
    query_tokens: list[tuple[str, float]] = field(default_factory=list)
    fused_by: str | None = None
    fusion_source: str = "default"
    total_ms: float = 0.0
    fusion_residual: float | None = None
    options: dict[str, Any] = field(default_factory=dict)

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


@dataclass
class _Run:
    """One search in progress: what each step of :meth:`HybridSearcher.search` hands to the next."""

    text: str
    options: SearchOptions
    channels: list[str]
    clock: _Clock = field(default_factory=_Clock)
    sparse: Any = None
    dense: Any = None
    fused_by: str | None = None
    rankings: dict[str, Ranking] = field(default_factory=dict)
    terms: Terms = field(default_factory=dict)
    fused: Ranking = field(default_factory=list)
    depth: int = 0
    stored: dict[str, StoredDocument] = field(default_factory=dict)
    stored_vectors: bool = False  # whether ``stored`` holds the sparse vectors an explanation needs

    @property
    def weights(self) -> dict[str, float] | None:
        return self.options.weights_for(self.channels)


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

    def available_channels(self) -> list[str]:
        """The channels this searcher can run: those the index has and a model is loaded for, and BM25."""
        loaded = {"sparse": self.sparse, "dense": self.dense}
        return [c for c in CHANNELS if c == "bm25" or (loaded[c] is not None and getattr(self.index.meta, c))]

    def options(self, options: SearchOptions | int | None = None, **keywords: Any) -> SearchOptions:
        """The options a search runs with: ``options`` as given, else the index's defaults with ``keywords``.

        ``keywords`` are :class:`~hybrid_search.options.SearchOptions` fields (and ``explain_hits``, the old
        name of ``explain``); an ``int`` in place of ``options`` is ``k``, as it was before the options.
        """
        if isinstance(options, SearchOptions):
            return options.with_(**keywords) if keywords else options
        if options is not None:
            keywords["k"] = options
        return SearchOptions.for_index(self.index.meta, **keywords)

    def search(self, query: str, options: SearchOptions | int | None = None, /, **keywords: Any) -> SearchResult:
        """Search: encode the query, retrieve each channel, fuse, rerank, page and explain.

        Args:
            query: the query text; empty or whitespace-only raises :class:`EmptyQueryError`.
            options: a :class:`~hybrid_search.options.SearchOptions`; without it, the index's defaults (and a
                fusion learned for it) with ``keywords`` (``k=5, mode="dense"``, ...) on top.
        """
        if not query or not query.strip():
            raise EmptyQueryError("the query is empty; type some words to search for")
        opts = self.options(options, **keywords)
        run = _Run(query, opts, opts.channels_for(self.available_channels()))
        self.index.meta.check_filters(opts.filters)
        run.depth = max(opts.k, opts.rerank_top_n if opts.rerank and self.reranker else opts.k)
        start = time.perf_counter()
        self._encode(run)
        self._decide(run)
        self._retrieve(run)
        self._fuse(run)
        order, rerank_scores = self._rerank(run)
        hits, residual = self._page(run, order, rerank_scores)
        self._explain_page(run, hits)
        # An index with a sparse accelerator (indexers.seismic) reports which sparse path ran and its cost.
        run.clock.timings.update(getattr(self.index, "pop_timings", dict)())
        total = (time.perf_counter() - start) * 1000
        return SearchResult(
            query=query,
            mode=opts.mode,
            hits=hits,
            timings_ms=run.clock.timings,
            channel_rankings={c: [h.id for h in rk] for c, rk in run.rankings.items()},
            fused_ranking=[h.id for h in run.fused],
            query_tokens=self._sparse_model().decode(run.sparse, top_k=30) if run.sparse is not None else [],
            fused_by=run.fused_by,
            fusion_source=opts.fusion_source,
            total_ms=total,
            fusion_residual=residual,
            options=opts.to_dict(),
        )

    # --- the steps ----------------------------------------------------------------------------
    def _encode(self, run: _Run) -> None:
        """The query's sparse vector (also for explanations) and dense vector, as the channels need them."""
        wanted, clock = run.channels, run.clock
        need_sparse = self.sparse is not None and (
            "sparse" in wanted or run.options.explain and bool(self.index.meta.sparse)
        )
        with clock("encode"):
            # Both query encoders release the GIL in their matrix products: the dense one runs on a
            # second thread while the sparse one runs here, so the encoding costs the slower of the two.
            # An inference-free sparse query is a table lookup: then the dense encoder runs alone, on
            # every core.
            beside = "dense" in wanted and need_sparse and not self._sparse_model().query_is_lookup
            dense_job = self._encoder_thread().submit(self._encode_dense, run.text, clock, False) if beside else None
            if need_sparse:
                with clock("encode_sparse"):
                    run.sparse = self._sparse_model().encode_query([run.text])[0]
            if dense_job is not None:
                run.dense = dense_job.result()
            elif "dense" in wanted:
                run.dense = self._encode_dense(run.text, clock, True)

    def _decide(self, run: _Run) -> None:
        """Ask once who fuses (:func:`~hybrid_search.index.who_fuses`); the result records the answer."""
        opts = run.options
        sparse_empty = "sparse" in run.channels and (run.sparse is None or run.sparse.nnz == 0)
        run.fused_by = who_fuses(
            self.index,
            run.channels,
            opts.fusion,
            weights=run.weights,
            rrf_k=opts.rrf_k,
            engine_fusion=opts.engine_fusion,
            sparse_empty=sparse_empty,
        )

    def _retrieve(self, run: _Run) -> None:
        """Each channel's ranking, once: what client fusion fuses and what every hit's ranks come from.

        An engine-fused search without ``channel_ranks`` needs none: the engine's one query does it all.
        """
        if run.fused_by == "engine" and not run.options.channel_ranks:
            return
        depth = run.options.prefetch_k if len(run.channels) > 1 else run.depth
        filters = run.options.filters
        for channel in run.channels:
            with run.clock(f"search_{channel}"):
                if channel == "sparse":
                    run.rankings[channel] = self.index.search_sparse(run.sparse, depth, filters)
                elif channel == "dense":
                    run.rankings[channel] = self.index.search_dense(run.dense, depth, filters)
                else:
                    run.rankings[channel] = self.index.search_bm25(run.text, depth, filters)

    def _fuse(self, run: _Run) -> None:
        """One ranking: the channel's own, the engine's fusion, or the client's over the rankings it has."""
        opts = run.options
        if run.fused_by is None:
            run.fused = run.rankings[run.channels[0]][: run.depth]
            return
        with run.clock("fusion"):
            if run.rankings:
                run.terms = fusion_terms(opts.fusion, run.rankings, rrf_k=opts.rrf_k, weights=run.weights)
            if run.fused_by == "engine":
                run.fused = self.index.search_engine_fused(
                    run.sparse,
                    run.dense,
                    run.depth,
                    prefetch_k=opts.prefetch_k,
                    fusion=opts.fusion,
                    rrf_k=opts.rrf_k,
                    filters=opts.filters,
                )
            else:
                run.fused = rank_terms(run.terms, run.depth)

    def _rerank(self, run: _Run) -> tuple[list[str], dict[str, float]]:
        """The page's order (cross-encoder scores for the top ``rerank_top_n`` when there is a reranker)."""
        opts = run.options
        ids = [h.id for h in run.fused]
        # Without a reranker the fused list is the page: its documents, sparse vectors and lexical ids
        # come back in one engine round trip. With one, only the page's vectors are fetched, after it.
        run.stored_vectors = self._explaining(run) and len(ids) <= opts.k
        stored = run.stored = {s.document.id: s for s in self.index.fetch(ids, sparse=run.stored_vectors)}
        rerank_scores: dict[str, float] = {}
        order = ids
        if opts.rerank and self.reranker is not None and ids:
            head = ids[: opts.rerank_top_n]
            texts = [stored[i].document.full_text if i in stored else "" for i in head]
            with run.clock("rerank"):
                scores = self.reranker.rerank(run.text, texts, [h.score for h in run.fused[: len(head)]])
            rerank_scores = dict(zip(head, map(float, scores)))
            order = sorted(head, key=lambda i: -rerank_scores[i]) + ids[opts.rerank_top_n :]
        return order[: opts.k], rerank_scores

    def _page(self, run: _Run, order: list[str], rerank_scores: Mapping[str, float]) -> tuple[list[Hit], float | None]:
        """The hits, each with its channel ranks and scores and, when fused, its fusion terms."""
        fused_scores = {h.id: h.score for h in run.fused}
        positions = {c: {h.id: (r, h.score) for r, h in enumerate(rk, start=1)} for c, rk in run.rankings.items()}
        hits = []
        residual = 0.0 if run.terms and run.fused_by == "engine" else None
        for rank, doc_id in enumerate(order, start=1):
            entry = run.stored.get(doc_id)
            hit = Hit(
                id=doc_id,
                document=entry.document if entry is not None else None,
                score=rerank_scores.get(doc_id, fused_scores[doc_id]),
                rank=rank,
                fused_score=fused_scores[doc_id] if run.fused_by else None,
                rerank_score=rerank_scores.get(doc_id),
                fusion_terms=list(run.terms.get(doc_id, [])),
            )
            for channel, found in positions.items():
                if doc_id in found:
                    hit.channel_ranks[channel], hit.channel_scores[channel] = found[doc_id]
            if residual is not None:
                residual = max(residual, abs(term_total(hit.fusion_terms) - fused_scores[doc_id]))
            hits.append(hit)
        return hits, residual

    def _explaining(self, run: _Run) -> bool:
        return run.options.explain and run.sparse is not None

    def _explain_page(self, run: _Run, hits: list[Hit]) -> None:
        if not (self._explaining(run) and hits):
            return
        with run.clock("explain"):
            self._explain(run.sparse, hits, run.stored if run.stored_vectors else None)

    def _encode_dense(self, query: str, clock: _Clock, alone: bool) -> Any:
        with clock("encode_dense"):
            return self._dense_model().encode_query([query], alone=alone)[0]

    def _sparse_model(self) -> SparseEncoder:
        if self.sparse is None:  # the options' channel check keeps sparse work away from a searcher without one
            raise ValueError("this search needs a sparse model, and the searcher has none")
        return self.sparse

    def _dense_model(self) -> DenseEncoder:
        if self.dense is None:
            raise ValueError("this search needs a dense model, and the searcher has none")
        return self.dense

    def _encoder_thread(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="hybrid-search-encode")
        return self._pool

    def _explain(self, qsparse: Any, hits: list[Hit], stored: Mapping[str, StoredDocument] | None) -> None:
        if stored is None:
            stored = {s.document.id: s for s in self.index.fetch([h.id for h in hits], sparse=True)}
        # Documents indexed without lexical ids (older indexes, other writers) are tokenised here.
        untold = [h for h in hits if h.id in stored and stored[h.id].lexical is None and h.document is not None]
        texts = [h.document.full_text for h in untold if h.document is not None]
        tokenised = dict(zip((h.id for h in untold), self._sparse_model().texts_token_ids(texts))) if untold else {}
        for hit in hits:
            entry = stored.get(hit.id)
            if entry is None or entry.sparse is None:
                continue
            own = entry.lexical if entry.lexical is not None else tokenised.get(hit.id)
            hit.explanation = explain(qsparse, entry.sparse, self._sparse_model().token, own)
