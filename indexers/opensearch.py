"""OpenSearch (>= 2.11) through opensearch-py: ``opensearch+http(s)://HOST:PORT/INDEX``.

- **Dense:** a ``knn_vector`` field with HNSW, in the space that matches the dense model's similarity
  (cosine → Lucene ``cosinesimil``, dot → Faiss ``innerproduct``, euclidean → Lucene ``l2``), searched
  with the ``knn`` query, or exactly with the k-NN scoring script when the index is opened ``exact``.
- **Sparse:** a ``rank_features`` field keyed by token names (``indexers/sparse_keys.py``), searched with
  ``neural_sparse`` and raw ``query_tokens`` (neural-search plugin, >= 2.14), else with a ``bool`` of
  ``rank_feature`` clauses using the ``linear`` function. Both score the dot product.
- **BM25:** the engine's own ``match`` query (see ``indexers/_lucene.py``).
- **Hybrid in the engine:** a ``hybrid`` query through a search pipeline: ``score-ranker-processor`` RRF
  (>= 2.19), which computes Σ 1/(k + rank) with ranks from 1 like ours; before 2.19, the
  ``normalization-processor`` (min-max + arithmetic mean) serves ``fusion="convex"``. OpenSearch floors
  each channel's lowest normalised score at 0.001 where ours is 0, so that older path can order the tail of
  a list differently; RRF is the same formula on both sides. Everything else fuses client-side.

Example:
    >>> from indexers import open_index
    >>> index = open_index("opensearch+http://localhost:9200/msmarco")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hybrid_search.index import Filters, IndexMeta
from indexers import _lucene as lucene
from indexers.base import RawHit

MIN_VERSION = (2, 11, 0)
NEURAL_PLUGIN = "opensearch-neural-search"
#: similarity → (k-NN engine, space type). Lucene has no inner product before 2.13, Faiss has no cosine
#: before 2.19, so each similarity uses the engine that has it on every supported version.
SPACES = {"cosine": ("lucene", "cosinesimil"), "dot": ("faiss", "innerproduct"), "euclidean": ("lucene", "l2")}
HNSW_PARAMETERS = {"m": 16, "ef_construction": 100}


@dataclass(frozen=True)
class OpenSearchCapabilities:
    """What a server supports, from its version and whether the neural-search plugin is installed."""

    version: tuple[int, int, int]
    neural_search: bool = True

    @property
    def neural_sparse_tokens(self) -> bool:
        """``neural_sparse`` with raw ``query_tokens`` (neural-search 2.14)."""
        return self.neural_search and self.version >= (2, 14, 0)

    @property
    def hybrid(self) -> bool:
        return self.neural_search and self.version >= (2, 10, 0)

    @property
    def score_ranker(self) -> bool:
        """The ``score-ranker-processor`` (RRF), introduced in 2.19."""
        return self.hybrid and self.version >= (2, 19, 0)

    @property
    def fusions(self) -> tuple[str, ...]:
        if self.score_ranker:
            return ("rrf",)
        return ("convex",) if self.hybrid else ()


def capabilities(info: Mapping[str, Any], plugins: Iterable[str] | None) -> OpenSearchCapabilities:
    """Capabilities from ``GET /`` and the plugin names of ``GET _cat/plugins`` (``None``: unknown, assumed)."""
    version = info.get("version") or {}
    if version.get("distribution") != "opensearch":
        raise lucene.EngineUnavailableError(
            "the server is not OpenSearch (GET / reports no 'opensearch' distribution); "
            "for Elasticsearch use an elasticsearch+http(s):// location"
        )
    number = lucene.version_tuple(str(version.get("number", "0")))
    if number < MIN_VERSION:
        raise lucene.EngineUnavailableError(
            f"OpenSearch {version.get('number')} is too old: hybrid-search needs >= 2.11"
        )
    return OpenSearchCapabilities(number, neural_search=plugins is None or NEURAL_PLUGIN in set(plugins))


# --- request bodies ---------------------------------------------------------------------------------
def space_for(similarity: str) -> tuple[str, str]:
    """(k-NN engine, space type) for a similarity."""
    return lucene.similarity_option(SPACES, similarity, "OpenSearch's HNSW k-NN")


def knn_vector_mapping(dense: Mapping[str, Any]) -> dict[str, Any]:
    engine, space = space_for(dense.get("similarity", "cosine"))
    return {
        "type": "knn_vector",
        "dimension": int(dense["dimension"]),
        "method": {"name": "hnsw", "space_type": space, "engine": engine, "parameters": dict(HNSW_PARAMETERS)},
    }


def mapping_body(meta: IndexMeta, capabilities: Any = None, *, shards: int = 1) -> dict[str, Any]:
    """Body of ``PUT INDEX``: k-NN enabled, ``rank_features`` for sparse, ``knn_vector`` for dense."""
    mappings = lucene.base_mappings(meta)
    if meta.sparse:
        mappings["properties"][lucene.SPARSE_FIELD] = {"type": "rank_features"}
    if meta.dense:
        mappings["properties"][lucene.DENSE_FIELD] = knn_vector_mapping(meta.dense)
    return {"settings": {"index": {"knn": True, **lucene.index_settings(shards)}}, "mappings": mappings}


def neural_sparse_query(features: Mapping[str, float]) -> dict[str, Any]:
    """``neural_sparse`` with a raw sparse vector: the dot product of query and document weights."""
    if not features:
        return {"match_none": {}}
    return {"neural_sparse": {lucene.SPARSE_FIELD: {"query_tokens": dict(features)}}}


def knn_query(vector: np.ndarray, k: int, filters: Filters | None = None) -> dict[str, Any]:
    """Approximate k-NN; filters are applied during the search (Lucene and Faiss engines)."""
    clause: dict[str, Any] = {"vector": np.asarray(vector, dtype=np.float32).tolist(), "k": int(k)}
    clauses = lucene.filter_clauses(filters)
    if clauses:
        clause["filter"] = {"bool": {"filter": clauses}}
    return {"knn": {lucene.DENSE_FIELD: clause}}


def exact_knn_query(vector: np.ndarray, similarity: str, filters: Filters | None = None) -> dict[str, Any]:
    """Exact k-NN with the k-NN plugin's scoring script over the documents that match ``filters``."""
    return {
        "script_score": {
            "query": lucene.filter_only(filters),
            "script": {
                "source": "knn_score",
                "lang": "knn",
                "params": {
                    "field": lucene.DENSE_FIELD,
                    "query_value": np.asarray(vector, dtype=np.float32).tolist(),
                    "space_type": space_for(similarity)[1],
                },
            },
        }
    }


