"""Every request body the OpenSearch and Elasticsearch adapters build, validated against the engines' own API
specifications (../shared/specs), and the specs' recorded responses read by the adapters' parsers.

The bodies come from the adapters' pure builders with real SPLADE-tiny tokens (escaped keys included) and
are validated in strict mode (tests/api_specs.py: objects closed, so a misspelt key fails). Strict mode is
first shown to accept the real requests recorded in OpenSearch's story tests and Elasticsearch's examples,
and to reject broken bodies. No server is needed.
"""

from __future__ import annotations

import copy
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from hybrid_search.index import IndexMeta
from indexers import _lucene as lucene
from indexers import elasticsearch as esb
from indexers import opensearch as osb
from indexers.sparse_keys import TokenKeys, load_vocabulary
from tests import api_specs as specs

pytestmark = pytest.mark.skipif(not specs.available(), reason=specs.skip_reason())

QUERIES = ["what time does the u.s. post office open? 9 a.m.", "café au lait vs. latte"]
DOCUMENT = "The U.S. Post Office opens at 9 a.m., Mon.–Fri.; the café next door at 7 a.m."
FILTERS = {"lang": ["en", "fr"], "year": 2020}
OS_CAPS = osb.OpenSearchCapabilities((2, 19, 2))
ES_91 = esb.ElasticsearchCapabilities((9, 1, 5), "trial")
ES_92 = esb.ElasticsearchCapabilities((9, 2, 0), "trial")


# --- realistic inputs -------------------------------------------------------------------------------
@dataclass
class Inputs:
    features: list[dict[str, float]]  # query token weights, as the adapters send them
    doc_features: dict[str, float]
    vector: np.ndarray
    meta: IndexMeta


@pytest.fixture(scope="module")
def inputs(splade) -> Inputs:
    keys = TokenKeys(load_vocabulary(splade.settings()))
    features = [keys.features(v) for v in splade.encode_query(QUERIES)]
    doc_features = keys.features(splade.encode_document([DOCUMENT])[0])
    vector = np.random.default_rng(0).normal(size=384).astype(np.float32)
    meta = IndexMeta(
        engine="",
        sparse=splade.settings(),
        dense={"name": "minilm", "dimension": 384, "similarity": "cosine"},
        metadata_fields=["lang", "year"],
    )
    return Inputs(features, doc_features, vector / np.linalg.norm(vector), meta)


def test_inputs_carry_escaped_keys(inputs):
    """The escaping scheme is exercised: SPLADE activates '.' (sent as ``%2E``) and word pieces (``##``)."""
    keys = set(inputs.doc_features) | set().union(*inputs.features)
    assert "%2E" in keys and any(k.startswith("##") for k in keys)
    assert all(len(f) > 10 for f in inputs.features)


# --- the cases ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One body: the spec operation it is sent to, the builders that made it, and how to make it."""

    id: str
    engine: str
    operation: str
    builders: tuple[Callable[..., Any], ...]
    make: Callable[[Inputs], Any]


def _os_meta(inputs: Inputs, similarity: str) -> IndexMeta:
    return IndexMeta(engine="", sparse=inputs.meta.sparse, dense={**inputs.meta.dense, "similarity": similarity})


