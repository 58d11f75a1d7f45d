"""Learning the fusion from judged queries: the candidate space, cross-validation and the decision rule.

``hybrid-search tune`` (:mod:`pipelines.tune`) computes each channel's ranking of every judged query once;
everything here is pure and works on those rankings in memory:

- :class:`FusionSetting`: one way to answer a query: a channel alone, or several fused (method, RRF k,
  per-channel weights, prefetch depth). It is also what the index's metadata records (:meth:`to_record`)
  and what front ends read back (:func:`fusion_defaults`).
- :func:`candidate_space`: the grid of settings (scikit-learn's ``ParameterGrid``), from one channel alone
  to three channels fused by RRF, DBSF, min-max convex or z-score convex.
- :class:`CandidateTable` and :func:`fused_top`: every setting re-fused for all queries at once with numpy,
  the same formulas as :mod:`hybrid_search.fusion` (the tests check they agree), so that a grid of a
  thousand settings over SciFact's 809 training queries takes about ten seconds.
- :class:`NdcgKernel`: per-query nDCG@10 of all queries at once in numpy (trec_eval's definition), so that
  scoring a setting is a few array operations; :class:`NdcgScorer` computes the same with ir_measures, and
  :func:`verify_with_ir_measures` re-scores every setting ``tune`` reports with it.
- :func:`choose`: k-fold cross-validation over the queries and the one-standard-error rule: among the
  settings whose CV score is within one standard error of the best (the error of their paired fold-wise
  difference from the best), take the simplest. A channel alone is the simplest of all, so when no fusion
  beats the best channel beyond noise, the channel is what ``tune`` recommends.
  :func:`nested_cv` estimates how well that whole procedure generalises.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from hybrid_search.fusion import DEFAULT_RRF_K
from hybrid_search.types import Ranking, ScoredId

CHANNEL_ORDER = ("sparse", "dense", "bm25")
FUSION_METHODS = ("rrf", "dbsf", "convex", "zscore")
DEFAULT_PREFETCH_K = 100
PREFETCH_DEPTHS = (25, 50, 100, 200)
RRF_KS = (10, 20, 40, 60, 100)
#: Per-channel weight levels; weights that differ only by a common factor rank alike and are kept once.
WEIGHT_LEVELS = (0.5, 1.0, 2.0)
CUTOFF = 10


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class FusionSetting:
    """One way to answer a query from the channel rankings.

    Attributes:
        channels: one channel (answered alone) or several to fuse, in :data:`CHANNEL_ORDER`.
        method: ``rrf``, ``dbsf``, ``convex`` or ``zscore``; ``None`` for a channel alone.
        rrf_k: the RRF constant (ranks from 1); only RRF reads it.
        weights: per-channel weights aligned with ``channels``, largest 1; ``None`` for equal weights.
        prefetch_k: candidates taken from each channel before fusion.
    """

    channels: tuple[str, ...]
    method: str | None = "rrf"
    rrf_k: float = DEFAULT_RRF_K
    weights: tuple[float, ...] | None = None
    prefetch_k: int = DEFAULT_PREFETCH_K

    def __post_init__(self) -> None:
        if not self.channels or any(c not in CHANNEL_ORDER for c in self.channels):
            raise ValueError(f"channels must be some of {', '.join(CHANNEL_ORDER)}; got {self.channels}")
        if len(self.channels) > 1 and self.method not in FUSION_METHODS:
            raise ValueError(f"unknown fusion method {self.method!r}; choose one of {', '.join(FUSION_METHODS)}")
        if self.weights is not None and len(self.weights) != len(self.channels):
            raise ValueError("give one weight per channel")

    @property
    def fused(self) -> bool:
        return len(self.channels) > 1

    @property
    def weight_map(self) -> dict[str, float] | None:
        return dict(zip(self.channels, self.weights)) if self.weights else None

    def complexity(self) -> tuple[int, ...]:
        """Sort key of simplicity: fewer channels first, then the defaults (RRF, k = 60, equal weights,
        prefetch 100) before anything that departs from them."""
        if not self.fused:
            return (1, 0, 0, 0, 0)
        return (
            len(self.channels),
            int(self.method != "rrf"),
            int(self.weights is not None),
            int(self.method == "rrf" and self.rrf_k != DEFAULT_RRF_K),
            int(self.prefetch_k != DEFAULT_PREFETCH_K),
        )

    @property
    def label(self) -> str:
        if not self.fused:
            return f"{self.channels[0]} alone"
        name = {"rrf": f"RRF k={self.rrf_k:g}", "dbsf": "DBSF", "convex": "min-max convex", "zscore": "z-score convex"}
        spec = "+".join(self.channels)
        if self.weights:
            spec = ",".join(f"{c}={w:g}" for c, w in zip(self.channels, self.weights))
        return f"{name[self.method or 'rrf']} ({spec}), prefetch {self.prefetch_k}"

    def to_record(self) -> dict[str, Any]:
        """The setting as the index metadata stores it (``IndexMeta.fusion`` without ``learned``)."""
        return {
            "method": self.method if self.fused else None,
            "rrf_k": float(self.rrf_k),
            "weights": self.weight_map,
            "channels": list(self.channels),
            "prefetch_k": int(self.prefetch_k),
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> FusionSetting:
        channels = tuple(c for c in CHANNEL_ORDER if c in (record.get("channels") or ()))
        weights = record.get("weights")
        return cls(
            channels=channels,
            method=record.get("method") if len(channels) > 1 else None,
            rrf_k=float(record.get("rrf_k", DEFAULT_RRF_K)),
            weights=tuple(float(weights.get(c, 1.0)) for c in channels) if weights else None,
            prefetch_k=int(record.get("prefetch_k", DEFAULT_PREFETCH_K)),
        )

    @classmethod
    def from_options(cls, options: Any, available: Sequence[str]) -> FusionSetting:
        """The setting a :class:`~hybrid_search.options.SearchOptions` runs on an index that can serve
        ``available`` channels: its channels (:meth:`~hybrid_search.options.SearchOptions.channels_for`),
        fusion method, RRF k, weights and prefetch depth. The inverse of :meth:`search_options`.

        Raises:
            ValueError: a channel the options ask for is not available.
        """
        channels = tuple(options.channels_for(available))
        given = options.weights_for(channels) if len(channels) > 1 else None
        weights = tuple(float((given or {}).get(c, 1.0)) for c in channels)
        return cls(
            channels=channels,
            method=options.fusion if len(channels) > 1 else None,
            rrf_k=float(options.rrf_k),
            weights=weights if any(w != 1.0 for w in weights) else None,
            prefetch_k=int(options.prefetch_k),
        )

    def search_options(self) -> dict[str, Any]:
        """The :meth:`~hybrid_search.retrieval.HybridSearcher.search` keyword arguments of this setting."""
        if not self.fused:
            return {"mode": self.channels[0], "channels": None, "prefetch_k": self.prefetch_k}
        return {
            "mode": "hybrid",
            "channels": list(self.channels),
            "fusion": self.method,
            "rrf_k": self.rrf_k,
            "weights": self.weight_map,
            "prefetch_k": self.prefetch_k,
        }


DEFAULT_RRF = FusionSetting(("sparse", "dense"), "rrf", DEFAULT_RRF_K, None, DEFAULT_PREFETCH_K)


def weight_vectors(n: int, levels: Sequence[float] = WEIGHT_LEVELS) -> list[tuple[float, ...] | None]:
    """Distinct weight vectors over ``n`` channels up to a common factor, scaled so the largest is 1;
    ``None`` stands for equal weights.

    Example:
        >>> weight_vectors(2)
        [None, (0.25, 1.0), (0.5, 1.0), (1.0, 0.25), (1.0, 0.5)]
    """
    from itertools import product

    seen: set[tuple[float, ...]] = set()
    for combo in product(levels, repeat=n):
        top = max(combo)
        seen.add(tuple(round(w / top, 6) for w in combo))
    equal = tuple([1.0] * n)
    return [None] + sorted(v for v in seen if v != equal)


def candidate_space(
    available: Sequence[str],
    *,
    prefetch: Sequence[int] = PREFETCH_DEPTHS,
    rrf_ks: Sequence[float] = RRF_KS,
    methods: Sequence[str] = FUSION_METHODS,
    levels: Sequence[float] = WEIGHT_LEVELS,
) -> list[FusionSetting]:
    """Every setting ``tune`` tries: each channel alone, then every combination of two or more channels
    with every method, weight vector and prefetch depth (RRF also with every k).

    A full grid (a Cartesian product; a search library adds nothing to it), enumerated in scikit-learn's
    ``ParameterGrid`` order (method, prefetch, RRF k, then weights fastest), which the choice's last tie-break
    (the setting's position) follows.
    """
    from itertools import combinations, product

    have = [c for c in CHANNEL_ORDER if c in available]
    out = [FusionSetting((c,), None) for c in have]
    others = [m for m in methods if m != "rrf"]
    for n in range(2, len(have) + 1):
        weights = weight_vectors(n, levels)
        for combo in combinations(have, n):
            families = ([(["rrf"], list(rrf_ks))] if "rrf" in methods else []) + (
                [(others, [DEFAULT_RRF_K])] if others else []
            )
            for family, ks in families:
                out += [
                    FusionSetting(combo, method, rrf_k=k, weights=w, prefetch_k=depth)
                    for method, depth, k, w in product(family, prefetch, ks, weights)
                ]
    return out


# --------------------------------------------------------------------------- fusion, vectorised


@dataclass
class RankingArrays:
    """Every query's channel rankings as arrays: what ``tune`` caches on disk and :class:`CandidateTable` reads.

    Reading a thousand queries' rankings back as arrays takes milliseconds; as Python objects, seconds. The
    :class:`~hybrid_search.types.ScoredId` lists are made only for the queries someone asks for
    (:meth:`as_rankings`).

    Attributes:
        qids: the queries, one row each.
        ids: the document ids the rows point into (a numpy string array).
        docs: ``{channel: int32 (Q, D)}``: each row's ranking, best first, as positions in ``ids``; -1 past
            its end. Channels in the order the rankings were given.
        scores: ``{channel: float64 (Q, D)}``: the channel's raw scores, 0 past the end.
    """

    qids: list[str]
    ids: np.ndarray
    docs: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]

    @classmethod
    def from_rankings(cls, rankings: Mapping[str, Mapping[str, Ranking]], qids: Sequence[str]) -> RankingArrays:
        """From ``{channel: {qid: ranking}}``; a query a channel did not rank gets an empty row."""
        position: dict[str, int] = {}
        depth = max((len(rankings[c].get(q, [])) for c in rankings for q in qids), default=0)
        docs = {c: np.full((len(qids), depth), -1, dtype=np.int32) for c in rankings}
        scores = {c: np.zeros((len(qids), depth)) for c in rankings}
        for channel, by_query in rankings.items():
            for row, qid in enumerate(qids):
                hits = by_query.get(qid, [])
                docs[channel][row, : len(hits)] = [position.setdefault(h.id, len(position)) for h in hits]
                scores[channel][row, : len(hits)] = [h.score for h in hits]
        return cls(list(qids), np.array(list(position), dtype=str), docs, scores)

    def rows(self, qids: Sequence[str]) -> RankingArrays:
        """The same rankings restricted to ``qids`` (each must be one of :attr:`qids`)."""
        row_of = {q: i for i, q in enumerate(self.qids)}
        take = np.asarray([row_of[q] for q in qids], dtype=np.int64)
        return RankingArrays(
            list(qids),
            self.ids,
            {c: d[take] for c, d in self.docs.items()},
            {c: v[take] for c, v in self.scores.items()},
        )

    def lengths(self, channel: str) -> np.ndarray:
        """``(Q,)`` how many hits each row of ``channel`` holds."""
        return (self.docs[channel] >= 0).sum(axis=1)

    def as_rankings(self) -> dict[str, Mapping[str, Ranking]]:
        """``{channel: {qid: ranking}}``, each ranking made when first read."""
        ids = self.ids.tolist()
        return {c: _RankingView(self, c, ids) for c in self.docs}


class _RankingView(Mapping[str, Ranking]):
    """One channel of a :class:`RankingArrays` as ``{qid: ranking}``, each ranking made when first read."""

    def __init__(self, arrays: RankingArrays, channel: str, ids: list[str]) -> None:
        self._arrays, self._channel, self._ids = arrays, channel, ids
        self._row = {q: i for i, q in enumerate(arrays.qids)}
        self._made: dict[str, Ranking] = {}

    def __getitem__(self, qid: str) -> Ranking:
        if qid not in self._made:
            row = self._row[qid]
            docs, scores = self._arrays.docs[self._channel][row], self._arrays.scores[self._channel][row]
            n = int((docs >= 0).sum())
            self._made[qid] = [ScoredId(self._ids[d], s) for d, s in zip(docs[:n].tolist(), scores[:n].tolist())]
        return self._made[qid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)


@dataclass
class CandidateTable:
    """Every query's channel rankings as dense arrays, for re-fusing many settings at once.

    Columns of row ``q`` are the union of its candidates over all channels, grouped by the smallest of
    ``levels`` that the document's best rank (over the channels) falls within, so that a setting of prefetch
    depth ``p`` need only read the first :meth:`width` columns: every candidate of it is there. Score ties are
    broken by document id descending, the way trec_eval (and so ir_measures) breaks them, through
    ``id_order``.

    Attributes:
        qids: the queries, one row each.
        ranks: ``{channel: float array (Q, U)}``, rank from 1, ``inf`` where the channel did not return it.
        scores: ``{channel: float array (Q, U)}``, the channel's raw score, 0 where absent.
        id_order: ``(Q, U)`` each column's position among its row's ids sorted descending (padding last).
        widths: ``{level: columns}``: the columns that hold every document some channel ranks within ``level``.
        columns: per row, each column's position in ``vocabulary``.
        vocabulary: the document ids ``columns`` point into.
    """

    qids: list[str]
    ranks: dict[str, np.ndarray]
    scores: dict[str, np.ndarray]
    id_order: np.ndarray
    widths: dict[int, int]
    columns: list[np.ndarray] = field(repr=False)
    vocabulary: np.ndarray = field(repr=False)

    @property
    def ids(self) -> list[list[str]]:
        """Per row, the document id of each column (padding columns are absent from every channel)."""
        return [self.vocabulary[cols].tolist() for cols in self.columns]

    @cached_property
    def id_array(self) -> np.ndarray:
        """``(Q, U)`` each column's document id, ``""`` for padding: what :func:`fused_top` reads ids from."""
        padded = np.full(self.id_order.shape, len(self.vocabulary), dtype=np.int64)
        for row, cols in enumerate(self.columns):
            padded[row, : len(cols)] = cols
        return np.append(self.vocabulary, "")[padded]

    @classmethod
    def build(
        cls,
        rankings: Mapping[str, Mapping[str, Ranking]],
        qids: Sequence[str],
        levels: Sequence[int] = (CUTOFF, *PREFETCH_DEPTHS),
    ) -> CandidateTable:
        """From ``{channel: {qid: ranking}}`` (each ranking best first, as deep as the largest prefetch)."""
        return cls.from_arrays(RankingArrays.from_rankings(rankings, qids), levels)

    @classmethod
    def from_arrays(cls, arrays: RankingArrays, levels: Sequence[int] = (CUTOFF, *PREFETCH_DEPTHS)) -> CandidateTable:
        """From :class:`RankingArrays`: a few numpy operations a query."""
        channels = [c for c in CHANNEL_ORDER if c in arrays.docs]
        levels = sorted(set(levels))
        bounds = np.asarray(levels)
        id_rank = np.empty(len(arrays.ids), dtype=np.int64)  # each id's place in ascending string order
        id_rank[np.argsort(arrays.ids, kind="stable")] = np.arange(len(arrays.ids))
        lengths = {c: arrays.lengths(c) for c in channels}
        columns, groups = [], []
        for row in range(len(arrays.qids)):
            docs = np.concatenate([arrays.docs[c][row, : lengths[c][row]] for c in channels] or [np.zeros(0, np.int32)])
            ranks = np.concatenate([np.arange(1, lengths[c][row] + 1) for c in channels] or [np.zeros(0, np.int64)])
            by_doc = np.lexsort((ranks, docs))  # each document's best rank first
            docs, ranks = docs[by_doc], ranks[by_doc]
            first = np.ones(len(docs), dtype=bool)
            first[1:] = docs[1:] != docs[:-1]
            docs, group = docs[first], np.searchsorted(bounds, ranks[first], side="left")
            order = np.lexsort((-id_rank[docs], group))  # by level, then id descending
            columns.append(docs[order])
            groups.append(group[order])
        width = max((len(c) for c in columns), default=0) or 1
        table_ranks = {c: np.full((len(columns), width), np.inf) for c in channels}
        table_scores = {c: np.zeros((len(columns), width)) for c in channels}
        id_order = np.tile(np.arange(width), (len(columns), 1))
        widths = dict.fromkeys(levels, 1)
        for row, (cols, group) in enumerate(zip(columns, groups)):
            id_order[row, np.argsort(-id_rank[cols], kind="stable")] = np.arange(len(cols))
            for i, level in enumerate(levels):
                widths[level] = max(widths[level], int(np.searchsorted(group, i, side="right")))
            by_id = np.argsort(cols)
            for channel in channels:
                n = lengths[channel][row]
                at = by_id[np.searchsorted(cols[by_id], arrays.docs[channel][row, :n])]
                table_ranks[channel][row, at] = np.arange(1, n + 1)
                table_scores[channel][row, at] = arrays.scores[channel][row, :n]
        return cls(list(arrays.qids), table_ranks, table_scores, id_order, widths, columns, arrays.ids)

    def width(self, prefetch_k: int) -> int:
        """Columns that hold every candidate of a prefetch of ``prefetch_k``."""
        fits = [w for level, w in self.widths.items() if level >= prefetch_k]
        return min(fits) if fits else self.id_order.shape[1]


def _channel_values(method: str, present: np.ndarray, score: np.ndarray, rank: np.ndarray, rrf_k: float) -> np.ndarray:
    """One channel's normalised value of every column, before its weight, by the formulas of
    :mod:`hybrid_search.fusion`; for RRF the denominator ``k + rank`` (``inf`` where absent)."""
    if method == "rrf":
        return np.where(present, rrf_k + rank, np.inf)
    n = present.sum(axis=1, keepdims=True)
    mean = np.where(present, score, 0.0).sum(axis=1, keepdims=True) / np.maximum(n, 1)
    var = np.where(present, (score - mean) ** 2, 0.0).sum(axis=1, keepdims=True) / np.maximum(n - 1, 1)
    std = np.sqrt(var)
    if method == "dbsf":
        value = np.where((n > 1) & (std > 0), (score - (mean - 3 * std)) / np.where(std > 0, 6 * std, 1.0), 0.5)
        return np.where(present, value, 0.0)
    if method == "convex":
        low = np.where(present, score, np.inf).min(axis=1, keepdims=True)
        span = np.where(present, score, -np.inf).max(axis=1, keepdims=True) - low
        return np.where(present, np.where(span > 0, (score - low) / np.where(span > 0, span, 1.0), 1.0), 0.0)
    if method == "zscore":
        z = np.where((n > 1) & (std > 0), (score - mean) / np.where(std > 0, std, 1.0), 0.0)
        floor = np.where(present, z, np.inf).min(axis=1, keepdims=True)
        return np.where(present, z, np.where(n > 0, floor, 0.0))
    raise ValueError(f"unknown fusion method {method!r}")


#: Per-group memo of :func:`_values` (settings that differ only in their weights share it).
Cache = dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]]