def hybrid_body(sparse_query: dict[str, Any], dense_query: dict[str, Any], size: int) -> dict[str, Any]:
    """A ``hybrid`` query over the sparse and dense channels; the search pipeline fuses the two lists.

    Each subquery contributes its top ``size`` hits (per shard), so ``size`` is the per-channel depth.
    """
    return {"size": int(size), "_source": ["doc_id"], "query": {"hybrid": {"queries": [sparse_query, dense_query]}}}


def rrf_pipeline_body(rank_constant: int) -> dict[str, Any]:
    """``PUT _search/pipeline/NAME``: RRF, Σ 1/(rank_constant + rank) with ranks from 1 (>= 2.19)."""
    return {
        "description": f"hybrid-search: reciprocal rank fusion, k={int(rank_constant)}",
        "phase_results_processors": [
            {"score-ranker-processor": {"combination": {"technique": "rrf", "rank_constant": int(rank_constant)}}}
        ],
    }


def normalization_pipeline_body() -> dict[str, Any]:
    """``PUT _search/pipeline/NAME``: min-max normalisation and an equally weighted arithmetic mean."""
    return {
        "description": "hybrid-search: min-max normalised convex combination",
        "phase_results_processors": [
            {
                "normalization-processor": {
                    "normalization": {"technique": "min_max"},
                    "combination": {"technique": "arithmetic_mean"},
                }
            }
        ],
    }


def pipeline_name(fusion: str, rrf_k: float) -> str:
    return f"hybrid-search-rrf-{int(rrf_k)}" if fusion == "rrf" else "hybrid-search-minmax"


def pipeline_body(fusion: str, rrf_k: float) -> dict[str, Any]:
    return rrf_pipeline_body(int(rrf_k)) if fusion == "rrf" else normalization_pipeline_body()


# --- the adapter ------------------------------------------------------------------------------------
class OpenSearchIndex(lucene.LuceneIndex):
    """An OpenSearch index. Open or create it with :func:`indexers.open_index` / :func:`indexers.create_index`
    and a location ``opensearch+http(s)://HOST:PORT/INDEX``; credentials come from
    :class:`~indexers.credentials.Credentials` (flags or ``HYBRID_SEARCH_OPENSEARCH_*``)."""

    engine = "opensearch"
    library = lucene.ClientLibrary(
        "opensearchpy", "OpenSearch", "opensearch-py", "opensearch", errors_module="exceptions"
    )
    _mapping_body = staticmethod(mapping_body)
    _knn_query = staticmethod(knn_query)
    _exact_query = staticmethod(exact_knn_query)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pipelines: set[str] = set()

    @classmethod
    def _detect(cls, client: Any) -> OpenSearchCapabilities:
        errors = cls._client_module("exceptions")
        info = lucene.response_body(client.info())  # transport errors: see LuceneIndex._connect
        if not isinstance(info, Mapping):
            raise lucene.EngineUnavailableError(f"GET / answered {lucene._one_line(info, 80)}, not OpenSearch's JSON")
        try:
            rows = lucene.response_body(client.cat.plugins(format="json"))
            plugins: list[str] | None = [row.get("component", "") for row in rows]
        except errors.ConnectionError:  # a timeout or a dropped connection is not a permission problem
            raise
        except errors.OpenSearchException:  # e.g. no permission for _cat: assume the default distribution
            plugins = None
        return capabilities(info, plugins)

    def _sparse_query(self, features: Mapping[str, float]) -> dict[str, Any]:
        if self.capabilities.neural_sparse_tokens:
            return neural_sparse_query(features)
        return lucene.rank_feature_query(features)

    @lucene._talks_to_server
    def _pipeline(self, fusion: str, rrf_k: float) -> str:
        name = pipeline_name(fusion, rrf_k)
        if name not in self._pipelines:
            self.client.search_pipeline.put(id=name, body=pipeline_body(fusion, rrf_k))  # idempotent PUT
            self._pipelines.add(name)
        return name

    def _hybrid_raw(self, sparse, dense, k, prefetch_k, fusion, rrf_k, filters) -> list[RawHit]:
        depth = max(int(k), int(prefetch_k))
        body = hybrid_body(
            self._channel_query("sparse", sparse, depth, filters),
            self._channel_query("dense", dense, depth, filters),
            depth,
        )
        return self._search(body, search_pipeline=self._pipeline(fusion, rrf_k))[: int(k)]
