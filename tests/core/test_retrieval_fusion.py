"""Who fuses, asked once: engine calls counted on a real index subclass, and every hybrid hit's fusion terms
adding up to its fused score, engine-fused and client-fused, on Qdrant Edge and qdrant-client."""

from __future__ import annotations

from collections import Counter

import pytest

from hybrid_search.fusion import term_total
from hybrid_search.index import IndexMeta
from hybrid_search.options import SearchOptions
from hybrid_search.retrieval import HybridSearcher
from indexers.qdrant import QdrantIndex
from indexers.qdrant_edge import QdrantEdgeIndex

QUERY = "what is the daily life of thai people"


class CountingEdgeIndex(QdrantEdgeIndex):
    """Qdrant Edge, counting the engine queries it sends: one per channel search, one per engine fusion."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: Counter[str] = Counter()

    def _search_raw(self, channel, vector, k, filters):
        self.calls[channel] += 1
        return super()._search_raw(channel, vector, k, filters)

    def _hybrid_raw(self, *args):
        self.calls["engine-fusion"] += 1
        return super()._hybrid_raw(*args)


@pytest.fixture(scope="module")
def counting(tmp_path_factory, demo_vectors, splade, minilm):
    docs, svecs, dvecs = demo_vectors
    index = CountingEdgeIndex.create(
        tmp_path_factory.mktemp("count") / "idx",
        IndexMeta(engine="", sparse=splade.settings(), dense=minilm.settings()),
        exact=True,
    )
    index.upsert(docs, svecs, dvecs)
    yield HybridSearcher(index, sparse=splade, dense=minilm)
    index.close()


@pytest.mark.parametrize(
    "options",
    [
        SearchOptions(fusion="convex"),  # Qdrant has no convex combination
        SearchOptions(weights={"sparse": 2.0, "dense": 2.0}),  # Qdrant's RRF is unweighted
        SearchOptions(rrf_k=60.5),  # engines take an integer k
        SearchOptions(engine_fusion=False),
    ],
    ids=["convex", "weights-2-2", "fractional-k", "client-asked"],
)
def test_a_fusion_the_engine_cannot_run_queries_each_channel_once(counting, options):
    counting.index.calls.clear()
    result = counting.search(QUERY, options.with_(explain=False))
    assert counting.index.calls == {"sparse": 1, "dense": 1}
    assert result.fused_by == "client" and len(result.hits) == 10


def test_an_engine_fusion_is_one_engine_query_plus_the_channels_shown(counting):
    counting.index.calls.clear()
    result = counting.search(QUERY, SearchOptions(explain=False))
    assert result.fused_by == "engine" and counting.index.calls == {"sparse": 1, "dense": 1, "engine-fusion": 1}
    counting.index.calls.clear()
    lean = counting.search(QUERY, SearchOptions(explain=False, channel_ranks=False))
    assert counting.index.calls == {"engine-fusion": 1} and lean.fused_by == "engine"
    assert [h.id for h in lean.hits] == [h.id for h in result.hits]
    assert not any(h.fusion_terms for h in lean.hits)


def test_single_channel_and_three_channel_searches_say_who_fused(counting):
    assert counting.search(QUERY, SearchOptions(mode="dense", explain=False)).fused_by is None
    three = counting.search(QUERY, SearchOptions(channels=("sparse", "dense", "bm25"), explain=False))
    assert three.fused_by == "client" and all(len(h.fusion_terms) == 3 for h in three.hits)


@pytest.fixture(scope="module", params=["qdrant-edge", "qdrant-local"])
def any_searcher(request, tmp_path_factory, demo_vectors, splade, minilm):
    docs, svecs, dvecs = demo_vectors
    meta = IndexMeta(engine="", sparse=splade.settings(), dense=minilm.settings())
    if request.param == "qdrant-edge":
        index = QdrantEdgeIndex.create(tmp_path_factory.mktemp("edge") / "idx", meta, exact=True)
    else:
        index = QdrantIndex.create(":memory:", meta, exact=True)
    index.upsert(docs, svecs, dvecs)
    yield HybridSearcher(index, sparse=splade, dense=minilm)
    index.close()


@pytest.mark.parametrize(
    "options, fused_by",
    [
        (SearchOptions(), "engine"),
        (SearchOptions(fusion="dbsf"), "engine"),
        (SearchOptions(engine_fusion=False), "client"),
        (SearchOptions(fusion="dbsf", engine_fusion=False), "client"),
        (SearchOptions(fusion="convex", weights={"sparse": 3.0, "dense": 1.0}), "client"),
        (SearchOptions(rrf_k=10, weights={"sparse": 2.0, "dense": 0.5}), "client"),
        (SearchOptions(fusion="dbsf", channels=("sparse", "dense", "bm25")), "client"),
    ],
    ids=["rrf-engine", "dbsf-engine", "rrf-client", "dbsf-client", "convex", "weighted-rrf", "dbsf-3"],
)
def test_fusion_terms_add_up_to_the_fused_score(any_searcher, demo_queries, options, fused_by):
    for query in list(demo_queries.values())[:5]:
        result = any_searcher.search(query, options.with_(explain=False))
        assert result.fused_by == fused_by
        for hit in result.hits:
            assert [t.channel for t in hit.fusion_terms] == list(result.channel_rankings)
            assert term_total(hit.fusion_terms) == pytest.approx(hit.fused_score, abs=1e-6)
            for term in hit.fusion_terms:
                assert (term.rank is None) == (term.channel not in hit.channel_ranks)
                if term.rank is None:
                    assert term.term == 0.0
                elif options.fusion == "rrf":
                    assert term.term == pytest.approx(term.weight / (options.rrf_k + term.rank))
                    assert term.score == hit.channel_scores[term.channel]
                else:
                    assert term.term == pytest.approx(term.weight * term.normalised)
        if fused_by == "engine":
            assert result.fusion_residual is not None and result.fusion_residual <= 1e-6
