""" "Why not this document?": where one document stands in each channel and in the fusion, and what it
would take to reach the top k.

:func:`why_not` scores the document exactly in every channel, even far beyond the prefetch depth: its
sparse score from its stored sparse vector, its dense score from its text encoded again (the engine's own
score when the deep search reaches it), its BM25 score from the BM25 channel. Its rank in a channel is its
position in a search deep enough to pass it (1 + the documents that score higher, ties ordered by id as
every ranking here is). Then it re-fuses with the same formulas as :mod:`hybrid_search.fusion`: the fused
score the document had (or would have had, had every channel passed it on), the score of the k-th hit it
had to beat, and the smallest prefetch depth, or the smallest weight of each channel, that would have put
it in the top k. The token rows come from :func:`hybrid_search.explain.explain`.

Example:
    >>> report = why_not(searcher, "what is the mercury planet made of", "demo-045")  # doctest: +SKIP
    >>> report.channels["sparse"].rank, report.fused_rank, report.kth_score  # doctest: +SKIP
    (2, 3, 0.0320)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from hybrid_search.encoders.bm25 import tokenize
from hybrid_search.explain import explain
from hybrid_search.fusion import fuse
from hybrid_search.index import IndexStateError
from hybrid_search.options import SearchOptions
from hybrid_search.tuning import FusionSetting
from hybrid_search.types import Ranking, TokenContribution

#: Weight multipliers tried, per channel, to find the one that would have lifted the document into the top k.
WEIGHT_STEPS = (1.25, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0, 64.0, 128.0)
#: The deepest a channel is searched to rank the document (beyond it, its rank is reported as a bound).
MAX_DEPTH = 100_000


class DocumentNotFoundError(IndexStateError):
    """The document id is not in the index."""


@dataclass
class ChannelStanding:
    """The document in one channel.

    Attributes:
        score: its exact score there (0 when it shares nothing with the query, for sparse and BM25).
        rank: 1 + the documents ranked above it; for a score of 0 in sparse or BM25, the rank after every
            document that matched at all (the channel does not return it).
        returned: whether the channel returns it at all (a sparse or BM25 score above 0, or any dense score).
        in_prefetch: whether it was among the channel's top ``prefetch_k``, i.e. a fusion candidate.
    """

    score: float
    rank: int
    returned: bool
    in_prefetch: bool


@dataclass
class WhyNot:
    """The report of :func:`why_not`; :meth:`to_dict` is what ``explain --json`` prints."""

    query: str
    doc_id: str
    k: int
    setting: dict[str, Any]
    channels: dict[str, ChannelStanding]
    in_top_k: bool
    fused_rank: int | None
    fused_score: float | None
    fused_score_if_prefetched: float | None
    kth_score: float | None
    top_k: list[tuple[str, float]]
    matched_tokens: list[TokenContribution] = field(default_factory=list)
    missing_tokens: list[tuple[str, float]] = field(default_factory=list)
    matched_words: list[str] = field(default_factory=list)
    missing_words: list[str] = field(default_factory=list)
    enters_at_prefetch_k: int | None = None
    enters_at_weight: dict[str, float | None] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def deep_rank(
    search: Callable[[int], Ranking], doc_id: str, score: float, *, start: int, total: int
) -> tuple[int, Ranking, bool]:
    """The document's rank in a channel: searched deeper (×4 each time) until the ranking passes it.

    Args:
        search: ``depth -> ranking`` of the channel for the query.
        doc_id, score: the document and its exact score in this channel.
        start: the first depth tried; total: the number of documents (the deepest useful search).

    Returns:
        ``(rank, the deepest ranking searched, whether the channel returned the document)``.
    """
    depth = max(1, min(start, total))
    while True:
        ranking = search(depth)
        for position, hit in enumerate(ranking, start=1):
            if hit.id == doc_id:
                return position, ranking, True
        exhausted = len(ranking) < depth or depth >= min(total, MAX_DEPTH)
        if exhausted or (ranking and ranking[-1].score < score):
            above = sum(1 for h in ranking if h.score > score or h.score == score and h.id < doc_id)
            return above + 1, ranking, False
        depth = min(depth * 4, total, MAX_DEPTH)


def _fused(
    setting: FusionSetting, rankings: Mapping[str, Ranking], depth: int, weights: Mapping[str, float] | None = None
) -> Ranking:
    cut = {c: rankings[c][:depth] for c in setting.channels}
    if not setting.fused:
        return cut[setting.channels[0]]
    return fuse(setting.method or "rrf", cut, k=setting.rrf_k, weights=weights or setting.weight_map)


def _position(ranking: Ranking, doc_id: str) -> int | None:
    return next((i for i, h in enumerate(ranking, start=1) if h.id == doc_id), None)


def why_not(searcher: Any, query: str, doc_id: str, setting: FusionSetting | None = None, k: int = 10) -> WhyNot:
    """Explain where ``doc_id`` stands for ``query`` under ``setting``.

    Args:
        searcher: a :class:`~hybrid_search.retrieval.HybridSearcher` (its index and encoders are used).
        query: the query text.
        doc_id: the corpus id of the document.
        setting: the fusion to explain (channels, method, RRF k, weights, prefetch depth); default: what a
            search on this index runs when not told otherwise (:meth:`SearchOptions.for_index`: the index's
            tuned fusion, else RRF over :func:`~hybrid_search.options.default_channels`).
        k: the size of the page the document did or did not make.

    Raises:
        DocumentNotFoundError: the index has no document ``doc_id``.
        ValueError: the setting fuses a channel this index or searcher cannot serve.
    """
    index = searcher.index
    entry = _stored_document(index, doc_id)
    available = available_channels(searcher)
    setting = setting or FusionSetting.from_options(SearchOptions.for_index(index.meta), available)
    missing = [c for c in setting.channels if c not in available]
    if missing:
        raise ValueError(
            f"this index or searcher has no {', '.join(missing)} channel (channels: {', '.join(available)})"
        )
    probe = _Probe.of(searcher, query, entry, available)
    standings, deep = _standings(probe, doc_id, setting, k, index.count())
    report = _fusion_report(query, doc_id, setting, k, standings, deep)
    _add_tokens(report, searcher, query, entry, probe.qsparse)
    return report


def why_not_for(searcher: Any, query: str, doc_id: str, options: SearchOptions) -> WhyNot:
    """:func:`why_not` for what a search with ``options`` runs: their channels, fusion, weights, prefetch depth
    and ``k``. How ``explain --doc`` and the UI's "why not this document?" panel ask."""
    return why_not(
        searcher, query, doc_id, FusionSetting.from_options(options, available_channels(searcher)), options.k
    )