L = lucene
CASES = [
    # --- OpenSearch ---------------------------------------------------------------------------------
    *[
        Case(
            f"os-create-{sim}",
            "opensearch",
            "indices.create",
            (osb.mapping_body, osb.knn_vector_mapping, osb.space_for, L.base_mappings, L.index_settings),
            lambda i, sim=sim: osb.mapping_body(_os_meta(i, sim), OS_CAPS, shards=1),
        )
        for sim in ("cosine", "dot", "euclidean")
    ],
    Case(
        "os-create-sparse-only",
        "opensearch",
        "indices.create",
        (osb.mapping_body,),
        lambda i: osb.mapping_body(IndexMeta(engine="", sparse=i.meta.sparse), OS_CAPS),
    ),
    Case(
        "os-put-meta", "opensearch", "indices.put_mapping", (L.meta_update_body,), lambda i: L.meta_update_body(i.meta)
    ),
    Case(
        "os-neural-sparse",
        "opensearch",
        "search",
        (osb.neural_sparse_query, L.search_body, L.with_filters, L.filter_clauses),
        lambda i: L.search_body(L.with_filters(osb.neural_sparse_query(i.features[0]), FILTERS), 10),
    ),
    Case(
        "os-rank-feature",
        "opensearch",
        "search",
        (L.rank_feature_query,),
        lambda i: L.search_body(L.with_filters(L.rank_feature_query(i.features[1]), FILTERS), 10),
    ),
    Case(
        "os-empty-sparse",
        "opensearch",
        "search",
        (osb.neural_sparse_query,),
        lambda i: L.search_body(osb.neural_sparse_query({}), 10),
    ),
    Case(
        "os-knn", "opensearch", "search", (osb.knn_query,), lambda i: L.search_body(osb.knn_query(i.vector, 100), 100)
    ),
    Case(
        "os-knn-filtered",
        "opensearch",
        "search",
        (osb.knn_query,),
        lambda i: L.search_body(osb.knn_query(i.vector, 100, FILTERS), 100),
    ),
    Case(
        "os-exact-knn",
        "opensearch",
        "search",
        (osb.exact_knn_query, L.filter_only),
        lambda i: L.search_body(osb.exact_knn_query(i.vector, "dot", FILTERS), 100),
    ),
    Case(
        "os-bm25",
        "opensearch",
        "search",
        (L.bm25_query,),
        lambda i: L.search_body(L.with_filters(L.bm25_query(QUERIES[0]), FILTERS), 10),
    ),
    Case(
        "os-hybrid",
        "opensearch",
        "search",
        (osb.hybrid_body,),
        lambda i: osb.hybrid_body(
            L.with_filters(osb.neural_sparse_query(i.features[0]), FILTERS), osb.knn_query(i.vector, 100, FILTERS), 100
        ),
    ),
    Case(
        "os-hybrid-fallback-exact",
        "opensearch",
        "search",
        (osb.hybrid_body,),
        lambda i: osb.hybrid_body(L.rank_feature_query(i.features[0]), osb.exact_knn_query(i.vector, "cosine"), 100),
    ),
    Case("os-scroll-first", "opensearch", "search", (L.scroll_body,), lambda i: L.scroll_body(None)),
    Case("os-scroll-next", "opensearch", "search", (L.scroll_body,), lambda i: L.scroll_body("doc-0042")),
    Case(
        "os-filter-only",
        "opensearch",
        "search",
        (L.filter_only,),
        lambda i: L.search_body(L.filter_only(FILTERS), 5, True),
    ),
    Case(
        "os-mget",
        "opensearch",
        "mget",
        (L.mget_body,),
        lambda i: L.mget_body(["5d1f…", "9a7c…"], list(L.PAYLOAD_FIELDS) + [L.SPARSE_FIELD]),
    ),
    Case(
        "os-rrf-pipeline",
        "opensearch",
        "search_pipeline.put",
        (osb.rrf_pipeline_body, osb.pipeline_body),
        lambda i: osb.pipeline_body("rrf", 60.0),
    ),
    Case(
        "os-minmax-pipeline",
        "opensearch",
        "search_pipeline.put",
        (osb.normalization_pipeline_body, osb.pipeline_body),
        lambda i: osb.pipeline_body("convex", 60.0),
    ),
    # --- Elasticsearch ------------------------------------------------------------------------------
    *[
        Case(
            f"es-create-{sim}-{caps.version[1]}",
            "elasticsearch",
            "indices.create",
            (esb.mapping_body, esb.dense_vector_mapping, esb.similarity_for, L.base_mappings, L.index_settings),
            lambda i, sim=sim, caps=caps: esb.mapping_body(_os_meta(i, sim), caps),
        )
        for sim in ("cosine", "dot", "euclidean")
        for caps in (ES_91, ES_92)
    ],
    Case(
        "es-put-meta",
        "elasticsearch",
        "indices.put_mapping",
        (L.meta_update_body,),
        lambda i: L.meta_update_body(i.meta),
    ),
    Case(
        "es-sparse-vector",
        "elasticsearch",
        "search",
        (esb.sparse_vector_query, L.search_body, L.with_filters),
        lambda i: L.search_body(L.with_filters(esb.sparse_vector_query(i.features[0]), FILTERS), 10),
    ),
    Case(
        "es-empty-sparse",
        "elasticsearch",
        "search",
        (esb.sparse_vector_query,),
        lambda i: L.search_body(esb.sparse_vector_query({}), 10),
    ),
    Case(
        "es-rank-feature",
        "elasticsearch",
        "search",
        (L.rank_feature_query,),
        lambda i: L.search_body(L.rank_feature_query(i.features[1]), 10),
    ),
    Case(
        "es-knn",
        "elasticsearch",
        "search",
        (esb.knn_query, esb.num_candidates),
        lambda i: L.search_body(esb.knn_query(i.vector, 100, FILTERS), 100),
    ),
    Case(
        "es-exact",
        "elasticsearch",
        "search",
        (esb.exact_dense_query, L.filter_only),
        lambda i: L.search_body(esb.exact_dense_query(i.vector, "dot", FILTERS), 100),
    ),
    Case(
        "es-bm25",
        "elasticsearch",
        "search",
        (L.bm25_query,),
        lambda i: L.search_body(L.with_filters(L.bm25_query(QUERIES[1]), FILTERS), 10),
    ),
    Case(
        "es-rrf-knn",
        "elasticsearch",
        "search",
        (esb.rrf_body,),
        lambda i: esb.rrf_body(
            L.with_filters(esb.sparse_vector_query(i.features[0]), FILTERS),
            esb.knn_query(i.vector, 100, FILTERS),
            10,
            100,
            60,
        ),
    ),
    Case(
        "es-rrf-exact",
        "elasticsearch",
        "search",
        (esb.rrf_body,),
        lambda i: esb.rrf_body(
            esb.sparse_vector_query(i.features[1]),
            {"standard": {"query": esb.exact_dense_query(i.vector, "cosine")}},
            10,
            100,
            60,
        ),
    ),
    Case("es-scroll", "elasticsearch", "search", (L.scroll_body,), lambda i: L.scroll_body("doc-0042")),
    Case(
        "es-mget", "elasticsearch", "mget", (L.mget_body,), lambda i: L.mget_body(["5d1f…"], ["doc_id", "content_hash"])
    ),
]
#: Bulk lines are checked by test_bulk_lines (action lines against the spec's operation schema).
BULK_BUILDERS = (L.index_actions, L.delete_actions)


