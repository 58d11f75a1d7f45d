"""OpenSearch request bodies and response parsing, checked against the shapes in OpenSearch's documentation.

No OpenSearch server runs here (../shared/OFFLINE.md): the bodies are compared with the documented request
shapes (each test names its page), and the adapter's wiring runs through the real opensearch-py client over a
fake HTTP connection (tests/lucene_fakes.py) that answers in the documented response shapes.
"""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_search.fusion import rrf
from hybrid_search.index import (
    IndexNotFoundError,
    UnknownFilterFieldError,
    point_id,
)
from hybrid_search.types import Document, ScoredId, SparseVector
from indexers import _lucene as lucene
from indexers import opensearch as osb
from indexers._lucene import BulkWriteError, EngineUnavailableError
from indexers.opensearch import OpenSearchIndex
from tests.lucene_fakes import (
    TOY_VOCAB,
    FakeServer,
    opensearch_client,
    sparse_vec,
    toy_meta,
)

OPENSEARCH_219 = {
    "name": "n1",
    "version": {"distribution": "opensearch", "number": "2.19.2"},
    "tagline": "The OpenSearch Project",
}
OPENSEARCH_213 = {"version": {"distribution": "opensearch", "number": "2.13.0"}}


# --- mapping ----------------------------------------------------------------------------------------
def test_mapping_enables_knn_and_maps_each_channel():
    """knn_vector with a method: https://docs.opensearch.org/latest/field-types/supported-field-types/knn-methods-engines/
    (``"method": {"name": "hnsw", "space_type", "engine", "parameters": {"ef_construction", "m"}}`` under
    ``"settings": {"index": {"knn": true}}``); rank_features:
    https://docs.opensearch.org/latest/field-types/supported-field-types/rank/ ; _meta:
    https://docs.opensearch.org/latest/mappings/metadata-fields/meta/ ; dynamic templates:
    https://docs.opensearch.org/latest/mappings/dynamic-templates/"""
    body = osb.mapping_body(toy_meta(), shards=2)
    assert body["settings"]["index"]["knn"] is True and body["settings"]["index"]["number_of_shards"] == 2
    props = body["mappings"]["properties"]
    assert props["sparse"] == {"type": "rank_features"}
    # The explanation's lexical ids are kept in _source only: never searched, no doc values.
    assert props["lexical"] == {"type": "integer", "index": False, "doc_values": False}
    assert props["dense"] == {
        "type": "knn_vector",
        "dimension": 3,
        "method": {
            "name": "hnsw",
            "space_type": "cosinesimil",
            "engine": "lucene",
            "parameters": {"m": 16, "ef_construction": 100},
        },
    }
    assert body["mappings"]["_meta"]["hybrid_search"]["sparse"]["name"] == "toy-splade"
    template = body["mappings"]["dynamic_templates"][0]["metadata_strings"]
    assert template == {"path_match": "meta.*", "match_mapping_type": "string", "mapping": {"type": "keyword"}}


@pytest.mark.parametrize(
    "similarity,engine,space",
    [("cosine", "lucene", "cosinesimil"), ("dot", "faiss", "innerproduct"), ("euclidean", "lucene", "l2")],
)
def test_space_matches_the_dense_models_similarity(similarity, engine, space):
    """Spaces and their engines: https://docs.opensearch.org/latest/field-types/supported-field-types/knn-spaces/ and
    https://docs.opensearch.org/latest/field-types/supported-field-types/knn-methods-engines/ (Lucene: l2, cosinesimil,
    innerproduct from 2.13; Faiss hnsw: l2, innerproduct)."""
    method = osb.knn_vector_mapping({"dimension": 4, "similarity": similarity})["method"]
    assert (method["engine"], method["space_type"]) == (engine, space)


def test_a_similarity_without_an_hnsw_space_is_refused():
    """l1 is NMSLIB-only (deprecated): https://docs.opensearch.org/latest/field-types/supported-field-types/knn-methods-engines/"""
    with pytest.raises(ValueError, match="manhattan"):
        osb.knn_vector_mapping({"dimension": 4, "similarity": "manhattan"})


