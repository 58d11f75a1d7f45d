from __future__ import annotations

import pytest

from hybrid_search.compare import Movement, movements, stages
from hybrid_search.retrieval import SearchResult
from hybrid_search.types import Hit


def _result(channel_rankings, fused, hits, rerank=False):
    return SearchResult(
        query="q",
        mode="hybrid",
        channel_rankings=channel_rankings,
        fused_ranking=fused,
        hits=[Hit(i, None, 1.0, r, rerank_score=(1.0 / r if rerank else None)) for r, i in enumerate(hits, start=1)],
    )


def test_stages_follow_the_pipeline_order():
    result = _result({"dense": ["b", "a"], "sparse": ["a", "c"]}, ["a", "b", "c"], ["b", "a"], rerank=True)
    assert list(stages(result)) == ["sparse", "dense", "fused", "reranked"]
    assert stages(result)["reranked"] == ["b", "a"]
    single = _result({"bm25": ["x", "y"]}, ["x", "y"], ["x", "y"])
    assert stages(single) == {"bm25": ["x", "y"]}


def test_movements_give_every_rank_and_the_shifts():
    lists = {"sparse": ["a", "b", "c", "d"], "dense": ["d", "c"], "fused": ["c", "a", "d", "b"], "reranked": ["d", "c"]}
    moves = {m.id: m for m in movements(lists, depth=2)}
    # Top 2 of any stage: reranked d, c; fused c, a; dense d, c; sparse a, b.
    assert list(moves) == ["d", "c", "a", "b"]
    c = moves["c"]
    assert c.ranks == {"sparse": 3, "dense": 2, "fused": 1, "reranked": 2}
    assert c.shift("sparse", "fused") == 2 and c.shift("fused", "reranked") == -1
    assert c.best_channel(["sparse", "dense"]) == ("dense", 2)
    assert moves["a"].shift("dense", "fused") is None  # not in the dense list
    assert moves["b"].ranks["reranked"] is None


def test_ranks_are_looked_up_beyond_the_depth():
    lists = {"sparse": [f"s{i}" for i in range(50)] + ["x"], "fused": ["x"]}
    (x, *_rest) = movements(lists, depth=1)
    assert x.id == "x" and x.ranks["sparse"] == 51 and x.shift("sparse", "fused") == 50


def test_movements_need_a_positive_depth():
    with pytest.raises(ValueError):
        movements({"sparse": ["a"]}, depth=0)


def test_movement_without_channels():
    assert Movement("a", {"fused": 1}).best_channel(["sparse"]) is None