def _values(
    table: CandidateTable,
    channel: str,
    setting: FusionSetting,
    width: int,
    cache: Cache | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(present, values)`` of one channel under ``setting`` over the first ``width`` columns, kept in
    ``cache`` when given: settings that differ only in their weights share them (the normalised values do
    not depend on the weights)."""
    method = setting.method or "rrf"
    key = (channel, method, setting.prefetch_k, setting.rrf_k if method == "rrf" else None, width)
    if cache is not None and key in cache:
        return cache[key]
    ranks = table.ranks[channel][:, :width]
    present = ranks <= setting.prefetch_k
    values = _channel_values(method, present, table.scores[channel][:, :width], ranks, setting.rrf_k)
    if cache is not None:
        cache[key] = (present, values)
    return present, values


def _multiplier(setting: FusionSetting, channel: str) -> float:
    """The factor ``setting`` applies to ``channel``'s value: RRF divides it by ``k + rank``, DBSF multiplies
    the normalised score by it, the convex fusions by the weight over the weights' sum (as
    :mod:`hybrid_search.fusion` computes them)."""
    weights = setting.weight_map or {c: 1.0 for c in setting.channels}
    if setting.method in ("rrf", "dbsf"):
        return weights[channel]
    return weights[channel] / (sum(weights.values()) or 1.0)


def _add_term(fused: np.ndarray | float, method: str | None, multiplier: Any, value: np.ndarray) -> np.ndarray:
    # w / (k + rank) for RRF (0 where absent: the value is inf), else factor × normalised value.
    return fused + (multiplier / value if method == "rrf" else multiplier * value)


def _masked_sum(method: str | None, parts: Sequence[tuple[Any, np.ndarray, np.ndarray]]) -> np.ndarray:
    """The fused scores of ``(factor, present, values)`` per channel, terms added in channel order (as
    :mod:`hybrid_search.fusion` adds them); ``-inf`` where no channel has the document. Broadcasts: the grid
    passes one factor per setting against the same values."""
    fused: np.ndarray | float = 0.0
    candidate: np.ndarray | bool = False
    for factor, present, values in parts:
        candidate = candidate | present
        fused = _add_term(fused, method, factor, values)
    return np.where(candidate, fused, -np.inf)


#: A fusion's top ten is first looked for among the documents some channel ranks within this depth; a bound
#: on every other document's fused score proves it complete, or the query is redone over all its candidates.
#: It changes only the speed, never a result.
NARROW_LEVEL = 25


def _top_of(neg: np.ndarray, id_order: np.ndarray, cutoff: int) -> tuple[np.ndarray, np.ndarray]:
    """The top ``cutoff`` columns of each row of negated scores, ties by id descending (``id_order``)."""
    q, u = neg.shape
    rows = np.arange(q)[:, None]
    m = min(u, 4 * cutoff)
    # A partial sort of a few dozen columns, then an exact sort of those by score, then id descending.
    part = np.argpartition(neg, m - 1, axis=1)[:, :m] if m < u else np.tile(np.arange(u), (q, 1))
    # By score, ties by id: a stable sort by score of the window already in id order (np.lexsort along
    # rows costs ten times as much).
    by_id = np.argsort(id_order[rows, part], axis=1, kind="stable")
    part = part[rows, by_id]
    values = neg[rows, part]
    order = np.argsort(values, axis=1, kind="stable")
    top = part[rows, order][:, :cutoff]
    top_values = values[rows, order]
    if m < u:  # a tie group wider than the window: those rows are sorted whole
        wide = np.isfinite(top_values[:, m - 1]) & (top_values[:, min(cutoff, m) - 1] == top_values[:, m - 1])
        for row in np.flatnonzero(wide):
            top[row] = np.lexsort((id_order[row], neg[row]))[:cutoff]
    return top, np.isfinite(neg[rows, top])


def _weights_top_columns(
    table: CandidateTable, group: Sequence[FusionSetting], cutoff: int = CUTOFF, cache: Cache | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """``(S, Q, cutoff)`` top columns (and whether each is a real hit) of fusions that differ only in their
    weights, all at once.

    They are ranked first over the columns of :data:`NARROW_LEVEL`. Every later column has a value no larger
    than the largest value (for RRF: ``k + rank`` no smaller than the smallest) of each channel over those
    columns, and adding monotone terms in the same order is monotone in floating point, so the same sum of
    those extremes bounds its fused score; a query whose ``cutoff``-th score does not beat the bound strictly
    is ranked again over all its columns.
    """
    first = group[0]
    method, channels = first.method, first.channels
    width = table.width(first.prefetch_k)
    narrow = (
        table.width(NARROW_LEVEL) if cutoff <= NARROW_LEVEL < first.prefetch_k else width
    )  # widths grow with the level
    factors = np.array([[_multiplier(s, c) for c in channels] for s in group])  # (S, C)
    by_channel = [_values(table, c, first, width, cache) for c in channels]
    n_settings, n_queries = len(group), len(table.qids)

    narrowed = [(factors[:, j, None, None], p[:, :narrow], v[None, :, :narrow]) for j, (p, v) in enumerate(by_channel)]
    neg = -_masked_sum(method, narrowed).reshape(n_settings * n_queries, narrow)
    id_order = np.broadcast_to(table.id_order[:, :narrow], (n_settings, n_queries, narrow))
    top, real = _top_of(neg, id_order.reshape(n_settings * n_queries, narrow), cutoff)
    if narrow < width:
        bound: np.ndarray | float = 0.0
        for j, (_, values) in enumerate(by_channel):
            tail = values[:, narrow:width]
            extreme = tail.min(axis=1) if method == "rrf" else tail.max(axis=1)
            bound = _add_term(bound, method, factors[:, j, None], extreme[None, :])
        kth = -np.take_along_axis(neg, top[:, -1:], axis=1)[:, 0]
        redo = np.flatnonzero(~(real[:, -1] & (kth > np.asarray(bound).reshape(-1))))
        if len(redo):
            which, rows = np.divmod(redo, n_queries)
            whole = [(factors[which, j, None], p[rows], v[rows]) for j, (p, v) in enumerate(by_channel)]
            top[redo], real[redo] = _top_of(-_masked_sum(method, whole), table.id_order[rows, :width], cutoff)
    return top.reshape(n_settings, n_queries, cutoff), real.reshape(n_settings, n_queries, cutoff)


def fused_top_columns(
    table: CandidateTable, setting: FusionSetting, cutoff: int = CUTOFF, cache: Cache | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Each query's top ``cutoff`` columns under ``setting``, ties broken by id descending (trec_eval's order).

    A single channel is answered by its own ranking cut to ``cutoff`` (its prefetch does not apply); a
    fusion as :func:`_weights_top_columns` ranks it.

    Returns:
        ``(columns, real)``: ``(Q, cutoff)`` column indices best first, and whether each is a real hit
        (a query with fewer than ``cutoff`` candidates has ``False`` at its tail).
    """
    if setting.fused:
        top, real = _weights_top_columns(table, [setting], cutoff, cache)
        return top[0], real[0]
    depth = max(cutoff, 1)
    width = table.width(depth)
    ranks = table.ranks[setting.channels[0]][:, :width]
    neg = -np.where(ranks <= depth, table.scores[setting.channels[0]][:, :width], -np.inf)
    return _top_of(neg, table.id_order[:, :width], cutoff)