@dataclass(frozen=True)
class SpecGap:
    """Where a specification lags the engine: the fields it rejects that the engine's documentation accepts."""

    engine: str
    operation: str
    paths: tuple[tuple[str, ...], ...]
    docs: str
    why: str


#: Named exceptions: these fields are left out before validating (and test_spec_gaps_are_real shows the
#: unedited body fails on exactly them). Nothing else is ever skipped.
SPEC_GAPS = {
    "OS_CUSTOM_SIMILARITY_NAMES": SpecGap(
        "opensearch",
        "indices.create",
        (("settings", "index", "similarity"),),
        "https://docs.opensearch.org/latest/im-plugin/similarity/",
        "the spec lists only the built-in algorithm names (bm25, dfi, ...) as keys of index.similarity; the "
        "engine keys it by a name of the user's choosing, which the text field's `similarity` then names",
    ),
    "ES_STACK_ONLY_SETTINGS": SpecGap(
        "elasticsearch",
        "indices.create",
        (
            ("settings", "index", "number_of_shards"),
            ("settings", "index", "mapping", "exclude_source_vectors"),
            ("settings", "number_of_shards"),
            ("settings", "number_of_replicas"),
        ),
        "https://www.elastic.co/docs/reference/elasticsearch/index-settings/index-modules ; "
        "https://www.elastic.co/docs/reference/elasticsearch/mapping-reference/dense-vector",
        "the only Elasticsearch document here is the Serverless one, where shard counts are managed for you; "
        "index.number_of_shards and (9.2+) index.mapping.exclude_source_vectors are stack settings",
    ),
}


def _without_gaps(engine: str, operation: str, body: Any) -> Any:
    body = copy.deepcopy(body)
    for gap in SPEC_GAPS.values():
        if (gap.engine, gap.operation) != (engine, operation):
            continue
        for path in gap.paths:
            parent = body
            for key in path[:-1]:
                parent = parent.get(key, {}) if isinstance(parent, dict) else {}
            parent.pop(path[-1], None)
    return body


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_body_conforms_to_the_spec(case: Case, inputs: Inputs):
    body = _without_gaps(case.engine, case.operation, case.make(inputs))
    errs = specs.errors(case.engine, specs.request_schema_uri(case.engine, case.operation), body)
    assert not errs, f"{case.engine} {case.operation} rejects {case.id}: {specs.describe(errs)}"