def available_channels(searcher: Any) -> list[str]:
    """The channels this searcher can run on its index: BM25 always, a vector channel when the index was
    built with it and the searcher has its model."""
    meta = searcher.index.meta
    return [
        c for c in ("sparse", "dense", "bm25") if c == "bm25" or getattr(meta, c) and getattr(searcher, c) is not None
    ]


def _stored_document(index: Any, doc_id: str) -> Any:
    stored = index.fetch([doc_id], sparse=bool(index.meta.sparse))
    if not stored:
        raise DocumentNotFoundError(f"no document with id {doc_id!r} in the index at {index.location}")
    return stored[0]


@dataclass
class _Probe:
    """The query as each channel sees it, the document's exact score there, and each channel's search."""

    qsparse: Any
    exact: dict[str, float]
    searches: dict[str, Callable[[int], Ranking]]

    @classmethod
    def of(cls, searcher: Any, query: str, entry: Any, available: list[str]) -> _Probe:
        index = searcher.index
        qsparse = searcher.sparse.encode_query([query])[0] if "sparse" in available else None
        qdense = searcher.dense.encode_query([query])[0] if "dense" in available else None
        exact = {}
        if qsparse is not None and entry.sparse is not None:
            exact["sparse"] = qsparse.dot(entry.sparse)
        if qdense is not None:
            vector = searcher.dense.encode_document([entry.document.full_text])[0]
            exact["dense"] = float(np.dot(np.asarray(qdense, dtype=np.float64), np.asarray(vector, dtype=np.float64)))
        searches: dict[str, Callable[[int], Ranking]] = {
            "sparse": lambda d: index.search_sparse(qsparse, d),
            "dense": lambda d: index.search_dense(qdense, d),
            "bm25": lambda d: index.search_bm25(query, d),
        }
        return cls(qsparse, exact, {c: searches[c] for c in available})


def _standings(
    probe: _Probe, doc_id: str, setting: FusionSetting, k: int, total: int
) -> tuple[dict[str, ChannelStanding], dict[str, Ranking]]:
    """The document's standing in every channel, and each channel's ranking searched deep enough to pass it."""
    start = max(setting.prefetch_k, k, 100)
    standings: dict[str, ChannelStanding] = {}
    deep: dict[str, Ranking] = {}
    for channel, search in probe.searches.items():
        score = probe.exact.get(channel, 0.0)
        rank, deep[channel], returned = deep_rank(search, doc_id, score, start=start, total=total)
        if returned:  # the engine's own score, so that it compares exactly with its neighbours
            score = deep[channel][rank - 1].score
        elif channel == "bm25":
            score = 0.0  # BM25 returns every document with a positive score
        standings[channel] = ChannelStanding(float(score), rank, returned, returned and rank <= setting.prefetch_k)
    # Every fused channel as deep as the document's deepest rank, so that re-fusing at that depth is exact.
    need = max((standings[c].rank for c in setting.channels if standings[c].returned), default=0)
    for channel in setting.channels:
        if len(deep[channel]) < min(need, total) and len(deep[channel]) >= start:
            deep[channel] = probe.searches[channel](min(need, total, MAX_DEPTH))
    return standings, deep


