from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hybrid_search.fusion import convex, dbsf, fuse, rrf, same_order
from hybrid_search.types import ScoredId


def ranking(*ids, scores=None):
    scores = scores or [10.0 - i for i in range(len(ids))]
    return [ScoredId(i, s) for i, s in zip(ids, scores)]


def test_rrf_matches_the_formula_with_ranks_from_one():
    fused = rrf({"sparse": ranking("a", "b", "c"), "dense": ranking("b", "d")}, k=60)
    scores = {h.id: h.score for h in fused}
    assert scores["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert scores["a"] == pytest.approx(1 / 61)
    assert scores["d"] == pytest.approx(1 / 62)
    assert [h.id for h in fused] == ["b", "a", "d", "c"]


def test_weighted_rrf_and_limit():
    fused = rrf({"s": ranking("a"), "d": ranking("b")}, k=60, weights={"s": 2.0}, limit=1)
    assert [h.id for h in fused] == ["a"] and fused[0].score == pytest.approx(2 / 61)
    with pytest.raises(ValueError, match="unknown channels"):
        rrf({"s": ranking("a")}, weights={"x": 1.0})
    with pytest.raises(ValueError):
        rrf({"s": ranking("a")}, k=-1)


def test_rrf_agrees_with_qdrant_client_reference_formula():
    """qdrant-client's own RRF (ranks from 0) with k+1 equals ours with k (unit weights)."""
    from qdrant_client.http import models
    from qdrant_client.hybrid.fusion import reciprocal_rank_fusion

    a, b = ranking("a", "b", "c", "d"), ranking("c", "e", "a")
    as_points = [[models.ScoredPoint(id=ord(h.id), version=0, score=h.score) for h in r] for r in (a, b)]
    theirs = reciprocal_rank_fusion(as_points, limit=10, ranking_constant_k=61)
    ours = rrf({"a": a, "b": b}, k=60)
    assert [chr(p.id) for p in theirs] == [h.id for h in ours]
    assert [p.score for p in theirs] == pytest.approx([h.score for h in ours])


def test_dbsf_agrees_with_qdrant_client_reference():
    from qdrant_client.http import models
    from qdrant_client.hybrid.fusion import distribution_based_score_fusion

    a = ranking("a", "b", "c", scores=[3.0, 2.0, 0.5])
    b = ranking("c", "d", scores=[0.9, 0.1])
    points = [[models.ScoredPoint(id=ord(h.id), version=0, score=h.score) for h in r] for r in (a, b)]
    theirs = distribution_based_score_fusion(points, limit=10)
    ours = dbsf({"a": a, "b": b})
    assert {chr(p.id): p.score for p in theirs} == pytest.approx({h.id: h.score for h in ours})


def test_convex_min_max():
    fused = convex(
        {"s": ranking("a", "b", scores=[4.0, 2.0]), "d": ranking("b", "a", scores=[1.0, 0.0])},
        weights={"s": 3.0, "d": 1.0},
    )
    scores = {h.id: h.score for h in fused}
    assert scores["a"] == pytest.approx(0.75) and scores["b"] == pytest.approx(0.25)


def test_fuse_dispatch_and_errors():
    assert fuse("rrf", {"s": ranking("a")})[0].id == "a"
    with pytest.raises(ValueError, match="unknown fusion"):
        fuse("borda", {"s": ranking("a")})


def test_same_order_tolerates_ties_only():
    a = [ScoredId("x", 0.5), ScoredId("y", 0.3), ScoredId("z", 0.3)]
    assert same_order(a, [ScoredId("x", 0.5), ScoredId("z", 0.3), ScoredId("y", 0.3)], 3)
    assert not same_order(a, [ScoredId("y", 0.5), ScoredId("x", 0.3), ScoredId("z", 0.3)], 3)
    assert not same_order(a, a[:2], 3)


ids = st.lists(st.sampled_from("abcdefghij"), unique=True, max_size=10)


@given(ids, ids, st.integers(min_value=1, max_value=100))
def test_rrf_properties(x, y, k):
    fused = rrf({"x": ranking(*x), "y": ranking(*y)}, k=k)
    assert {h.id for h in fused} == set(x) | set(y)
    assert all(a.score >= b.score for a, b in zip(fused, fused[1:]))
    if x and x == y:
        assert [h.id for h in fused] == x  # agreeing channels keep their order