@pytest.mark.parametrize("name", list(SPEC_GAPS))
def test_spec_gaps_are_real(name: str, inputs: Inputs):
    """Each named exception is needed: some builder's unedited body fails on it (so a spec that catches up
    makes this test fail, and the exception can go)."""
    gap = SPEC_GAPS[name]
    case = next(c for c in CASES if (c.engine, c.operation) == (gap.engine, gap.operation))
    errs = specs.errors(case.engine, specs.request_schema_uri(case.engine, case.operation), case.make(inputs))
    failing = [e for e in errs if any(tuple(e.absolute_path)[: len(p) - 1] == p[:-1] for p in gap.paths)]
    assert failing, f"{name} no longer needed: the spec accepts these fields now"


# --- bulk ---------------------------------------------------------------------------------------------
BULK_ACTION = {
    "opensearch": "_core.bulk.yaml#/components/schemas/OperationContainer",
    "elasticsearch": "_global.bulk.OperationContainer",
}


def _wire_lines(engine: str, actions) -> list[tuple[dict, Any]]:
    """What the client's bulk helper puts on the wire for each action: (action line, document line or None)."""
    if engine == "opensearch":
        from opensearchpy.helpers.actions import expand_action
    else:
        from elasticsearch.helpers.actions import expand_action
    return [expand_action(dict(a)) for a in actions]


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_bulk_lines(engine: str, inputs: Inputs):
    """Action lines validate against the spec's bulk ``OperationContainer``; the bulk body as a whole against
    the ``bulk`` request body; each document carries only mapped fields, the sparse map with positive weights
    and the dense vector with the mapped dimension."""
    pids = ["5d1f0c9e", "9a7c51aa"]
    payloads = [
        {
            "doc_id": "d1",
            "title": "",
            "text": DOCUMENT,
            "meta": {"lang": "en", "year": 2020},
            "content_hash": "ab12",
            "lexical": [2001, 1012],
        },
        {"doc_id": "d2", "title": "t", "text": "x", "meta": {}},
    ]
    dense = np.stack([inputs.vector, -inputs.vector])
    lines = _wire_lines(
        engine,
        [*L.index_actions("docs", pids, payloads, [inputs.doc_features, {}], dense), *L.delete_actions("docs", pids)],
    )
    action_uri = specs.schema_uri(engine, BULK_ACTION[engine])
    flat = []
    for action, document in lines:
        errs = specs.errors(engine, action_uri, action)
        assert not errs, specs.describe(errs)
        flat += [action] + ([document] if document is not None else [])
    media = "application/x-ndjson" if engine == "opensearch" else "application/json"
    errs = specs.errors(engine, specs.request_schema_uri(engine, "bulk", media), flat)
    assert not errs, specs.describe(errs)
    mapping = (osb if engine == "opensearch" else esb).mapping_body(
        inputs.meta, ES_91 if engine != "opensearch" else OS_CAPS
    )
    props = mapping["mappings"]["properties"]
    first = lines[0][1]
    assert set(first) <= set(props) and set(lines[1][1]) <= set(props)
    assert all(w > 0 for w in first["sparse"].values()) and "." not in "".join(first["sparse"])
    assert len(first["dense"]) == inputs.meta.dense["dimension"]


# --- requests without a body -------------------------------------------------------------------------
#: What the adapters send without a body (client calls in indexers/_lucene.py and the engine modules).
BODILESS = {
    "opensearch": [
        ("/", "get"),
        ("/_cat/plugins", "get"),
        ("/{index}", "head"),
        ("/{index}", "delete"),
        ("/{index}/_mapping", "get"),
        ("/{index}/_refresh", "post"),
        ("/{index}/_count", "post"),
    ],
    "elasticsearch": [
        ("/", "get"),
        ("/_license", "get"),
        ("/{index}", "head"),
        ("/{index}", "delete"),
        ("/{index}/_mapping", "get"),
        ("/{index}/_refresh", "post"),
        ("/{index}/_count", "post"),
    ],
}


