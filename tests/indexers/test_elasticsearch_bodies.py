"""Elasticsearch request bodies and response parsing, checked against the shapes in Elasticsearch's documentation.

No Elasticsearch server runs here (../shared/OFFLINE.md): the bodies are compared with the documented request
shapes (each test names its page), and the adapter's wiring runs through the real elasticsearch-py client over a
fake node (tests/lucene_fakes.py) that answers in the documented response shapes.
"""

from __future__ import annotations

import numpy as np
import pytest

from hybrid_search.fusion import rrf
from hybrid_search.index import point_id
from hybrid_search.types import Document, ScoredId
from indexers import _lucene as lucene
from indexers import elasticsearch as esb
from indexers._lucene import EngineUnavailableError
from indexers.elasticsearch import ElasticsearchCapabilities, ElasticsearchIndex
from tests.lucene_fakes import (
    TOY_VOCAB,
    FakeServer,
    elasticsearch_client,
    sparse_vec,
    toy_meta,
)

ES_91 = {
    "name": "es",
    "cluster_name": "docker-cluster",
    "version": {"number": "9.1.5", "build_flavor": "default"},
    "tagline": "You Know, for Search",
}
ES_92 = {"version": {"number": "9.2.0"}}


# --- mapping ----------------------------------------------------------------------------------------
def test_mapping_has_sparse_vector_and_plain_hnsw_dense_vector():
    """sparse_vector field: https://www.elastic.co/docs/reference/elasticsearch/mapping-reference/sparse-vector ;
    dense_vector with ``dims``, ``index``, ``similarity`` and ``index_options.type: hnsw`` (not the quantized default,
    bbq_hnsw for >= 384 dims from 9.1, int8_hnsw before):
    https://www.elastic.co/docs/reference/elasticsearch/mapping-reference/dense-vector ; _meta:
    https://www.elastic.co/docs/reference/elasticsearch/mapping-reference/mapping-meta-field"""
    body = esb.mapping_body(toy_meta(), ElasticsearchCapabilities((9, 1, 5), "trial"))
    props = body["mappings"]["properties"]
    assert props["sparse"] == {"type": "sparse_vector"}
    assert props["lexical"] == {"type": "integer", "index": False, "doc_values": False}
    assert props["dense"] == {
        "type": "dense_vector",
        "dims": 3,
        "index": True,
        "similarity": "cosine",
        "index_options": {"type": "hnsw", "m": 16, "ef_construction": 100},
    }
    assert body["mappings"]["_meta"]["hybrid_search"]["dense"]["name"] == "toy-dense"
    assert "mapping" not in body["settings"]["index"]


def test_vectors_stay_in_source_from_9_2():
    """From 9.2 ``index.mapping.exclude_source_vectors`` is on for new indices and vectors are rehydrated (sparse at
    9-bit precision); setting it to false keeps the original values:
    https://www.elastic.co/docs/reference/elasticsearch/mapping-reference/dense-vector ("Storing original vectors in
    _source") and https://www.elastic.co/docs/reference/elasticsearch/mapping-reference/sparse-vector (9 significant bits)."""
    body = esb.mapping_body(toy_meta(), ElasticsearchCapabilities((9, 2, 0), "basic"))
    assert body["settings"]["index"]["mapping"] == {"exclude_source_vectors": False}


@pytest.mark.parametrize("ours,theirs", [("cosine", "cosine"), ("dot", "max_inner_product"), ("euclidean", "l2_norm")])
def test_similarity_names(ours, theirs):
    """``dot_product`` requires unit-length vectors; ``max_inner_product`` does not:
    https://www.elastic.co/docs/reference/elasticsearch/mapping-reference/dense-vector (valid values for similarity)."""
    assert esb.dense_vector_mapping({"dimension": 8, "similarity": ours})["similarity"] == theirs
    with pytest.raises(ValueError):
        esb.similarity_for("manhattan")


# --- queries ----------------------------------------------------------------------------------------
def test_sparse_vector_query_with_a_precomputed_vector():
    """https://www.elastic.co/docs/reference/query-languages/query-dsl/query-dsl-sparse-vector-query ("Example request
    using precomputed vectors": ``{"sparse_vector": {"field", "query_vector": {token: weight}}}``; scoring "is effectively
    a dot product"; ``prune`` false keeps every token, overriding the field's 9.1+ pruning default:
    https://www.elastic.co/docs/reference/elasticsearch/mapping-reference/sparse-vector)."""
    assert esb.sparse_vector_query({"token1": 0.5, "a%2Em%2E": 0.3}) == {
        "sparse_vector": {"field": "sparse", "query_vector": {"token1": 0.5, "a%2Em%2E": 0.3}, "prune": False}
    }
    assert esb.sparse_vector_query({}) == {"match_none": {}}