def test_bm25_field_and_similarity():
    """Custom BM25 similarity in index settings, referenced from a text field:
    https://www.elastic.co/docs/reference/elasticsearch/index-settings/similarity (same settings in OpenSearch);
    copy_to gathers title and text into the one field BM25 scores."""
    body = osb.mapping_body(toy_meta())
    assert body["settings"]["index"]["similarity"]["hybrid_search_bm25"] == {"type": "BM25", "k1": 0.9, "b": 0.4}
    props = body["mappings"]["properties"]
    assert props["title"]["copy_to"] == props["text"]["copy_to"] == "content"
    assert props["content"] == {"type": "text", "similarity": "hybrid_search_bm25"}


# --- queries ----------------------------------------------------------------------------------------
def test_neural_sparse_with_raw_query_tokens():
    """https://docs.opensearch.org/latest/query-dsl/specialized/neural-sparse/ ("Using raw vectors":
    ``{"neural_sparse": {"<rank_features_field>": {"query_tokens": {"<token>": <weight>}}}}``)."""
    assert osb.neural_sparse_query({"hi": 4.33, "a%2Em%2E": 1.5}) == {
        "neural_sparse": {"sparse": {"query_tokens": {"hi": 4.33, "a%2Em%2E": 1.5}}}
    }
    assert osb.neural_sparse_query({}) == {"match_none": {}}


def test_rank_feature_fallback_scores_the_dot_product():
    """rank_feature on a feature of a rank_features field (``field.feature``) with ``boost``:
    https://docs.opensearch.org/latest/query-dsl/specialized/rank-feature/ ; the ``linear`` function (score = S) is
    documented at https://www.elastic.co/docs/reference/query-languages/query-dsl/query-dsl-rank-feature-query and was
    added to OpenSearch in opensearch-project/OpenSearch#1025 (issue #977); bool ``should`` sums clause scores:
    https://docs.opensearch.org/latest/query-dsl/compound/bool/ . Values keep 9 significant bits (~0.4%):
    https://docs.opensearch.org/latest/field-types/supported-field-types/rank/"""
    rng = np.random.default_rng(0)
    query, doc = (SparseVector(np.sort(rng.choice(300, 60, replace=False)), rng.gamma(1.0, 0.7, 60)) for _ in range(2))
    keys = {int(i): f"t{i}" for i in np.union1d(query.indices, doc.indices)}
    q_features = {keys[int(i)]: float(w) for i, w in zip(query.indices, query.values)}
    d_features = {keys[int(i)]: float(w) for i, w in zip(doc.indices, doc.values)}
    body = lucene.rank_feature_query(q_features)
    assert body["bool"]["minimum_should_match"] == 1
    clause = body["bool"]["should"][0]["rank_feature"]
    assert (
        set(clause) == {"field", "linear", "boost"} and clause["field"].startswith("sparse.") and clause["linear"] == {}
    )

    def nine_bits(x: float) -> float:  # what rank_features stores: top 9 significant bits of the float
        return float(np.frombuffer((np.float32(x).view(np.uint32) >> 15 << 15).tobytes(), dtype=np.float32)[0])

    def score(stored) -> float:  # Σ over matching clauses of linear(S) · boost
        total = 0.0
        for c in body["bool"]["should"]:
            feature = c["rank_feature"]["field"].split(".", 1)[1]
            if feature in d_features:
                total += stored(d_features[feature]) * c["rank_feature"]["boost"]
        return total

    assert score(float) == pytest.approx(query.dot(doc), rel=1e-6)
    assert score(nine_bits) == pytest.approx(query.dot(doc), rel=2**-8)
    assert lucene.rank_feature_query({}) == {"match_none": {}}


def test_knn_query_with_and_without_a_filter():
    """https://docs.opensearch.org/latest/query-dsl/specialized/k-nn/index/ (``{"knn": {"<vector_field>": {"vector": [...],
    "k": k, "filter": {...}}}}``; filters need the Lucene or Faiss engine)."""
    assert osb.knn_query(np.array([0.5, 1, 2]), 7) == {"knn": {"dense": {"vector": [0.5, 1.0, 2.0], "k": 7}}}
    filtered = osb.knn_query(np.array([1, 0, 0]), 3, {"lang": ["en", "fr"], "year": 2020})
    assert filtered["knn"]["dense"]["filter"] == {
        "bool": {"filter": [{"terms": {"meta.lang": ["en", "fr"]}}, {"term": {"meta.year": 2020}}]}
    }