def _operation_in_spec(engine: str, path: str, method: str) -> dict[str, Any] | None:
    docs = specs._documents(engine)
    for doc in docs.values():
        found = ((doc.get("paths") or {}).get(path) or {}).get(method)
        if found is not None:
            return found
    return None


@pytest.mark.parametrize("engine,path,method", [(e, p, m) for e, ops in BODILESS.items() for p, m in ops])
def test_bodiless_requests_exist_and_need_no_body(engine, path, method):
    """Deletes, existence checks, mapping reads, refreshes and counts: the endpoint is in the spec and takes no
    required body."""
    operation = _operation_in_spec(engine, path, method)
    assert operation is not None, f"{method.upper()} {path} is not in the {engine} spec"
    body = operation.get("requestBody") or {}
    if "$ref" in body:
        name = body["$ref"].rsplit("/", 1)[1]
        body = next(
            d
            for d in specs._documents(engine).values()
            if name in ((d.get("components") or {}).get("requestBodies") or {})
        )["components"]["requestBodies"][name]
    assert not body.get("required"), f"{method.upper()} {path} requires a body"


# --- broken bodies fail -------------------------------------------------------------------------------
BROKEN = [
    (
        "opensearch",
        "search",
        "misspelt query type",
        {"query": {"nueral_sparse": {"sparse": {"query_tokens": {"paris": 1.0}}}}},
    ),
    (
        "opensearch",
        "search",
        "field level missing (wrong nesting)",
        {"query": {"neural_sparse": {"query_tokens": {"paris": 1.0}}}},
    ),
    (
        "opensearch",
        "search",
        "knn parameters one level too deep",
        {"query": {"knn": {"dense": {"knn": {"vector": [1.0], "k": 1}}}}},
    ),
    ("opensearch", "search", "hybrid queries not a list", {"query": {"hybrid": {"queries": {"match_all": {}}}}}),
    (
        "opensearch",
        "search_pipeline.put",
        "unknown RRF technique",
        {"phase_results_processors": [{"score-ranker-processor": {"combination": {"technique": "rrff"}}}]},
    ),
    (
        "opensearch",
        "search_pipeline.put",
        "rank_constant below 1",
        {
            "phase_results_processors": [
                {"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": 0}}}
            ]
        },
    ),
    (
        "opensearch",
        "indices.create",
        "misspelt mapping key",
        {"mappings": {"properties": {"dense": {"type": "knn_vector", "dimensions": 3}}}},
    ),
    (
        "elasticsearch",
        "search",
        "misspelt query type",
        {"query": {"sparse_vectr": {"field": "sparse", "query_vector": {"a": 1}}}},
    ),
    (
        "elasticsearch",
        "search",
        "query vector at the wrong level",
        {"query": {"sparse_vector": {"sparse": {"query_vector": {"a": 1.0}}}}},
    ),
    ("elasticsearch", "search", "retriever misspelt", {"retriever": {"rfr": {"retrievers": []}}}),
    ("elasticsearch", "search", "rrf retrievers not a list", {"retriever": {"rrf": {"retrievers": {"standard": {}}}}}),
    (
        "elasticsearch",
        "indices.create",
        "dense_vector dims misspelt",
        {"mappings": {"properties": {"dense": {"type": "dense_vector", "dimension": 3}}}},
    ),
]


@pytest.mark.parametrize("engine,operation,what,body", BROKEN, ids=[b[2] + "-" + b[0] for b in BROKEN])
def test_a_broken_body_fails(engine, operation, what, body):
    assert specs.errors(engine, specs.request_schema_uri(engine, operation), body), f"{what} was accepted"


@pytest.mark.parametrize("case_id", ["os-neural-sparse", "es-sparse-vector", "os-hybrid", "es-rrf-knn"])
def test_breaking_a_real_body_fails(case_id: str, inputs: Inputs):
    """The builders' own bodies, broken by renaming the query type one level down, are rejected."""
    case = next(c for c in CASES if c.id == case_id)
    body = case.make(inputs)
    container = body["query"] if "query" in body else body["retriever"]
    ((name, value),) = container.items()
    container.clear()
    container[name[::-1]] = value
    assert specs.errors(case.engine, specs.request_schema_uri(case.engine, case.operation), body)