def test_knn_query_and_retriever():
    """knn query (``field``, ``query_vector``, ``k``, ``num_candidates`` <= 10,000, ``filter`` as a pre-filter):
    https://www.elastic.co/docs/reference/query-languages/query-dsl/query-dsl-knn-query ; the knn retriever takes the
    same parameters: https://www.elastic.co/docs/reference/elasticsearch/rest-apis/retrievers/knn-retriever"""
    assert esb.knn_query(np.array([0.5, 1, 2]), 10) == {
        "knn": {"field": "dense", "query_vector": [0.5, 1.0, 2.0], "k": 10, "num_candidates": 100}
    }
    filtered = esb.knn_query(np.ones(3), 100, {"lang": "en"})["knn"]
    assert filtered["num_candidates"] == 200 and filtered["filter"] == [{"term": {"meta.lang": "en"}}]
    assert esb.num_candidates(9000) == 10_000


def test_exact_scoring_scripts_reproduce_the_knn_scores():
    """script_score with the vector functions (``cosineSimilarity``, ``dotProduct``, ``l2norm``):
    https://www.elastic.co/docs/reference/query-languages/query-dsl/query-dsl-script-score-query#vector-functions-cosine ;
    the kNN ``_score`` per similarity — cosine ``(1 + cos) / 2``, max_inner_product ``1 / (1 - d)`` below 0 else
    ``d + 1``, l2_norm ``1 / (1 + l2²)``: https://www.elastic.co/docs/reference/elasticsearch/mapping-reference/dense-vector"""
    body = esb.exact_dense_query(np.array([1.0, 2.0]), "cosine", {"lang": ["en", "fr"]})
    assert body == {
        "script_score": {
            "query": {"bool": {"filter": [{"terms": {"meta.lang": ["en", "fr"]}}]}},
            "script": {
                "source": "(cosineSimilarity(params.query_vector, 'dense') + 1.0) / 2.0",
                "params": {"query_vector": [1.0, 2.0]},
            },
        }
    }
    assert "dotProduct" in esb.exact_dense_query(np.ones(2), "dot")["script_score"]["script"]["source"]
    assert "l2norm" in esb.exact_dense_query(np.ones(2), "euclidean")["script_score"]["script"]["source"]


def test_rrf_retriever_body():
    """https://www.elastic.co/docs/reference/elasticsearch/rest-apis/retrievers/rrf-retriever (``retrievers`` with a
    ``standard`` and a ``knn`` child, ``rank_constant`` >= 1, ``rank_window_size`` >= ``size``; the result is pruned to
    the request's ``size``)."""
    body = esb.rrf_body({"sparse_vector": {}}, {"knn": {"field": "dense"}}, k=10, prefetch_k=100, rank_constant=60)
    assert body == {
        "size": 10,
        "_source": ["doc_id"],
        "retriever": {
            "rrf": {
                "retrievers": [{"standard": {"query": {"sparse_vector": {}}}}, {"knn": {"field": "dense"}}],
                "rank_constant": 60,
                "rank_window_size": 100,
            }
        },
    }
    assert esb.rrf_body({}, {}, k=50, prefetch_k=20, rank_constant=60)["retriever"]["rrf"]["rank_window_size"] == 50


def test_elasticsearch_rrf_example_is_our_rrf():
    """The worked example of https://www.elastic.co/docs/reference/elasticsearch/rest-apis/reciprocal-rank-fusion
    (rank_constant 1; query ranks 4,3,2,1 for docs 4,3,2,1 by position; knn ranks docs 3,2,1,5): scores
    _id 3 = 0.8333, 2 = 0.5833, 4 = 0.5, 1 = 0.45, 5 = 0.2 — ranks from 1, so rank_constant is our k unchanged."""
    query = [ScoredId(i, 0) for i in ("4", "3", "2", "1")]
    knn = [ScoredId(i, 0) for i in ("3", "2", "1", "5")]
    fused = rrf({"query": query, "knn": knn}, k=1)
    assert [h.id for h in fused] == ["3", "2", "4", "1", "5"]
    assert [round(h.score, 4) for h in fused] == [0.8333, 0.5833, 0.5, 0.45, 0.2]


def test_search_response_parsing():
    """Response shape of the RRF example (``hits.hits[]._id/_score/_source``):
    https://www.elastic.co/docs/reference/elasticsearch/rest-apis/reciprocal-rank-fusion"""
    response = {
        "hits": {
            "total": {"value": 5, "relation": "eq"},
            "max_score": None,
            "hits": [
                {"_index": "example-index", "_id": "3", "_score": 0.8333334, "_source": {"doc_id": "3"}},
                {"_index": "example-index", "_id": "2", "_score": 0.5833334, "_source": {"doc_id": "2"}},
            ],
        }
    }
    assert lucene.parse_hits(response) == [({"doc_id": "3"}, 0.8333334), ({"doc_id": "2"}, 0.5833334)]


