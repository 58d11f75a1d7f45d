from __future__ import annotations

import pytest

from hybrid_search.explain import explain, explained_score
from hybrid_search.types import SparseVector


def test_contributions_are_the_dot_product_terms():
    q = SparseVector([1, 5, 9], [1.0, 2.0, 0.5])
    d = SparseVector([5, 7, 9], [0.5, 1.0, 4.0])
    rows = explain(q, d, lambda i: f"t{i}", text_token_ids={5})
    assert [(r.token, r.contribution, r.expansion) for r in rows] == [("t9", 2.0, True), ("t5", 1.0, False)]
    assert explained_score(rows) == pytest.approx(q.dot(d))
    assert explain(q, SparseVector([2], [1.0]), str) == []


def test_real_explanations_sum_to_the_engine_sparse_score(make_index, splade, queries):
    index = make_index("qdrant-edge")
    for query in list(queries.values())[:10]:
        qvec = splade.encode_query([query])[0]
        hits = index.search_sparse(qvec, 5)
        vectors = index.sparse_vectors([h.id for h in hits])
        docs = {d.id: d for d in index.get([h.id for h in hits])}
        for hit in hits:
            rows = explain(qvec, vectors[hit.id], splade.token, splade.text_token_ids(docs[hit.id].full_text))
            assert explained_score(rows) == pytest.approx(hit.score, abs=1e-4)
            assert all(r.contribution > 0 for r in rows)
            # Tokens that are in the text are never marked as expansion.
            text_ids = splade.text_token_ids(docs[hit.id].full_text)
            assert all(r.expansion == (r.token_id not in text_ids) for r in rows)
