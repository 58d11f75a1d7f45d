"""Recorded responses through the adapters' parsers, and the adapters' bodies compared with the requests of the
OpenSearch story tests that do the same thing.

The OpenSearch story tests (../shared/specs/opensearch/tests) were run against real clusters in that project's
CI; each chapter records its request and the part of the response it checks (a story records only the fields
it asserts, so some responses lack fields a parser needs: the tests say where). Elasticsearch's examples
(../shared/specs/elasticsearch/examples) are the specification's own request and response examples.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

import numpy as np
import pytest

from hybrid_search.index import IndexMeta
from indexers import _lucene as lucene
from indexers import elasticsearch as esb
from indexers import opensearch as osb
from indexers._lucene import BulkWriteError
from tests import api_specs as specs

pytestmark = pytest.mark.skipif(not specs.available(), reason=specs.skip_reason())


def chapter(story: str, synopsis_start: str = "") -> dict[str, Any]:
    return next(
        c for c in specs.story_chapters(story) if c.get("synopsis", "").startswith(synopsis_start) and "response" in c
    )


def recorded_bulk(items: list[dict[str, Any]]):
    """What the client's ``streaming_bulk`` yields for a bulk response: ``(ok, {op: item})`` per item, ok for 2xx
    (an item without a status counts as 500, as in the helpers' ``_process_bulk_chunk_success``)."""

    def streaming_bulk(client, actions, **kwargs):
        for item in items:
            yield 200 <= next(iter(item.values())).get("status", 500) < 300, item

    return streaming_bulk


# --- OpenSearch stories -------------------------------------------------------------------------------
def test_knn_search_response():
    payload = chapter("default/_core/search/knn/search/search_k.yaml")["response"]["payload"]
    assert lucene.parse_hits(payload) == [
        (
            {"director": "Bennett Miller", "title": "Moneyball", "year": 2011, "embedding": [1.4, 2.3, 3.5, 4.1, 9.2]},
            1.0,
        )
    ]
    empty = chapter("default/_core/search/knn/search/search_filter.yaml")["response"]["payload"]
    assert lucene.parse_hits(empty) == []


def test_hybrid_pagination_response_lacks_the_hits():
    """The story asserts only ``hits.total.relation``; parse_hits needs ``hits.hits``, which it left out."""
    payload = chapter("default/_core/search/hybrid_query_pagination.yaml")["response"]["payload"]
    assert set(payload["hits"]) == {"total"}
    with pytest.raises(KeyError, match="hits"):
        lucene.parse_hits(payload)


def test_mget_response_lacks_found_and_source():
    """The story records ``_index`` and ``_id`` of each document only; parse_mget keeps documents whose
    ``found`` is true, so it returns none of these (the same documents with ``found``/``_source`` parse)."""
    payload = chapter("default/indices/mget.yaml", "Retrieve documents from multiple indexes (POST)")["response"][
        "payload"
    ]
    assert lucene.parse_mget(payload) == []
    completed = {"docs": [{**d, "found": True, "_source": {"doc_id": d["_id"]}} for d in payload["docs"]]}
    assert lucene.parse_mget(completed) == [{"doc_id": "movie1"}, {"doc_id": "movie2"}]


def test_get_mapping_response():
    """A mapping this project did not write has no ``_meta``: meta_from_mapping says so (None), for one index
    and for the first of several."""
    one = chapter("default/indices/mapping/mapping.yaml", "Get mappings for an index")["response"]["payload"]
    assert lucene.meta_from_mapping(one, "movies") is None
    several = chapter("default/indices/mapping/mapping.yaml", "Get mappings for multiple")["response"]["payload"]
    assert lucene.meta_from_mapping(several, "games") is None
    ours = {
        "movies": {"mappings": {**one["movies"]["mappings"], **lucene.meta_update_body(IndexMeta(engine="opensearch"))}}
    }
    assert lucene.meta_from_mapping(ours, "movies")["engine"] == "opensearch"


def test_bulk_response_with_a_missing_delete():
    payload = chapter("default/_core/bulk.yaml")["response"]["payload"]
    items = payload["items"]
    assert lucene.run_bulk(recorded_bulk(items), None, [], missing_ok=True) == 1
    with pytest.raises(BulkWriteError, match="id invalid status 404"):
        lucene.run_bulk(recorded_bulk(items), None, [])


def test_count_story_records_no_body():
    """The count stories assert the status only; the Elasticsearch example below carries the body."""
    assert "payload" not in chapter("default/_core/count.yaml")["response"]


def test_info_story_lacks_the_version_number():
    """``GET /``: the story records ``version.distribution`` (which tells OpenSearch from Elasticsearch) but not
    ``version.number``, which the capabilities need; with a number it reads as OpenSearch."""
    payload = chapter("default/_core/info.yaml", "Get server info (pretty=false)")["response"]["payload"]
    assert payload["version"] == {"distribution": "opensearch"}
    with pytest.raises(lucene.EngineUnavailableError, match="too old"):
        osb.capabilities(payload, None)
    caps = osb.capabilities({**payload, "version": {**payload["version"], "number": "2.19.2"}}, None)
    assert caps.fusions == ("rrf",)
    with pytest.raises(lucene.EngineUnavailableError, match="the server is OpenSearch"):
        esb.capabilities(payload, None)


# --- Elasticsearch examples ---------------------------------------------------------------------------
def test_elasticsearch_search_response():
    response = specs.es_example("_global/search/examples/200_response/SearchResponseExample1.yaml")
    ((source, score),) = lucene.parse_hits(response)
    assert score == pytest.approx(1.3862942) and source["user"] == {"id": "kimchy"}


def test_elasticsearch_license_response():
    """The embedded example of ``GET /_license`` in the generated document: a trial license, so RRF runs in the
    engine from 8.16."""
    operation = specs.lookup("elasticsearch", f"{specs.ES_URI}#/paths/~1_license/get")
    example = operation["responses"]["200"]["content"]["application/json"]["examples"]["GetLicenseResponseExample1"]
    response = json.loads(example["value"])
    assert esb.license_type(response) == "trial"
    assert esb.capabilities({"version": {"number": "8.16.0"}}, esb.license_type(response)).fusions == ("rrf",)
    assert esb.license_type({}) is None


def test_elasticsearch_count_response():
    assert lucene.parse_count(specs.es_example("_global/count/examples/200_response/CountResponseExample1.yaml")) == 1


@pytest.mark.parametrize("n", [1, 2, 3])
def test_elasticsearch_get_responses_as_mget_items(n):
    """A multi-get response's ``docs`` are get responses (``_global.mget.ResponseItem`` is a ``GetResult`` or an
    error); the examples have no multi-get response, so the get examples stand in as its items."""
    item = specs.es_example(f"_global/get/examples/response/GetResponseExample{n}.yaml")
    parsed = lucene.parse_mget({"docs": [item]})
    assert parsed == ([item.get("_source") or {}] if item.get("found") else [])


@pytest.mark.parametrize("n", [1, 2, 3])
def test_elasticsearch_bulk_responses(n):
    response = specs.es_example(f"_global/bulk/examples/response/BulkResponseExample{n}.yaml")
    # example 3 is filtered with filter_path=items.*.error: errors only, no status
    statuses = [next(iter(i.values())).get("status", 500) for i in response["items"]]
    bad = [s for s in statuses if not 200 <= s < 300]
    if bad:
        with pytest.raises(BulkWriteError, match=f"{len(bad)} of {len(statuses)} bulk operations failed"):
            lucene.run_bulk(recorded_bulk(response["items"]), None, [])
    else:
        assert lucene.run_bulk(recorded_bulk(response["items"]), None, []) == len(statuses)


def test_every_parser_reads_a_recorded_response():
    parsers = {
        name
        for name, fn in inspect.getmembers(lucene, inspect.isfunction)
        if fn.__module__ == lucene.__name__ and name.startswith(("parse_", "meta_from_"))
    } - {"parse_target"}
    assert parsers == {"parse_hits", "parse_mget", "parse_count", "meta_from_mapping"}, parsers
    assert lucene.response_body({"a": 1}) == {"a": 1}  # opensearch-py returns the body itself


# --- the adapters' bodies against the stories, field by field -------------------------------------------
def flatten(value: Any, path: str = "") -> dict[str, Any]:
    """``{"a.b[0].c": leaf}``; lists of numbers stay whole (a vector is one value)."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, child in value.items():
            out.update(flatten(child, f"{path}.{key}" if path else key))
        return out or {path: {}}
    if isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value):
        out = {}
        for i, child in enumerate(value):
            out.update(flatten(child, f"{path}[{i}]"))
        return out
    return {path: value}


def differences(story: dict[str, Any], ours: dict[str, Any]) -> set[str]:
    a, b = flatten(story), flatten(ours)
    return {k for k in a.keys() | b.keys() if a.get(k, "<absent>") != b.get(k, "<absent>")}


def test_score_ranker_pipeline_matches_the_story():
    story = specs.story_chapters("default/search_pipeline/search_phase_results_processors/score_ranker.yaml")[0][
        "request"
    ]["payload"]
    intentional = {"description": "free text"}
    assert differences(story, osb.rrf_pipeline_body(40)) == set(intentional)


def test_normalization_pipeline_matches_the_story():
    story = specs.story_chapters("default/search_pipeline/search_phase_results_processors/normalization.yaml")[0][
        "request"
    ]["payload"]
    intentional = {
        "description": "free text",
        "phase_results_processors[0].normalization-processor.combination.parameters.weights": "the adapter's pipeline weighs the channels equally (the default); weighted convex fusion runs "
        "client-side (OpenSearchIndex.search_hybrid)",
    }
    assert differences(story, osb.normalization_pipeline_body()) == set(intentional)


def test_hybrid_query_matches_the_pagination_story():
    story = chapter("default/_core/search/hybrid_query_pagination.yaml")["request"]["payload"]
    ours = osb.hybrid_body({"match": {"title": "Kill"}}, {"match": {"title": "Gatsby"}}, 10)
    intentional = {
        "query.hybrid.pagination_depth": "the adapter never pages (from is 0): each subquery's depth is `size`, "
        "which pagination_depth (2.19+) only needs for from > 0",
        "size": "the fused list's depth (per-channel depth, see hybrid_body)",
        "_source": "only doc_id comes back; documents are fetched by id afterwards",
    }
    assert differences(story, ours) == set(intentional)


def test_knn_query_matches_the_knn_stories():
    for story, k, filters in (
        ("default/_core/search/knn/search/search_k.yaml", 1, None),
        ("default/_core/search/knn/search/search_filter.yaml", 1, {"year": 2012}),
    ):
        request = chapter(story)["request"]["payload"]
        ours = {"query": osb.knn_query(np.array([1.4, 2.3, 3.5, 4.1, 9.2]), k, filters)}
        ours["query"]["knn"] = {"embedding": ours["query"]["knn"].pop("dense")}  # the story's field name
        story_clause = dict(request["query"]["knn"]["embedding"])
        story_clause["vector"] = [float(np.float32(x)) for x in story_clause["vector"]]  # see test_vector_vs_float32
        request = {"query": {"knn": {"embedding": story_clause}}}
        got = differences(request, ours)
        if filters is None:
            assert got == set()
        else:  # the story's single term filter; the adapter wraps its filter clauses in a bool
            assert got == {
                "query.knn.embedding.filter.term.year",
                "query.knn.embedding.filter.bool.filter[0].term.meta.year",
            }
            assert ours["query"]["knn"]["embedding"]["filter"] == {"bool": {"filter": [{"term": {"meta.year": 2012}}]}}


def test_vector_vs_float32():
    """The adapter sends float32 values as Python floats: the story's 1.4 becomes 1.399999976158142, the value
    the engine stores anyway (knn_vector is float32), so the comparison above rounds the story's through float32."""
    assert osb.knn_query(np.array([1.4]), 1)["knn"]["dense"]["vector"] == [float(np.float32(1.4))]


def test_knn_mapping_matches_the_knn_story():
    """The story's index: ``settings.index.knn`` and a ``knn_vector`` with an HNSW method."""
    prologue = specs.story_chapters("default/_core/search/knn/search/search_k.yaml")[0]["request"]["payload"]
    story = {"settings": prologue["settings"], "embedding": prologue["mappings"]["properties"]["embedding"]}
    body = osb.mapping_body(IndexMeta(engine="", dense={"name": "m", "dimension": 5, "similarity": "euclidean"}))
    ours = {
        "settings": {"index": {"knn": body["settings"]["index"]["knn"]}},
        "embedding": body["mappings"]["properties"]["dense"],
    }
    intentional = {
        "embedding.method.engine": "l2 uses the Lucene engine, which has it (and filtering) on every supported "
        "version; the story uses Faiss (osb.SPACES)",
        "embedding.method.parameters.m": "HNSW parameters are set explicitly so that every engine builds the same "
        "graph (osb.HNSW_PARAMETERS), not left to per-engine defaults",
        "embedding.method.parameters.ef_construction": "as m",
    }
    assert differences(story, ours) == set(intentional)