def fused_top(table: CandidateTable, setting: FusionSetting, cutoff: int = CUTOFF) -> list[list[str]]:
    """Each query's top ``cutoff`` ids under ``setting`` (see :func:`fused_top_columns`)."""
    top, finite = fused_top_columns(table, setting, cutoff)
    ids = np.take_along_axis(table.id_array, top, axis=1)
    if finite.all():
        return ids.tolist()
    return [list(r[f]) for r, f in zip(ids, finite)]


# --------------------------------------------------------------------------- scoring


class NdcgScorer:
    """Per-query nDCG@10 of top-10 lists, by ir_measures, memoised on (query, list).

    Args:
        qrels: ``{qid: {doc_id: grade}}``.
    """

    def __init__(self, qrels: Mapping[str, Mapping[str, int]]) -> None:
        import ir_measures

        self.qrels = {str(q): {str(d): int(g) for d, g in docs.items()} for q, docs in qrels.items()}
        self.measure = ir_measures.nDCG @ CUTOFF
        self._memo: dict[tuple[str, tuple[str, ...]], float] = {}

    def __call__(self, qids: Sequence[str], tops: Sequence[Sequence[str]]) -> np.ndarray:
        import ir_measures

        keys = [(q, tuple(top)) for q, top in zip(qids, tops)]
        missing = list(dict.fromkeys(k for k in keys if k not in self._memo))
        if missing:
            # Each distinct (query, list) becomes a pseudo-query, so one ir_measures call scores them all.
            pseudo = {f"{i}": key for i, key in enumerate(missing)}
            run = {p: {d: float(CUTOFF - r) for r, d in enumerate(key[1])} for p, key in pseudo.items() if key[1]}
            qrels = {p: self.qrels.get(key[0], {}) for p, key in pseudo.items()}
            values = dict.fromkeys(pseudo, 0.0)
            for metric in ir_measures.iter_calc([self.measure], qrels, run):
                values[metric.query_id] = float(metric.value)
            for p, key in pseudo.items():
                self._memo[key] = values[p]
        return np.asarray([self._memo[k] for k in keys])