def test_exact_knn_uses_the_knn_scoring_script():
    """https://docs.opensearch.org/latest/vector-search/vector-search-techniques/knn-score-script/ and the scoring
    script filter example https://docs.opensearch.org/latest/vector-search/filter-search-knn/scoring-script-filter/"""
    body = osb.exact_knn_query(np.array([1.0, 2.0, 3.0]), "cosine", {"lang": "en"})
    assert body == {
        "script_score": {
            "query": {"bool": {"filter": [{"term": {"meta.lang": "en"}}]}},
            "script": {
                "source": "knn_score",
                "lang": "knn",
                "params": {"field": "dense", "query_value": [1.0, 2.0, 3.0], "space_type": "cosinesimil"},
            },
        }
    }
    assert osb.exact_knn_query(np.zeros(3), "dot")["script_score"]["query"] == {"match_all": {}}


def test_bm25_match_query_with_filters():
    """match query: https://docs.opensearch.org/latest/query-dsl/full-text/match/ ; filters in bool ``filter``:
    https://docs.opensearch.org/latest/query-dsl/compound/bool/"""
    body = lucene.search_body(lucene.with_filters(lucene.bm25_query("capital of france"), {"lang": "en"}), 10)
    assert body == {
        "query": {
            "bool": {
                "must": [{"match": {"content": {"query": "capital of france"}}}],
                "filter": [{"term": {"meta.lang": "en"}}],
            }
        },
        "size": 10,
        "_source": ["doc_id"],
    }


def test_hybrid_query_and_rrf_pipeline():
    """hybrid query: https://docs.opensearch.org/latest/query-dsl/compound/hybrid/ (``{"hybrid": {"queries": [...]}}``,
    at most 5 clauses, top-level only); score-ranker-processor:
    https://docs.opensearch.org/latest/search-plugins/search-pipelines/score-ranker-processor/ ; per-subquery depth is
    ``from + size``: https://docs.opensearch.org/latest/vector-search/ai-search/hybrid-search/pagination/"""
    body = osb.hybrid_body({"match_none": {}}, {"knn": {"dense": {"vector": [1.0], "k": 50}}}, 50)
    assert body == {
        "size": 50,
        "_source": ["doc_id"],
        "query": {"hybrid": {"queries": [{"match_none": {}}, {"knn": {"dense": {"vector": [1.0], "k": 50}}}]}},
    }
    assert osb.rrf_pipeline_body(60)["phase_results_processors"] == [
        {"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": 60}}}
    ]
    assert osb.pipeline_name("rrf", 60.0) == "hybrid-search-rrf-60"


def test_opensearch_rrf_is_our_rrf():
    """OpenSearch's RRF: score(d) = Σ_q 1/(k + rank_q(d)), ranks from 1, absent clauses contribute nothing:
    https://docs.opensearch.org/latest/vector-search/ai-search/hybrid-search/rrf/ — so rank_constant = our k."""
    sparse = [ScoredId("a", 9), ScoredId("b", 8), ScoredId("c", 7)]
    dense = [ScoredId("c", 0.9), ScoredId("d", 0.8)]
    fused = {h.id: h.score for h in rrf({"sparse": sparse, "dense": dense}, k=60)}
    assert fused["c"] == pytest.approx(1 / (60 + 3) + 1 / (60 + 1))
    assert fused["d"] == pytest.approx(1 / (60 + 2))


def test_normalization_pipeline_before_2_19():
    """https://docs.opensearch.org/latest/search-plugins/search-pipelines/normalization-processor/ (min_max +
    arithmetic_mean, equal weights when ``weights`` is left out)."""
    assert osb.normalization_pipeline_body()["phase_results_processors"] == [
        {
            "normalization-processor": {
                "normalization": {"technique": "min_max"},
                "combination": {"technique": "arithmetic_mean"},
            }
        }
    ]


