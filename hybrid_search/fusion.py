"""Rank fusion as small pure functions over channel rankings.

Each function takes ``{channel: Ranking}`` (best first) and returns one fused :data:`Ranking`.
Ties are broken by document id so that the output is deterministic.

- :func:`rrf`: Reciprocal Rank Fusion, Cormack, Clarke & Büttcher, SIGIR 2009:
  ``score(d) = Σ_i w_i / (k + rank_i(d))``, ranks from 1, ``k = 60``.
- :func:`dbsf`: Distribution-Based Score Fusion (Qdrant's): each channel's scores are scaled so that
  ``mean ± 3σ`` maps to ``[0, 1]``, then summed.
- :func:`convex`: min-max normalised convex combination ``Σ_i w_i · minmax_i(d)``
  (Bruch, Gai & Ingber, "An Analysis of Fusion Functions for Hybrid Retrieval", TOIS 2023).
- :func:`zscore`: z-score normalised convex combination ``Σ_i w_i · (s_i(d) - μ_i) / σ_i``, the
  standard-score normalisation of the same paper (its §4); a document missing from a channel takes that
  channel's lowest z-score, as :func:`convex` gives it that channel's lowest normalised score (0).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from hybrid_search.constants import DEFAULT_RRF_K, FUSION_METHODS
from hybrid_search.types import FusionTerm, Ranking, ScoredId

__all__ = [
    "DEFAULT_RRF_K",
    "FUSION_METHODS",
    "convex",
    "dbsf",
    "describe_terms",
    "fuse",
    "fusion_terms",
    "rank_terms",
    "rrf",
    "same_order",
    "term_total",
    "zscore",
]

#: ``{doc id: [one FusionTerm per channel]}``: what a fused score is made of.
Terms = dict[str, list[FusionTerm]]


def _weights(rankings: Mapping[str, Ranking], weights: Mapping[str, float] | None) -> dict[str, float]:
    weights = dict(weights or {})
    unknown = set(weights) - set(rankings)
    if unknown:
        raise ValueError(f"weights given for unknown channels {sorted(unknown)}; channels: {sorted(rankings)}")
    if any(not w >= 0 for w in weights.values()):
        raise ValueError("fusion weights must be non-negative")
    return {name: float(weights.get(name, 1.0)) for name in rankings}


def _sorted(scores: dict[str, float], limit: int | None) -> Ranking:
    ordered = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
    return [ScoredId(doc_id, score) for doc_id, score in ordered[:limit]]


def term_total(terms: list[FusionTerm]) -> float:
    """The fused score of a document: its terms added in channel order, exactly as the fusion adds them."""
    total = 0.0
    for t in terms:
        total += t.term
    return total


def _collect(
    rankings: Mapping[str, Ranking],
    weights: Mapping[str, float],
    normalise: Mapping[str, dict[str, float]] | None,
    term: Callable[[float, int, float | None], float],
) -> Terms:
    """One term per channel for every candidate; a channel that did not return the document adds 0."""
    positions = {c: {h.id: (rank, h.score) for rank, h in enumerate(r, start=1)} for c, r in rankings.items()}
    ids = list(dict.fromkeys(h.id for r in rankings.values() for h in r))
    out: Terms = {}
    for doc_id in ids:
        row = []
        for channel in rankings:
            rank, score = positions[channel].get(doc_id, (None, None))
            value = normalise[channel].get(doc_id) if normalise is not None else None
            weight = weights[channel]
            row.append(FusionTerm(channel, rank, score, weight, value, term(weight, rank, value) if rank else 0.0))
        out[doc_id] = row
    return out


def _check_rrf_k(k: float) -> None:
    """RRF's constant must be finite and non-negative (``k + rank`` is a divisor), for both RRF paths."""
    if not (k >= 0 and math.isfinite(k)):
        raise ValueError(f"RRF k must be a finite number >= 0; got {k}")


def rrf_terms(
    rankings: Mapping[str, Ranking], k: float = DEFAULT_RRF_K, weights: Mapping[str, float] | None = None
) -> Terms:
    """RRF's terms ``w / (k + rank)`` for every candidate."""
    _check_rrf_k(k)
    return _collect(rankings, _weights(rankings, weights), None, lambda w, rank, _: w / (k + rank))


def _dbsf_normalise(ranking: Ranking) -> dict[str, float]:
    # The same statistics as Qdrant's DBSF (sample standard deviation), so both sides agree.
    if not ranking:
        return {}
    if len(ranking) == 1:
        return {ranking[0].id: 0.5}
    values = [h.score for h in ranking]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    if std == 0:
        return {h.id: 0.5 for h in ranking}
    low, high = mean - 3 * std, mean + 3 * std
    return {h.id: (h.score - low) / (high - low) for h in ranking}