class NdcgKernel:
    """Per-query nDCG@10 of every query at once, in numpy, by trec_eval's definition (and so ir_measures'):
    the gain of a hit is its relevance grade (0 when unjudged, negative grades count 0), discounted by
    ``log2(rank + 1)``; the ideal DCG sorts the query's judged grades. A query with no relevant document
    scores 0.

    It exists for speed: a grid of a thousand settings needs a million per-query values, and this turns
    each setting into a few array operations. It is checked against ir_measures on real rankings (the tests)
    and, in ``tune``, on every setting it reports (:func:`verify_with_ir_measures`).

    Args:
        table: the candidate table whose columns the top lists index.
        qrels: ``{qid: {doc_id: grade}}``.
    """

    def __init__(self, table: CandidateTable, qrels: Mapping[str, Mapping[str, int]]) -> None:
        self.gains = np.zeros(table.id_order.shape)
        self.ideal = np.zeros(len(table.qids))
        discount = 1.0 / np.log2(np.arange(2, CUTOFF + 2))
        position = {d: i for i, d in enumerate(table.vocabulary.tolist())}
        grade_of = np.zeros(len(position) + 1)  # one query's grades by vocabulary position; the last: unknown
        for row, (qid, cols) in enumerate(zip(table.qids, table.columns)):
            judged = {str(d): max(int(g), 0) for d, g in qrels.get(qid, {}).items()}
            at = np.asarray([position.get(d, len(position)) for d in judged], dtype=np.int64)
            grade_of[at] = list(judged.values())
            grade_of[-1] = 0.0
            self.gains[row, : len(cols)] = grade_of[cols]
            grade_of[at] = 0.0
            best = sorted((g for g in judged.values() if g > 0), reverse=True)[:CUTOFF]
            self.ideal[row] = float(np.dot(best, discount[: len(best)]))
        self.discount = discount

    def __call__(self, top: np.ndarray, real: np.ndarray) -> np.ndarray:
        """``(Q,)`` nDCG@10 of the top columns of :func:`fused_top_columns`."""
        gains = np.where(real, np.take_along_axis(self.gains, top, axis=1), 0.0)
        dcg = gains @ self.discount[: top.shape[1]]
        return np.divide(dcg, self.ideal, out=np.zeros_like(dcg), where=self.ideal > 0)