def test_search_response_parsing():
    """Response shape (``hits.hits[]._source`` / ``_score``) as in the rank-feature example:
    https://docs.opensearch.org/latest/query-dsl/specialized/rank-feature/"""
    response = {
        "hits": {
            "total": {"value": 2, "relation": "eq"},
            "max_score": 0.93,
            "hits": [
                {
                    "_index": "products",
                    "_id": "7",
                    "_score": 0.9252834,
                    "_source": {"doc_id": "7", "title": "4K Monitor"},
                },
                {"_index": "products", "_id": "6", "_score": 0.86095566, "_source": {"doc_id": "6"}},
            ],
        }
    }
    assert lucene.parse_hits(response) == [
        ({"doc_id": "7", "title": "4K Monitor"}, 0.9252834),
        ({"doc_id": "6"}, 0.86095566),
    ]


def test_bulk_actions_for_the_helpers():
    """Action format of the bulk helpers (``_op_type``, ``_index``, ``_id``, ``_source``):
    https://elasticsearch-py.readthedocs.io/en/v8.17.2/_sources/helpers.rst.txt (opensearch-py is its fork and takes
    the same actions)."""
    actions = list(
        lucene.index_actions(
            "docs",
            ["p1", "p2"],
            [{"doc_id": "1"}, {"doc_id": "2"}],
            [{"paris": 1.5}, {}],
            np.array([[1, 0], [0, 1]], dtype=np.float32),
        )
    )
    assert actions[0] == {
        "_op_type": "index",
        "_index": "docs",
        "_id": "p1",
        "_source": {"doc_id": "1", "sparse": {"paris": 1.5}, "dense": [1.0, 0.0]},
    }
    assert "sparse" not in actions[1]["_source"]  # an empty rank_features map is left out
    assert list(lucene.delete_actions("docs", ["p1"])) == [{"_op_type": "delete", "_index": "docs", "_id": "p1"}]


def test_run_bulk_reports_every_failed_item_and_retries_429():
    """streaming_bulk yields ``(ok, {op_type: item})`` per action and retries 429 up to ``max_retries``:
    https://elasticsearch-py.readthedocs.io/en/v8.17.2/_sources/helpers.rst.txt"""
    seen = {}

    def fake_streaming_bulk(client, actions, **kwargs):
        seen.update(kwargs)
        for a in actions:
            if a["_id"] == "bad":
                yield (
                    False,
                    {
                        "index": {
                            "_id": "bad",
                            "status": 400,
                            "error": {"type": "mapper_parsing_exception", "reason": "failed to parse"},
                        }
                    },
                )
            else:
                yield True, {"index": {"_id": a["_id"], "status": 201}}

    with pytest.raises(
        BulkWriteError, match="1 of 3 bulk operations failed: id bad status 400 mapper_parsing_exception"
    ):
        lucene.run_bulk(fake_streaming_bulk, None, [{"_id": "a"}, {"_id": "bad"}, {"_id": "c"}])
    assert seen["max_retries"] == 3 and seen["raise_on_error"] is False and seen["chunk_size"] == 500


@pytest.mark.parametrize(
    "number,tokens,rrf_,fusions",
    [
        ("2.11.0", False, False, ("convex",)),
        ("2.14.0", True, False, ("convex",)),
        ("2.19.2", True, True, ("rrf",)),
        ("3.1.0", True, True, ("rrf",)),
    ],
)
def test_capabilities_by_version(number, tokens, rrf_, fusions):
    """Raw query_tokens from neural-search 2.14 (opensearch-project/neural-search#608); score-ranker-processor
    "Introduced 2.19"; normalization-processor "Introduced 2.10"; ``GET /`` reports ``version.distribution``."""
    caps = osb.capabilities({"version": {"distribution": "opensearch", "number": number}}, [osb.NEURAL_PLUGIN])
    assert (caps.neural_sparse_tokens, caps.score_ranker, caps.fusions) == (tokens, rrf_, fusions)
    bare = osb.capabilities({"version": {"distribution": "opensearch", "number": number}}, ["opensearch-knn"])
    assert not bare.neural_sparse_tokens and bare.fusions == ()