# --- strict mode accepts what real clusters accepted ----------------------------------------------------
STORIES = {  # stories whose requests exercise what the adapter sends
    "default/_core/search/hybrid_query_pagination.yaml": "search",
    "default/search_pipeline/search_phase_results_processors/score_ranker.yaml": "search_pipeline.put",
    "default/search_pipeline/search_phase_results_processors/normalization.yaml": "search_pipeline.put",
    "default/_core/search/knn/search/search_k.yaml": "search",
    "default/_core/search/knn/search/search_filter.yaml": "search",
    "default/_core/search/search_after.yaml": "search",
    "default/_core/mget.yaml": "mget",
}


def _operation(chapter: dict[str, Any], default: str) -> str | None:
    path, method = chapter.get("path", ""), chapter.get("method")
    if method == "PUT" and path.count("/") == 1 and not path.startswith("/_"):
        return "indices.create"
    if default == "search" and path.endswith("/_search"):
        return "search"
    if default == "search_pipeline.put" and path.startswith("/_search/pipeline") and method == "PUT":
        return default
    if default == "mget" and path.endswith("/_mget"):
        return "mget"
    return None


#: Recorded requests that the *published* specification itself rejects (strict mode adds nothing to these).
PUBLISHED_SPEC_REJECTS = {
    "default/_core/search/search_after.yaml": "sort {field: 'asc'} matches two oneOf branches (SortOptions is an "
    "open object), so the published schema rejects every sort by field name and direction; the adapter sorts "
    "by the plain field name, which it accepts",
    "_global/search/examples/request/SearchRequestExample3.yaml": "slice.id is a number in the example, a string "
    "(_types.Id) in the schema",
}


def _check_recorded(engine: str, name: str, operation: str, payload: Any) -> None:
    payload = _without_gaps(engine, operation, payload)
    uri = specs.request_schema_uri(engine, operation)
    errs = specs.errors(engine, uri, payload)
    if name in PUBLISHED_SPEC_REJECTS:
        assert specs.errors(engine, uri, payload, strict=False), f"{name} is accepted as published now"
    else:
        assert not errs, f"{name}: {specs.describe(errs)}"


@pytest.mark.parametrize("story", list(STORIES))
def test_strict_mode_accepts_the_recorded_requests(story: str):
    checked = 0
    for chapter in specs.story_chapters(story):
        operation = _operation(chapter, STORIES[story])
        payload = (chapter.get("request") or {}).get("payload")
        if operation is None or payload is None:
            continue
        _check_recorded("opensearch", story, operation, payload)
        checked += 1
    assert checked


@pytest.mark.parametrize(
    "example,operation",
    [
        ("_global/search/examples/request/SearchRequestExample1.yaml", "search"),
        ("_global/search/examples/request/SearchRequestExample2.yaml", "search"),
        ("_global/search/examples/request/SearchRequestExample3.yaml", "search"),
        ("_global/mget/examples/request/MultiGetRequestExample1.yaml", "mget"),
        ("_global/mget/examples/request/MultiGetRequestExample2.yaml", "mget"),
        *[
            (f"indices/create/examples/request/indicesCreateRequestExample{n}.yaml", "indices.create")
            for n in range(1, 7)
        ],
        ("indices/put_mapping/examples/request/indicesPutMappingRequestExample1.yaml", "indices.put_mapping"),
    ],
)
def test_strict_mode_accepts_the_elasticsearch_examples(example: str, operation: str):
    _check_recorded("elasticsearch", example, operation, specs.es_example(example))


# --- every builder has a case ------------------------------------------------------------------------
#: Module-level functions that build no request body, with what covers them instead.
NOT_BODIES = {
    "parse_target": "location parsing (test_opensearch_bodies.test_locations)",
    "version_tuple": "version parsing",
    "similarity_option": "a lookup used by space_for / similarity_for",
    "clamp_k": "argument check",
    "run_bulk": "drives the client's bulk helper (test_opensearch_bodies.test_run_bulk_*)",
    "capabilities": "reads GET / (test_capabilities_*)",
    "pipeline_name": "a name, not a body",
    "describe_server_error": "error messages (tests/indexers/test_lucene_server_errors.py)",
    "server_errors": "error messages (tests/indexers/test_lucene_server_errors.py)",
    "response_body": "response parser (tests/indexers/test_lucene_spec_responses.py)",
    "parse_hits": "response parser (tests/indexers/test_lucene_spec_responses.py)",
    "parse_mget": "response parser (tests/indexers/test_lucene_spec_responses.py)",
    "meta_from_mapping": "response parser (tests/indexers/test_lucene_spec_responses.py)",
    "parse_count": "response parser (tests/indexers/test_lucene_spec_responses.py)",
    "license_type": "response parser (tests/indexers/test_lucene_spec_responses.py)",
}