def score_settings(
    table: CandidateTable,
    settings: Sequence[FusionSetting],
    qrels: Mapping[str, Mapping[str, int]],
    *,
    progress: bool = False,
    workers: int | None = None,
) -> np.ndarray:
    """``(len(settings), Q)`` per-query nDCG@10 of every setting, by :class:`NdcgKernel`.

    Settings that differ only in their weights form a group that shares each channel's normalised values;
    groups run on ``workers`` threads (default: the CPU count, at most 4), as numpy's array operations
    release the GIL.
    """
    import os
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    kernel = NdcgKernel(table, qrels)
    out = np.zeros((len(settings), len(table.qids)))
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, setting in enumerate(settings):
        groups.setdefault((setting.channels, setting.method, setting.rrf_k, setting.prefetch_k), []).append(i)

    def score_group(members: list[int]) -> int:
        group = [settings[i] for i in members]
        if not group[0].fused:
            tops = [fused_top_columns(table, s) for s in group]
        else:
            top, real = _weights_top_columns(table, group)
            tops = list(zip(top, real))
        for i, (top_i, real_i) in zip(members, tops):
            out[i] = kernel(top_i, real_i)
        return len(members)

    workers = workers or min(4, os.cpu_count() or 1)
    with (
        ThreadPoolExecutor(workers) as pool,
        tqdm(
            total=len(settings),
            desc="trying fusions",
            unit="setting",
            disable=not progress,
            dynamic_ncols=True,
            leave=False,
        ) as bar,
    ):
        for done in (pool.map if workers > 1 else map)(score_group, groups.values()):
            bar.update(done)
    return out