def test_capabilities_refuse_other_engines_and_old_versions():
    with pytest.raises(EngineUnavailableError, match="elasticsearch"):
        osb.capabilities({"version": {"number": "9.1.0", "build_flavor": "default"}}, None)
    with pytest.raises(EngineUnavailableError, match="2.11"):
        osb.capabilities({"version": {"distribution": "opensearch", "number": "2.9.0"}}, None)


def test_locations():
    assert lucene.parse_target("https://h:9200/msmarco") == ("https://h:9200", "msmarco")
    assert lucene.parse_target("http://h:9200/") == ("http://h:9200", "hybrid-search")
    for bad in ("http://h:9200/Upper", "http://h:9200/a/b", "ftp://h/x", "http://h:9200/_x"):
        with pytest.raises(ValueError):
            lucene.parse_target(bad)


# --- the adapter over the real client ----------------------------------------------------------------
def docs() -> list[Document]:
    return [
        Document("d1", "Paris is the capital.", "Paris", {"lang": "fr"}),
        Document("d2", "Opens at 9 a.m.", "", {"lang": "en"}),
    ]


def vectors():
    return [sparse_vec({1: 2.0, 2: 0.5}), sparse_vec({2: 1.0, 4: 0.25})], np.array(
        [[1, 0, 0], [0, 1, 0]], dtype=np.float32
    )


def build(server: FakeServer, **kwargs) -> OpenSearchIndex:
    return OpenSearchIndex.create(
        "http://fake-opensearch:9200/docs", toy_meta(), client=opensearch_client(server), vocabulary=TOY_VOCAB, **kwargs
    )


def test_create_upsert_and_reopen_through_the_client():
    server = FakeServer(OPENSEARCH_219, plugins=[osb.NEURAL_PLUGIN])
    index = build(server)
    assert index.location == "opensearch+http://fake-opensearch:9200/docs"
    assert server.bodies("PUT", "/docs")[0] == osb.mapping_body(index.meta)
    sparse, dense = vectors()
    index.upsert(docs(), sparse, dense)
    lines = server.bodies("POST", "/_bulk")[0]
    assert lines[0] == {"index": {"_index": "docs", "_id": point_id("d1")}}
    assert lines[3]["sparse"] == {"a%2Em%2E": 1.0, "café": 0.25} and lines[3]["meta"] == {"lang": "en"}
    assert server.bodies("PUT", "/docs/_mapping")[-1] == {"_meta": {"hybrid_search": index.meta.to_dict()}}
    assert index.count() == 2
    reopened = OpenSearchIndex.open(
        "http://fake-opensearch:9200/docs", client=opensearch_client(server), vocabulary=TOY_VOCAB
    )
    assert reopened.meta == index.meta and reopened.meta.metadata_fields == ["lang"]


def test_bulk_item_failures_surface():
    server = FakeServer(OPENSEARCH_219, plugins=[osb.NEURAL_PLUGIN], fail_ids=(point_id("d2"),))
    index = build(server)
    with pytest.raises(BulkWriteError, match="1 of 2 bulk operations failed.*document_parsing_exception"):
        index.upsert(docs(), *vectors())
    index.delete(["never-stored"])  # a delete of a missing document is not an error


def test_channel_searches_send_the_documented_queries():
    server = FakeServer(
        OPENSEARCH_219, plugins=[osb.NEURAL_PLUGIN], hits=[{"_id": "x", "_score": 2.5, "_source": {"doc_id": "d1"}}]
    )
    index = build(server)
    index.meta.metadata_fields = ["lang"]
    assert index.search_sparse(sparse_vec({1: 1.0, 5: 0.5}), 5, {"lang": "fr"}) == [ScoredId("d1", 2.5)]
    query = server.bodies("POST", "/docs/_search")[-1]["query"]
    assert query["bool"]["must"][0] == {"neural_sparse": {"sparse": {"query_tokens": {"paris": 1.0, "%2E": 0.5}}}}
    index.search_dense(np.array([0.0, 1.0, 0.0]), 4)
    assert server.bodies("POST", "/docs/_search")[-1]["query"] == {
        "knn": {"dense": {"vector": [0.0, 1.0, 0.0], "k": 4}}
    }
    index.search_bm25("paris", 3)
    assert server.bodies("POST", "/docs/_search")[-1]["query"] == {"match": {"content": {"query": "paris"}}}
    with pytest.raises(UnknownFilterFieldError):
        index.search_bm25("paris", 3, {"colour": "red"})


