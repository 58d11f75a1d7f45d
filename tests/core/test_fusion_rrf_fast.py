"""``fuse("rrf")`` adds RRF's terms directly; it must give exactly what the fusion-terms framework gives."""

from __future__ import annotations

import random

import pytest

from hybrid_search.fusion import fuse, fusion_terms, rank_terms
from hybrid_search.types import ScoredId


@pytest.mark.parametrize("seed", range(20))
def test_fast_rrf_equals_rank_terms(seed):
    rng = random.Random(seed)
    pool = [f"d{i}" for i in range(rng.randint(1, 60))]
    rankings = {
        channel: [ScoredId(d, rng.random()) for d in rng.sample(pool, rng.randint(0, len(pool)))]
        for channel in ("sparse", "dense", "bm25")[: rng.randint(1, 3)]
    }
    weights = {c: rng.choice([0.0, 0.5, 1.0, 2.0]) for c in rankings} if seed % 2 else None
    rrf_k = rng.choice([0.0, 2.0, 60.0])
    limit = rng.choice([None, 1, 10])
    fast = fuse("rrf", rankings, rrf_k=rrf_k, weights=weights, limit=limit)
    slow = rank_terms(fusion_terms("rrf", rankings, rrf_k=rrf_k, weights=weights), limit)
    assert [(h.id, h.score) for h in fast] == [(h.id, h.score) for h in slow]


def test_fast_rrf_refuses_a_bad_k():
    with pytest.raises(ValueError, match="RRF k"):
        fuse("rrf", {"a": [ScoredId("x", 1.0)]}, rrf_k=-1)