def verify_with_ir_measures(
    table: CandidateTable,
    settings: Sequence[FusionSetting],
    per_query: np.ndarray,
    rows: Sequence[int],
    scorer: NdcgScorer,
    *,
    tolerance: float = 1e-9,
) -> float:
    """Score the settings ``rows`` again with ir_measures and write those values into ``per_query``, so that
    every number ``tune`` reports comes from ir_measures.

    Returns:
        The largest per-query difference between the kernel and ir_measures.

    Raises:
        RuntimeError: they differ by more than ``tolerance`` (a kernel bug: no number would be trusted).
    """
    worst = 0.0
    for i in dict.fromkeys(int(r) for r in rows):
        exact = scorer(table.qids, fused_top(table, settings[i]))
        worst = max(worst, float(np.max(np.abs(exact - per_query[i]), initial=0.0)))
        per_query[i] = exact
    if worst > tolerance:
        raise RuntimeError(f"the numpy nDCG@10 differs from ir_measures by {worst:.3g} (> {tolerance:g})")
    return worst


# --------------------------------------------------------------------------- cross-validation


def cv_folds(n: int, k: int = 5, seed: int = 0) -> list[np.ndarray]:
    """The held-out query positions of each of ``k`` shuffled folds, sorted.

    The folds of scikit-learn's ``KFold(k, shuffle=True, random_state=seed)`` (the tests check they are the
    same), drawn here with numpy: importing scikit-learn for a shuffle costs a warm ``tune`` seconds.
    """
    if n < k:
        raise ValueError(f"{k}-fold cross-validation needs at least {k} judged queries; got {n}")
    order = np.arange(n)
    np.random.RandomState(seed).shuffle(order)
    sizes = np.full(k, n // k)
    sizes[: n % k] += 1
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    return [np.sort(order[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]


def fold_means(per_query: np.ndarray, folds: Sequence[np.ndarray]) -> np.ndarray:
    """``(settings, folds)``: each setting's mean nDCG@10 on each fold's queries."""
    return np.stack([per_query[:, f].mean(axis=1) for f in folds], axis=1)


@dataclass
class Decision:
    """What :func:`choose` decided and why.

    Attributes:
        chosen: index of the chosen setting.
        best: index of the setting with the highest CV mean.
        best_single: index of the best channel alone.
        mean, std: per setting, the mean and the standard deviation of its fold scores.
        gap, se: per setting, its mean fold-wise shortfall from ``best`` and that shortfall's standard error.
        within: per setting, whether it is within one standard error of ``best``.
    """

    chosen: int
    best: int
    best_single: int
    mean: np.ndarray
    std: np.ndarray
    gap: np.ndarray
    se: np.ndarray
    within: np.ndarray = field(repr=False)


def choose(settings: Sequence[FusionSetting], folds_scores: np.ndarray) -> Decision:
    """The one-standard-error rule over CV fold scores.

    The best setting is the one with the highest mean fold score. A setting is within noise of it when its
    mean shortfall is at most the standard error of the fold-wise differences (paired: a fold of hard queries
    lowers every setting alike, so the spread of the differences is the noise that matters). Among those,
    the simplest (:meth:`FusionSetting.complexity`) wins; equals by their mean.
    """
    k = folds_scores.shape[1]
    mean = folds_scores.mean(axis=1)
    std = folds_scores.std(axis=1, ddof=1) if k > 1 else np.zeros_like(mean)
    best = int(np.argmax(mean))
    diffs = folds_scores[best][None, :] - folds_scores
    gap = diffs.mean(axis=1)
    se = diffs.std(axis=1, ddof=1) / math.sqrt(k) if k > 1 else np.zeros_like(mean)
    within = gap <= se + 1e-12
    chosen = min((int(i) for i in np.flatnonzero(within)), key=lambda i: (settings[i].complexity(), -mean[i], i))
    singles = [i for i, s in enumerate(settings) if not s.fused]
    best_single = max(singles, key=lambda i: mean[i]) if singles else best
    return Decision(int(chosen), best, int(best_single), mean, std, gap, se, within)


def nested_picks(settings: Sequence[FusionSetting], folds_scores: np.ndarray) -> list[int]:
    """For each fold, the setting :func:`choose` picks on the other folds."""
    k = folds_scores.shape[1]
    return [choose(settings, folds_scores[:, [g for g in range(k) if g != f]]).chosen for f in range(k)]


def nested_cv(settings: Sequence[FusionSetting], folds_scores: np.ndarray) -> np.ndarray:
    """Held-out score of the whole procedure: for each fold, :func:`choose` on the other folds, scored on
    this one. An honest estimate of what tuning gains, free of the optimism of picking the best of many."""
    picks = nested_picks(settings, folds_scores)
    return np.asarray([folds_scores[picked, f] for f, picked in enumerate(picks)])


# --------------------------------------------------------------------------- the record in the index


def fusion_record(
    setting: FusionSetting,
    *,
    dataset: str,
    split: str,
    cv_ndcg10: float,
    cv_std: float,
    date: str | None = None,
) -> dict[str, Any]:
    """``IndexMeta.fusion``: the setting and where it was learned."""
    return {
        **setting.to_record(),
        "learned": {
            "dataset": dataset,
            "split": split,
            "date": date or _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "cv_ndcg10": round(float(cv_ndcg10), 6),
            "cv_std": round(float(cv_std), 6),
        },
    }


def fusion_defaults(meta: Any) -> dict[str, Any]:
    """The search options an index's learned fusion sets (``{}`` when it has none): the one place that
    reads ``IndexMeta.fusion`` for front ends. Explicit flags override what it returns.

    Example:
        >>> from hybrid_search.index import IndexMeta
        >>> fusion_defaults(IndexMeta(engine="x"))
        {}
    """
    record = getattr(meta, "fusion", None)
    if not record:
        return {}
    return FusionSetting.from_record(record).search_options()