def dbsf_terms(rankings: Mapping[str, Ranking], weights: Mapping[str, float] | None = None) -> Terms:
    """DBSF's terms ``w × normalised`` for every candidate."""
    normalised = {c: _dbsf_normalise(r) for c, r in rankings.items()}
    return _collect(rankings, _weights(rankings, weights), normalised, lambda w, _, value: w * (value or 0.0))


def _min_max(ranking: Ranking) -> dict[str, float]:
    if not ranking:
        return {}
    low = min(h.score for h in ranking)
    span = max(h.score for h in ranking) - low
    return {h.id: (h.score - low) / span if span > 0 else 1.0 for h in ranking}


def convex_terms(rankings: Mapping[str, Ranking], weights: Mapping[str, float] | None = None) -> Terms:
    """The convex combination's terms ``(w / Σw) × minmax`` for every candidate."""
    w = _weights(rankings, weights)
    total = sum(w.values()) or 1.0
    share = {c: v / total for c, v in w.items()}
    normalised = {c: _min_max(r) for c, r in rankings.items()}
    return _collect(rankings, share, normalised, lambda weight, _, value: weight * (value or 0.0))


def fusion_terms(
    method: str,
    rankings: Mapping[str, Ranking],
    *,
    rrf_k: float = DEFAULT_RRF_K,
    weights: Mapping[str, float] | None = None,
    k: float | None = None,
) -> Terms:
    """Every candidate's per-channel terms under ``method``; :func:`term_total` of them is its fused score.

    ``rrf_k`` is the RRF constant; ``k`` is its old name here, kept for callers written before the rename
    (elsewhere ``k`` is the number of hits).

    Example:
        >>> terms = fusion_terms("rrf", {"a": [ScoredId("x", 9)], "b": [ScoredId("y", 3), ScoredId("x", 1)]})
        >>> [(t.channel, t.rank, round(t.term, 5)) for t in terms["x"]]
        [('a', 1, 0.01639), ('b', 2, 0.01613)]
    """
    if method == "rrf":
        return rrf_terms(rankings, rrf_k if k is None else k, weights)
    if method == "dbsf":
        return dbsf_terms(rankings, weights)
    if method == "convex":
        return convex_terms(rankings, weights)
    if method == "zscore":
        return zscore_terms(rankings, weights)
    raise ValueError(f"unknown fusion method {method!r}; choose one of {', '.join(FUSION_METHODS)}")


def rank_terms(terms: Terms, limit: int | None = None) -> Ranking:
    """The fused ranking of :func:`fusion_terms`: documents by the sum of their terms, ties by id."""
    return _sorted({doc_id: term_total(row) for doc_id, row in terms.items()}, limit)


def rrf(
    rankings: Mapping[str, Ranking],
    k: float = DEFAULT_RRF_K,
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
) -> Ranking:
    """Reciprocal Rank Fusion: ``Σ w_i / (k + rank_i)`` with ranks starting at 1.

    Example:
        >>> fused = rrf({"a": [ScoredId("x", 9), ScoredId("y", 8)], "b": [ScoredId("y", 3)]}, k=60)
        >>> [h.id for h in fused]
        ['y', 'x']
    """
    return fuse("rrf", rankings, rrf_k=k, weights=weights, limit=limit)


def dbsf(
    rankings: Mapping[str, Ranking], weights: Mapping[str, float] | None = None, limit: int | None = None
) -> Ranking:
    """Distribution-Based Score Fusion: sum of ``mean ± 3σ``-scaled scores."""
    return fuse("dbsf", rankings, weights=weights, limit=limit)


def convex(
    rankings: Mapping[str, Ranking], weights: Mapping[str, float] | None = None, limit: int | None = None
) -> Ranking:
    """Min-max normalised convex combination; a document missing from a channel scores 0 there."""
    return fuse("convex", rankings, weights=weights, limit=limit)


def _zscores(ranking: Ranking) -> dict[str, float]:
    # Sample standard deviation, as DBSF; a list without spread carries no preference: all zeros.
    if len(ranking) < 2:
        return {h.id: 0.0 for h in ranking}
    values = [h.score for h in ranking]
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return {h.id: (h.score - mean) / std if std > 0 else 0.0 for h in ranking}


def zscore_terms(rankings: Mapping[str, Ranking], weights: Mapping[str, float] | None = None) -> Terms:
    """The z-score combination's terms ``(w / Σw) × z`` for every candidate.

    A document a channel did not return scores that channel's lowest z-score: it ranked at best as low as
    the channel's last candidate, which is how :func:`convex` treats it too (min-max maps the last to 0).
    So here a missing document's term is not 0 but ``(w / Σw) × min z``, and the terms still add up.
    """
    w = _weights(rankings, weights)
    total = sum(w.values()) or 1.0
    normalised = {c: _zscores(r) for c, r in rankings.items()}
    floor = {c: min(z.values()) for c, z in normalised.items() if z}
    positions = {c: {h.id: (rank, h.score) for rank, h in enumerate(r, start=1)} for c, r in rankings.items()}
    out: Terms = {}
    for doc_id in dict.fromkeys(h.id for r in rankings.values() for h in r):
        row = []
        for channel in rankings:
            if channel not in floor:
                continue
            rank, score = positions[channel].get(doc_id, (None, None))
            value = normalised[channel].get(doc_id, floor[channel])
            share = w[channel] / total
            row.append(FusionTerm(channel, rank, score, share, value, share * value))
        out[doc_id] = row
    return out