def test_hybrid_search_uses_the_rrf_pipeline_once():
    hits = [{"_id": str(i), "_score": 1 / (61 + i), "_source": {"doc_id": f"d{i}"}} for i in range(6)]
    server = FakeServer(OPENSEARCH_219, plugins=[osb.NEURAL_PLUGIN], hits=hits)
    index = build(server)
    for _ in range(2):
        ranking = index.search_hybrid(sparse_vec({1: 1.0}), np.array([1.0, 0, 0]), 3, prefetch_k=6)
    assert [h.id for h in ranking] == ["d0", "d1", "d2"]
    assert len(server.bodies("PUT", "/_search/pipeline/hybrid-search-rrf-60")) == 1
    assert server.params("POST", "/docs/_search")[-1]["search_pipeline"] == "hybrid-search-rrf-60"
    body = server.bodies("POST", "/docs/_search")[-1]
    assert body["size"] == 6 and [next(iter(q)) for q in body["query"]["hybrid"]["queries"]] == ["neural_sparse", "knn"]


def test_older_servers_fall_back_to_rank_features_and_client_side_rrf():
    server = FakeServer(
        OPENSEARCH_213, plugins=[osb.NEURAL_PLUGIN], hits=[{"_id": "x", "_score": 1.0, "_source": {"doc_id": "d1"}}]
    )
    index = build(server)
    assert index.engine_fusions == ("convex",)
    index.search_hybrid(sparse_vec({1: 1.0}), np.array([1.0, 0, 0]), 3)
    assert not server.bodies("PUT", "/_search/pipeline/hybrid-search-rrf-60")
    sparse_query = server.bodies("POST", "/docs/_search")[-2]["query"]
    assert sparse_query["bool"]["should"][0]["rank_feature"]["field"] == "sparse.paris"
    index.search_hybrid(
        sparse_vec({1: 1.0}), np.array([1.0, 0, 0]), 3, fusion="convex", weights={"sparse": 2, "dense": 1}
    )
    assert not server.bodies("PUT", "/_search/pipeline/hybrid-search-minmax")  # weighted: client-side


def test_stored_sparse_vectors_decode_back_to_vocabulary_ids():
    """Multi-get by ``_id`` with per-document ``_source`` fields (``{"docs": [{"_id", "_source": [...]}]}``, answers
    ``{"docs": [{"_id", "found", "_source"}]}``): https://www.elastic.co/guide/en/elasticsearch/reference/current/docs-multi-get.html
    (OpenSearch keeps the same API)."""
    server = FakeServer(OPENSEARCH_219, plugins=[osb.NEURAL_PLUGIN])
    index = build(server)
    index.upsert(docs(), *vectors())
    got = index.sparse_vectors(["d2", "never-stored"])
    assert list(got) == ["d2"] and got["d2"].indices.tolist() == [2, 4] and got["d2"].values.tolist() == [1.0, 0.25]
    body = server.bodies("POST", "/docs/_mget")[-1]
    assert body == {
        "docs": [
            {"_id": point_id("d2"), "_source": ["doc_id", "sparse"]},
            {"_id": point_id("never-stored"), "_source": ["doc_id", "sparse"]},
        ]
    }
    assert not server.bodies("POST", "/docs/_refresh")  # multi-get is real-time: no refresh needed
    assert index.count() == 2 and len(server.bodies("POST", "/docs/_refresh")) == 1


def test_opening_a_missing_index_says_how_to_build_it():
    server = FakeServer(OPENSEARCH_219, plugins=[osb.NEURAL_PLUGIN])
    with pytest.raises(
        IndexNotFoundError, match="hybrid-search index CORPUS --index opensearch\\+http://fake-opensearch:9200/nope"
    ):
        OpenSearchIndex.open("http://fake-opensearch:9200/nope", client=opensearch_client(server))
    with pytest.raises(EngineUnavailableError):
        OpenSearchIndex.open(
            "http://fake-opensearch:9200/x", client=opensearch_client(FakeServer({"version": {"number": "9.1.0"}}))
        )