def _add_tokens(report: WhyNot, searcher: Any, query: str, entry: Any, qsparse: Any) -> None:
    """The sparse tokens the document matches and lacks, and the query words in and missing from its text."""
    if qsparse is not None and entry.sparse is not None:
        lexical = (
            entry.lexical if entry.lexical is not None else searcher.sparse.text_token_ids(entry.document.full_text)
        )
        report.matched_tokens = explain(qsparse, entry.sparse, searcher.sparse.token, lexical)
        have = set(entry.sparse.indices.tolist())
        report.missing_tokens = [(t, w) for t, w in _query_tokens(searcher.sparse, qsparse, have)]
    words = list(dict.fromkeys(tokenize(query)))
    text_words = set(tokenize(entry.document.full_text))
    report.matched_words = [w for w in words if w in text_words]
    report.missing_words = [w for w in words if w not in text_words]


def _query_tokens(encoder: Any, qsparse: Any, have: set[int]) -> list[tuple[str, float]]:
    order = np.argsort(-qsparse.values, kind="stable")
    return [
        (encoder.token(int(qsparse.indices[i])), float(qsparse.values[i]))
        for i in order
        if int(qsparse.indices[i]) not in have
    ]


def _fusion_report(
    query: str,
    doc_id: str,
    setting: FusionSetting,
    k: int,
    standings: Mapping[str, ChannelStanding],
    deep: Mapping[str, Ranking],
) -> WhyNot:
    """The fused side of :func:`why_not`: pure, over the channel standings and deep rankings."""
    fused = _fused(setting, deep, setting.prefetch_k)
    position = _position(fused, doc_id)
    kth = fused[k - 1].score if len(fused) >= k else None
    # "Had every channel passed it on": each list that returns it searched down to its exact rank.
    placed = {
        c: deep[c][: max(setting.prefetch_k, standings[c].rank if standings[c].returned else 0)]
        for c in setting.channels
    }
    if_prefetched = next(
        (h.score for h in _fused(setting, placed, max(map(len, placed.values()), default=0)) if h.id == doc_id), None
    )
    report = WhyNot(
        query=query,
        doc_id=doc_id,
        k=k,
        setting=setting.to_record(),
        channels=dict(standings),
        in_top_k=position is not None and position <= k,
        fused_rank=position,
        fused_score=fused[position - 1].score if position else None,
        fused_score_if_prefetched=if_prefetched,
        kth_score=kth,
        top_k=[(h.id, h.score) for h in fused[:k]],
    )
    if report.in_top_k:
        report.notes.append(f"it is in the top {k} (rank {position})")
        report.enters_at_prefetch_k = setting.prefetch_k
        return report
    if (
        report.fused_score is not None
        and kth is not None
        and abs(report.fused_score - kth) <= 1e-12 * max(1.0, abs(kth))
    ):
        report.notes.append(f"its fused score ties with the #{k} hit's; ties are broken by document id")
    report.enters_at_prefetch_k = _entering_depth(setting, doc_id, k, standings, deep)
    if setting.fused:
        report.enters_at_weight = _entering_weights(setting, doc_id, k, standings, deep)
    returned = [c for c in setting.channels if standings[c].returned]
    if not returned:
        report.notes.append("no channel of this fusion returns it at all: it shares no term with the query")
    return report


def _entering_depth(
    setting: FusionSetting, doc_id: str, k: int, standings: Mapping[str, ChannelStanding], deep: Mapping[str, Ranking]
) -> int | None:
    """The smallest prefetch depth (among the document's own channel ranks) that puts it in the top k."""
    for depth in sorted({standings[c].rank for c in setting.channels if standings[c].returned}):
        if depth <= setting.prefetch_k:
            continue
        ranking = _fused(setting, deep, depth)
        position = _position(ranking, doc_id)
        if position is not None and position <= k:
            return depth
    return None


def _entering_weights(
    setting: FusionSetting, doc_id: str, k: int, standings: Mapping[str, ChannelStanding], deep: Mapping[str, Ranking]
) -> dict[str, float | None]:
    """Per channel it is a candidate in: the smallest weight (others unchanged) that puts it in the top k."""
    base = setting.weight_map or {c: 1.0 for c in setting.channels}
    out: dict[str, float | None] = {}
    for channel in setting.channels:
        out[channel] = None
        if not standings[channel].in_prefetch:
            continue
        for step in WEIGHT_STEPS:
            weights = {**base, channel: base[channel] * step}
            position = _position(_fused(setting, deep, setting.prefetch_k, weights), doc_id)
            if position is not None and position <= k:
                out[channel] = base[channel] * step
                break
    return out