def _module_functions() -> dict[str, Callable[..., Any]]:
    out = {}
    for module in (lucene, osb, esb):
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ == module.__name__ and not name.startswith("_"):
                out[f"{module.__name__}.{name}"] = fn
    return out


def test_every_builder_has_a_conformance_case():
    covered = {fn for case in CASES for fn in case.builders} | set(BULK_BUILDERS)
    missing = [
        name
        for name, fn in _module_functions().items()
        if fn not in covered and name.rsplit(".", 1)[1] not in NOT_BODIES
    ]
    assert not missing, f"request-body builders without a conformance case in this file: {missing}"
    stale = [n for n in NOT_BODIES if not any(k.endswith("." + n) for k in _module_functions())]
    assert not stale, f"NOT_BODIES names functions that no longer exist: {stale}"


# --- version markers ---------------------------------------------------------------------------------
def _version(text: str) -> tuple[int, int, int]:
    return lucene.version_tuple(text.lstrip(">= "))


def test_opensearch_version_markers_agree_with_the_adapters_gates():
    """The README's version matrix, checked: the spec's ``x-version-added`` and the stories' ``version``
    (the versions their CI ran them on) against the versions at which the adapter starts using each form."""
    caps = osb.OpenSearchCapabilities
    put = specs.lookup(
        "opensearch", specs.opensearch_uri("namespaces/search_pipeline.yaml#/paths/~1_search~1pipeline~1{id}/put")
    )
    assert _version(put["x-version-added"]) == (2, 9, 0) <= osb.MIN_VERSION
    ranker = specs.story("default/search_pipeline/search_phase_results_processors/score_ranker.yaml")["version"]
    assert _version(ranker) == (2, 19, 0) and not caps((2, 18, 9)).score_ranker and caps((2, 19, 0)).score_ranker
    normalization = specs.story("default/search_pipeline/search_phase_results_processors/normalization.yaml")
    assert _version(normalization["version"]) == (2, 10, 0) and caps((2, 11, 0)).hybrid
    knn_filter = specs.story("default/_core/search/knn/search/search_filter.yaml")["chapters"][0]["version"]
    assert _version(knn_filter) == (2, 9, 0) <= osb.MIN_VERSION
    # knn and hybrid fields that came later are not sent: only those every supported version has
    knn = specs.lookup(
        "opensearch", specs.schema_uri("opensearch", "_common.query_dsl.yaml#/components/schemas/KnnQuery")
    )
    later = {k for k, v in knn["allOf"][1]["properties"].items() if "x-version-added" in v}
    assert later == {"min_score", "max_distance", "method_parameters", "rescore", "expand_nested_docs"}
    assert not later & set(osb.knn_query(np.ones(2), 5, FILTERS)["knn"]["dense"])
    hybrid = specs.lookup(
        "opensearch", specs.schema_uri("opensearch", "_common.query_dsl.yaml#/components/schemas/HybridQuery")
    )
    assert hybrid["allOf"][1]["properties"]["filter"]["x-version-added"] == "3.0"
    sent = osb.hybrid_body({"match_all": {}}, {"match_all": {}}, 10)["query"]["hybrid"]
    assert set(sent) == {"queries"}  # filters go into each subquery, which works from 2.10; no pagination_depth


def test_elasticsearch_document_has_no_versions():
    """The Serverless document marks availability (``x-state``), not stack versions: the Elasticsearch rows of
    the version matrix come from the engine's documentation (see indexers/elasticsearch.py)."""
    search = specs.lookup("elasticsearch", f"{specs.ES_URI}#/paths/~1{{index}}~1_search/post")
    assert search["x-state"] == "Generally available" and not any(k.startswith("x-version") for k in search)