def test_meta_from_a_get_mapping_response():
    """``GET INDEX/_mapping`` returns ``{index: {"mappings": {"_meta": ...}}}``:
    https://www.elastic.co/docs/reference/elasticsearch/mapping-reference/mapping-meta-field"""
    response = {"docs-v2": {"mappings": {"_meta": {"hybrid_search": {"engine": "elasticsearch"}}, "properties": {}}}}
    assert lucene.meta_from_mapping(response, "docs") == {"engine": "elasticsearch"}  # an alias: first index
    assert lucene.meta_from_mapping({"x": {"mappings": {}}}, "x") is None


@pytest.mark.parametrize(
    "number,license_,rrf_,keeps",
    [
        ("8.15.0", "trial", False, True),
        ("8.16.0", "enterprise", True, True),
        ("9.1.5", "basic", False, True),
        ("9.1.5", "trial", True, True),
        ("9.2.0", "trial", True, False),
    ],
)
def test_capabilities(number, license_, rrf_, keeps):
    """rrf retriever GA from 8.16 (retrievers: https://www.elastic.co/docs/reference/elasticsearch/rest-apis/retrievers),
    an enterprise-level feature (elastic/elasticsearch#125225: "RRF is an enterprise level feature for the search DSL");
    vectors left out of _source from 9.2."""
    caps = esb.capabilities({"version": {"number": number}}, license_)
    assert (caps.rrf, caps.keeps_source_vectors) == (rrf_, keeps)


def test_capabilities_refuse_opensearch_and_old_versions():
    with pytest.raises(EngineUnavailableError, match="opensearch"):
        esb.capabilities({"version": {"distribution": "opensearch", "number": "2.19.0"}}, None)
    with pytest.raises(EngineUnavailableError, match="8.15"):
        esb.capabilities({"version": {"number": "8.14.3"}}, "trial")


# --- the adapter over the real client ----------------------------------------------------------------
def build(server: FakeServer, **kwargs) -> ElasticsearchIndex:
    return ElasticsearchIndex.create(
        "http://fake-es:9200/docs", toy_meta(), client=elasticsearch_client(server), vocabulary=TOY_VOCAB, **kwargs
    )


def test_create_and_bulk_through_the_client():
    server = FakeServer(ES_92, license_type="trial")
    index = build(server)
    assert index.engine_fusions == ("rrf",) and index.location == "elasticsearch+http://fake-es:9200/docs"
    assert server.bodies("PUT", "/docs")[0] == esb.mapping_body(index.meta, index.capabilities)
    docs = [Document("d1", "Paris.", "", {"lang": "fr"}), Document("d2", "9 a.m.", "", {"lang": "en"})]
    index.upsert(docs, [sparse_vec({1: 2.0}), sparse_vec({2: 1.0, 5: 0.5})], np.eye(2, 3, dtype=np.float32))
    lines = server.bodies("PUT", "/_bulk")[0]  # elasticsearch-py 9 sends PUT /_bulk
    assert lines[2] == {"index": {"_index": "docs", "_id": point_id("d2")}}
    assert lines[3]["sparse"] == {"a%2Em%2E": 1.0, "%2E": 0.5} and lines[3]["dense"] == [0.0, 1.0, 0.0]
    assert index.count() == 2
    index.delete(["d1", "never-stored"])  # a 404 for the missing one is not a failure
    assert index.count() == 1
    reopened = ElasticsearchIndex.open("http://fake-es:9200/docs", client=elasticsearch_client(server))
    assert reopened.meta == index.meta and reopened.meta.metadata_fields == ["lang"]


def test_hybrid_search_sends_the_rrf_retriever():
    hits = [{"_id": "p", "_score": 0.03, "_source": {"doc_id": "d1"}}]
    server = FakeServer(ES_91, license_type="trial", hits=hits)
    index = build(server)
    index.meta.metadata_fields = ["lang"]
    assert index.search_hybrid(
        sparse_vec({1: 1.0}), np.array([1.0, 0, 0]), 5, prefetch_k=40, filters={"lang": "fr"}
    ) == [ScoredId("d1", 0.03)]
    rrf_ = server.bodies("POST", "/docs/_search")[-1]["retriever"]["rrf"]
    standard, knn = rrf_["retrievers"]
    assert standard["standard"]["query"]["bool"]["must"][0]["sparse_vector"]["query_vector"] == {"paris": 1.0}
    assert knn["knn"]["k"] == 40 and knn["knn"]["filter"] == [{"term": {"meta.lang": "fr"}}]
    assert (rrf_["rank_constant"], rrf_["rank_window_size"]) == (60, 40)


def test_basic_license_fuses_client_side_and_exact_mode_scores_by_script():
    hits = [{"_id": "p", "_score": 1.0, "_source": {"doc_id": "d1"}}]
    server = FakeServer(ES_91, license_type="basic", hits=hits)
    index = build(server, exact=True)
    assert index.engine_fusions == ()
    index.search_hybrid(sparse_vec({1: 1.0}), np.array([1.0, 0, 0]), 5)
    searches = server.bodies("POST", "/docs/_search")
    assert "retriever" not in searches[-1] and "script_score" in searches[-1]["query"]
    assert searches[-2]["query"]["sparse_vector"]["field"] == "sparse"