def zscore(
    rankings: Mapping[str, Ranking], weights: Mapping[str, float] | None = None, limit: int | None = None
) -> Ranking:
    """Z-score normalised convex combination ``Σ_i (w_i / Σw) · z_i(d)`` (a missing document: the channel's
    lowest z).

    Example:
        >>> a = [ScoredId("x", 3), ScoredId("y", 2.5), ScoredId("w", 0)]
        >>> fused = zscore({"a": a, "b": [ScoredId("y", 5), ScoredId("z", 1)]})
        >>> [h.id for h in fused]
        ['y', 'x', 'w', 'z']
    """
    return fuse("zscore", rankings, weights=weights, limit=limit)


def fuse(
    method: str,
    rankings: Mapping[str, Ranking],
    *,
    rrf_k: float = DEFAULT_RRF_K,
    weights: Mapping[str, float] | None = None,
    limit: int | None = None,
    k: float | None = None,
) -> Ranking:
    """Fuse by name (``rrf``, ``dbsf`` or ``convex``): each document scores the sum of its :func:`fusion_terms`.

    ``rrf_k`` is the RRF constant (``k`` its old name, still accepted); ``limit`` the hits kept. RRF, the
    default and the one on every query's path, adds the same terms in the same order without building
    :class:`FusionTerm` objects: two 100-hit legs fuse in ~0.13 ms instead of ~0.67 ms, which matters to
    a client-fused hybrid query of a few milliseconds (``tests/core/test_fusion_rrf_fast.py`` checks it equals
    :func:`rank_terms` of :func:`fusion_terms`).
    """
    if method == "rrf":
        return _sorted(_rrf_totals(rankings, rrf_k if k is None else k, weights), limit)
    return rank_terms(fusion_terms(method, rankings, rrf_k=rrf_k, weights=weights, k=k), limit)


def _rrf_totals(rankings: Mapping[str, Ranking], k: float, weights: Mapping[str, float] | None) -> dict[str, float]:
    """:func:`rrf_terms` summed per document, in channel order as :func:`term_total` adds them."""
    _check_rrf_k(k)
    w = _weights(rankings, weights)
    totals: dict[str, float] = {}
    for channel, ranking in rankings.items():
        # The last occurrence of a repeated id wins, as in _collect's positions.
        ranks = {h.id: rank for rank, h in enumerate(ranking, start=1)}
        weight = w[channel]
        for doc_id, rank in ranks.items():
            totals[doc_id] = totals.get(doc_id, 0.0) + weight / (k + rank)
    return totals


def same_order(a: Ranking, b: Ranking, k: int = 10, *, tol: float = 1e-6) -> bool:
    """True when two fused rankings agree on their top ``k`` up to the order of tied scores.

    Engines break exact score ties in their own internal order, so documents with equal fused scores
    are compared as sets, and a tie group cut by the ``k`` boundary may differ in its members.
    """
    a, b = a[:k], b[:k]
    if len(a) != len(b):
        return False
    i = 0
    while i < len(a):
        j = i
        while j < len(a) and abs(a[j].score - a[i].score) <= tol:
            j += 1
        if any(abs(h.score - a[i].score) > tol for h in b[i:j]):
            return False
        if j < len(a) and {h.id for h in a[i:j]} != {h.id for h in b[i:j]}:
            return False
        i = j
    return True


def describe_terms(terms: Sequence[FusionTerm], rrf_k: float | None = None) -> str:
    """A hit's fusion terms as one sum, each with how it was computed: what the CLI prints and the UI shows.

    RRF terms read ``weight/(k+rank)``; DBSF, convex and z-score terms ``weight × normalised score``.

    Example:
        >>> describe_terms([FusionTerm("sparse", 1, 12.5, 1.0, None, 1 / 61), FusionTerm("dense", None, None, 1.0, None, 0.0)], 60)
        'sparse #1 (12.5): 1/(60+1) = 0.0164 + dense: not a candidate = 0'
    """
    k = "k" if rrf_k is None else f"{rrf_k:g}"
    cells = []
    for t in terms:
        if t.rank is None:
            cells.append(f"{t.channel}: not a candidate = 0")
            continue
        how = f"{t.weight:.3g} × {t.normalised:.3f}" if t.normalised is not None else f"{t.weight:g}/({k}+{t.rank})"
        cells.append(f"{t.channel} #{t.rank} ({t.score:.4g}): {how} = {t.term:.4f}")
    return " + ".join(cells)
