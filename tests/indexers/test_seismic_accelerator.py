"""The Seismic accelerator beside Qdrant Edge: the delta is searched, filters agree with exact search,
scores are exact and explanations still add up to the sparse score. Real SPLADE-tiny vectors of the
demo corpus's 80 real passages and its queries; Seismic's settings loosened (query_cut, heap_factor) only
where a test needs the top 10 to be exact."""

from __future__ import annotations

import pytest

from hybrid_search.retrieval import HybridSearcher
from hybrid_search.types import Document, SparseVector
from indexers import create_index, open_index
from indexers.seismic import SeismicAcceleratedIndex, SeismicSettings, build, unwrap

pytest.importorskip("seismic")

QUERIES = [
    "how do planets orbit the sun",
    "treatment for high blood pressure",
    "who invented the telephone",
]


@pytest.fixture(scope="module")
def encoded(demo_docs, splade, minilm):
    docs = [Document(d.id, d.text, d.title, {"part": i % 3}) for i, d in enumerate(demo_docs)]
    texts = [d.full_text for d in docs]
    return docs, splade.encode_document(texts), minilm.encode_document(texts)


@pytest.fixture()
def accelerated(tmp_path, encoded, splade, minilm):
    from hybrid_search.index import IndexMeta

    docs, svecs, dvecs = encoded
    raw = create_index(str(tmp_path / "ix"), IndexMeta(engine="", sparse=splade.settings(), dense=minilm.settings()))
    raw.upsert(docs, svecs, dvecs)
    # Generous query settings: on so few documents the accelerated top 10 should equal the exact one.
    build(raw, SeismicSettings(query_cut=64, heap_factor=0.5), progress=False)
    raw.close()
    index = open_index(str(tmp_path / "ix"))
    assert isinstance(index, SeismicAcceleratedIndex) and index.accelerator is not None
    yield index
    index.close()


def _ids(ranking):
    return [h.id for h in ranking]


def test_top_10_and_scores_equal_exact_search(accelerated, splade):
    exact = unwrap(accelerated)
    for q in splade.encode_query(QUERIES):
        got, want = accelerated.search_sparse(q, 10), exact.search_sparse(q, 10)
        assert _ids(got) == _ids(want)
        assert [h.score for h in got] == pytest.approx([h.score for h in want], rel=1e-5)
    assert "sparse_seismic" in accelerated.pop_timings()


def test_delta_added_deleted_and_changed_documents(accelerated, encoded, splade, minilm):
    docs, _, _ = encoded
    query = splade.encode_query([QUERIES[1]])[0]
    top = accelerated.search_sparse(query, 10)
    exact = unwrap(accelerated)
    # Added after the build: a document whose vector is twice the best one's ranks first.
    best = exact.sparse_vectors([top[0].id])[top[0].id]
    added = Document("new-doc", "added after the build")
    accelerated.upsert([added], [SparseVector(best.indices, best.values * 2)], minilm.encode_document([added.text]))
    assert accelerated.search_sparse(query, 10)[0].id == "new-doc"
    assert _ids(accelerated.search_sparse(query, 10)) == _ids(exact.search_sparse(query, 10))
    # Deleted: never returned, though Seismic's postings still hold it.
    gone = top[0].id
    accelerated.delete([gone])
    assert gone not in _ids(accelerated.search_sparse(query, 50))
    # Changed: the new text (and vector) is what is found and scored.
    changed = next(d for d in docs if d.id == top[1].id)
    new = Document(changed.id, "completely unrelated text about volcanoes", changed.title, changed.metadata)
    accelerated.upsert([new], splade.encode_document([new.full_text]), minilm.encode_document([new.full_text]))
    assert _ids(accelerated.search_sparse(query, 10)) == _ids(exact.search_sparse(query, 10))
    assert accelerated.get([changed.id])[0].text == new.text
    assert accelerated.delta_size == 3
    # The delta survives reopening (it is logged on disk), and a rebuild empties it.
    location = accelerated.location
    accelerated.close()
    reopened = open_index(location)
    assert reopened.delta_size == 3
    assert gone not in _ids(reopened.search_sparse(query, 50))
    assert "new-doc" in _ids(reopened.search_sparse(query, 10))
    build(reopened, progress=False)
    assert reopened.delta_size == 0 and "new-doc" in _ids(reopened.search_sparse(query, 10))
    reopened.close()
    accelerated.inner.shard = None  # closed above; the fixture's close is then a no-op


def test_filters_give_the_same_hits_as_exact_search(accelerated, splade):
    exact = unwrap(accelerated)
    for q in splade.encode_query(QUERIES):
        for filters in ({"part": 1}, {"part": [0, 2]}):
            assert _ids(accelerated.search_sparse(q, 10, filters)) == _ids(exact.search_sparse(q, 10, filters))
    timings = accelerated.pop_timings()
    assert "sparse_seismic_filter" in timings


def test_selective_filter_falls_back_to_exact_search(accelerated, splade):
    q = splade.encode_query([QUERIES[0]])[0]
    assert accelerated.search_sparse(q, 10, {"part": 99}) == []
    assert "sparse_exact_fallback" in accelerated.pop_timings()


def test_hybrid_search_explanations_sum_to_the_sparse_score(accelerated, splade, minilm):
    searcher = HybridSearcher(accelerated, sparse=splade, dense=minilm)
    result = searcher.search(QUERIES[2], k=5, mode="hybrid")
    exact = HybridSearcher(unwrap(accelerated), sparse=splade, dense=minilm).search(QUERIES[2], k=5, mode="hybrid")
    assert [h.id for h in result.hits] == [h.id for h in exact.hits]
    for hit in result.hits:
        if "sparse" in hit.channel_scores:
            assert sum(r.contribution for r in hit.explanation) == pytest.approx(hit.channel_scores["sparse"], rel=1e-5)
    assert any(key.startswith("sparse_seismic") for key in result.timings_ms)


def test_settings_refuse_unknown_keys():
    with pytest.raises(ValueError, match="unknown Seismic setting"):
        SeismicSettings.from_dict({"n_posting": 3})
    assert SeismicSettings().rebuild_threshold(1_000_000) == 50_000


def test_rescore_and_delta_search_are_exact_dot_products():
    import numpy as np

    from indexers.seismic import Delta, Forward, rescore

    rng = np.random.default_rng(0)
    vectors = [SparseVector(np.sort(rng.choice(50, 8, replace=False)), rng.random(8)) for _ in range(20)]
    query = SparseVector(np.sort(rng.choice(50, 6, replace=False)), rng.random(6))
    want = [query.dot(v) for v in vectors]
    rows = np.array([3, 0, 19, 7])
    assert rescore(Forward.from_vectors(vectors), rows, query) == pytest.approx([want[r] for r in rows])
    delta = Delta()
    for i, v in enumerate(vectors):
        delta.set(f"d{i}", v)
    delta.set("d5", None)  # deleted
    got = {h.id: h.score for h in delta.search(query)}
    assert "d5" not in got
    assert got == pytest.approx({f"d{i}": s for i, s in enumerate(want) if s > 0 and i != 5})
