"""Token-level explanations, on the demo corpus the repository ships (real passages on every checkout)."""

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


@pytest.fixture
def demo_index(tmp_path, demo_vectors, splade, minilm):
    from hybrid_search.index import IndexMeta
    from indexers import create_index

    docs, svecs, dvecs = demo_vectors
    index = create_index(
        str(tmp_path / "edge"), IndexMeta(engine="", sparse=splade.settings(), dense=minilm.settings()), exact=True
    )
    index.upsert(docs, svecs, dvecs)
    yield index
    index.close()


def test_real_explanations_sum_to_the_engine_sparse_score(demo_index, splade, demo_queries):
    index = demo_index
    for query in list(demo_queries.values())[:10]:
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


def test_lexical_ids_are_the_vector_dimensions_the_text_itself_contains(demo_vectors, splade):
    docs, svecs, _ = demo_vectors
    texts = [d.full_text for d in docs]
    lexical = splade.lexical_ids(texts, svecs)
    for text, vector, ids in zip(texts, svecs, lexical):
        own = splade.text_token_ids(text)
        assert ids == sorted(int(i) for i in vector.indices if int(i) in own)
    assert any(len(ids) < v.nnz for ids, v in zip(lexical, svecs))  # SPLADE expands every passage
    with pytest.raises(ValueError, match="vectors for"):
        splade.lexical_ids(texts[:2], svecs[:1])


def test_lexical_ids_beside_the_encoder_leave_its_tokenizer_alone(demo_vectors, splade):
    """The indexing pipeline computes lexical ids on its writer thread while the next batch is encoded.
    A Hugging Face tokenizer call re-configures the shared Rust tokenizer (padding, truncation), so the
    side work must use its own copy; here the encoder's padding setting survives it, and a batch encoded
    while another thread tokenises comes out as it does alone."""
    import threading

    docs, svecs, _ = demo_vectors
    texts = [d.full_text for d in docs][:48]
    backend = splade.tokenizer.backend_tokenizer
    backend.enable_padding(pad_id=splade.tokenizer.pad_token_id, pad_token=splade.tokenizer.pad_token)
    try:
        splade.lexical_ids(texts, svecs[:48])
        splade.count_truncated(texts)
        assert backend.padding is not None
    finally:
        backend.no_padding()

    stop, errors = threading.Event(), []

    def side() -> None:
        try:
            while not stop.is_set():
                splade.lexical_ids(texts, svecs[:48])
        except Exception as error:  # pragma: no cover - the failure this test guards against
            errors.append(error)

    thread = threading.Thread(target=side)
    thread.start()
    try:
        concurrent = [splade.encode_document(texts[i : i + 16]) for i in range(0, 48, 16) for _ in range(2)]
    finally:
        stop.set()
        thread.join()
    assert not errors
    for n, batch in enumerate(concurrent):
        start = (n // 2) * 16
        for got, want in zip(batch, svecs[start : start + 16]):
            assert got.indices.tolist() == want.indices.tolist()


def test_stored_lexical_ids_explain_exactly_as_tokenising_the_hits(
    monkeypatch, tmp_path, demo_vectors, splade, minilm, demo_queries
):
    """An index written with lexical ids (as the indexing pipeline writes it) and one written without them
    (an older index) give identical explanations; the first needs no tokenizer at query time."""
    from hybrid_search.index import IndexMeta
    from hybrid_search.retrieval import HybridSearcher
    from indexers import create_index

    docs, svecs, dvecs = demo_vectors
    meta = IndexMeta(engine="", sparse=splade.settings(), dense=minilm.settings())
    with_ids = create_index(str(tmp_path / "with"), meta, exact=True)
    with_ids.upsert(docs, svecs, dvecs, lexical=splade.lexical_ids([d.full_text for d in docs], svecs))
    without = create_index(str(tmp_path / "without"), meta, exact=True)
    without.upsert(docs, svecs, dvecs)
    stored = with_ids.fetch([docs[0].id, "no-such-id", docs[1].id], sparse=True)
    assert [s.document.id for s in stored] == [docs[0].id, docs[1].id]
    assert stored[0].lexical is not None and stored[0].sparse.nnz == svecs[0].nnz
    assert without.fetch([docs[0].id])[0].lexical is None
    with pytest.raises(ValueError, match="lexical id lists"):
        with_ids.upsert(docs[:2], svecs[:2], dvecs[:2], lexical=[[1]])

    fast, slow = HybridSearcher(with_ids, splade, minilm), HybridSearcher(without, splade, minilm)
    calls: list[int] = []
    original = splade.texts_token_ids
    monkeypatch.setattr(splade, "texts_token_ids", lambda texts: calls.append(len(texts)) or original(texts))
    for query in list(demo_queries.values())[:8]:
        a = fast.search(query, 5, channel_ranks=False)
        assert calls == []  # the stored lexical ids stand in for tokenising the hits
        b = slow.search(query, 5, channel_ranks=False)
        assert calls.pop() == 5
        assert [h.id for h in a.hits] == [h.id for h in b.hits]
        for x, y in zip(a.hits, b.hits):
            assert x.explanation == y.explanation and x.explanation
        assert any(r.expansion for h in a.hits for r in h.explanation)
        assert any(not r.expansion for h in a.hits for r in h.explanation)
    with_ids.close()
    without.close()
