"""Elasticsearch (>= 8.15) through elasticsearch-py: ``elasticsearch+http(s)://HOST:PORT/INDEX``.

- **Dense:** a ``dense_vector`` field indexed as plain ``hnsw`` (not the quantized default of recent
  versions, whose scores would differ from the other engines'), searched with the ``knn`` query, or exactly
  with a ``script_score`` that reproduces the kNN score when the index is opened ``exact``.
- **Sparse:** a ``sparse_vector`` field keyed by token names (``indexers/sparse_keys.py``), searched with the
  ``sparse_vector`` query and ``prune: false``, so every query token counts: the score is the dot product.
- **BM25:** the engine's own ``match`` query (see ``indexers/_lucene.py``).
- **Hybrid in the engine:** the ``rrf`` retriever over a ``standard`` (sparse) and a ``knn`` retriever.
  Its score is Σ 1/(rank_constant + rank) with ranks from 1, so ``rank_constant`` is our k unchanged, and
  ``rank_window_size`` is the per-channel depth (``prefetch_k``). RRF is a licensed feature (trial or
  enterprise, >= 8.16); on other licenses the fusion runs client-side with the same formula.

elasticsearch-py 9 talks to Elasticsearch 9 servers; for an 8.x server install ``elasticsearch>=8.15,<9``.

Example:
    >>> from indexers import open_index
    >>> index = open_index("elasticsearch+http://localhost:9201/msmarco")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from hybrid_search.index import Filters, IndexMeta
from indexers import _lucene as lucene
from indexers.base import RawHit

MIN_VERSION = (8, 15, 0)
#: Licenses that include the rrf retriever.
RRF_LICENSES = frozenset({"enterprise", "trial"})
#: Our similarity names → dense_vector ``similarity``. ``dot_product`` requires unit vectors, so a raw dot
#: product uses ``max_inner_product``.
SIMILARITIES = {"cosine": "cosine", "dot": "max_inner_product", "euclidean": "l2_norm"}
#: Painless scripts that give the documented kNN ``_score`` of each similarity, for exact scoring.
EXACT_SCRIPTS = {
    "cosine": "(cosineSimilarity(params.query_vector, 'dense') + 1.0) / 2.0",
    "max_inner_product": "double d = dotProduct(params.query_vector, 'dense'); return d < 0 ? 1.0 / (1.0 - d) : d + 1.0;",
    "l2_norm": "double d = l2norm(params.query_vector, 'dense'); return 1.0 / (1.0 + d * d);",
}
HNSW_OPTIONS = {"type": "hnsw", "m": 16, "ef_construction": 100}


@dataclass(frozen=True)
class ElasticsearchCapabilities:
    """What a server supports, from its version and license."""

    version: tuple[int, int, int]
    license: str = "basic"

    @property
    def rrf(self) -> bool:
        """The ``rrf`` retriever: generally available from 8.16, licensed (trial, enterprise)."""
        return self.version >= (8, 16, 0) and self.license in RRF_LICENSES

    @property
    def keeps_source_vectors(self) -> bool:
        """Whether new indices keep vectors in ``_source`` by default (9.2 stopped doing so)."""
        return self.version < (9, 2, 0)

    @property
    def fusions(self) -> tuple[str, ...]:
        return ("rrf",) if self.rrf else ()


def capabilities(info: Mapping[str, Any], license_type: str | None) -> ElasticsearchCapabilities:
    """Capabilities from ``GET /`` and the ``type`` of ``GET _license`` (``None``: unknown)."""
    version = info.get("version") or {}
    if version.get("distribution") == "opensearch":
        raise lucene.EngineUnavailableError("the server is OpenSearch; use an opensearch+http(s):// location")
    number = lucene.version_tuple(str(version.get("number", "0")))
    if number < MIN_VERSION:
        raise lucene.EngineUnavailableError(
            f"Elasticsearch {version.get('number')} is too old: hybrid-search needs >= 8.15 (sparse_vector query)"
        )
    return ElasticsearchCapabilities(number, (license_type or "unknown").lower())


def license_type(response: Mapping[str, Any]) -> str | None:
    """The license ``type`` of a ``GET _license`` response (``None`` when it has none)."""
    license_ = response.get("license") if isinstance(response, Mapping) else None
    return license_.get("type") if isinstance(license_, Mapping) else None


# --- request bodies ---------------------------------------------------------------------------------
def similarity_for(similarity: str) -> str:
    """The dense_vector ``similarity`` for ours."""
    return lucene.similarity_option(SIMILARITIES, similarity, "Elasticsearch's dense_vector")


def dense_vector_mapping(dense: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": "dense_vector",
        "dims": int(dense["dimension"]),
        "index": True,
        "similarity": similarity_for(dense.get("similarity", "cosine")),
        "index_options": dict(HNSW_OPTIONS),
    }


def mapping_body(meta: IndexMeta, caps: ElasticsearchCapabilities, *, shards: int = 1) -> dict[str, Any]:
    """Body of ``PUT INDEX``: ``sparse_vector`` for sparse, ``dense_vector`` (HNSW) for dense.

    From 9.2 vectors are left out of ``_source`` and rebuilt from the index at 9-bit precision for sparse
    vectors; the index keeps them in ``_source`` so that stored sparse weights (token explanations) stay exact.
    """
    mappings = lucene.base_mappings(meta)
    if meta.sparse:
        mappings["properties"][lucene.SPARSE_FIELD] = {"type": "sparse_vector"}
    if meta.dense:
        mappings["properties"][lucene.DENSE_FIELD] = dense_vector_mapping(meta.dense)
    settings: dict[str, Any] = lucene.index_settings(shards)
    if not caps.keeps_source_vectors:
        settings["mapping"] = {"exclude_source_vectors": False}
    return {"settings": {"index": settings}, "mappings": mappings}


def sparse_vector_query(features: Mapping[str, float]) -> dict[str, Any]:
    """``sparse_vector`` with a precomputed query vector; ``prune: false`` keeps every token (exact dot product)."""
    if not features:
        return {"match_none": {}}
    return {"sparse_vector": {"field": lucene.SPARSE_FIELD, "query_vector": dict(features), "prune": False}}


def num_candidates(k: int) -> int:
    """Candidates per shard for approximate kNN: twice ``k``, at least 100, at most 10,000."""
    return min(lucene.MAX_RESULTS, max(2 * int(k), 100))


def knn_query(vector: np.ndarray, k: int, filters: Filters | None = None) -> dict[str, Any]:
    """The ``knn`` query (k nearest per shard); the same object is the ``knn`` retriever (global top k)."""
    clause: dict[str, Any] = {
        "field": lucene.DENSE_FIELD,
        "query_vector": np.asarray(vector, dtype=np.float32).tolist(),
        "k": int(k),
        "num_candidates": num_candidates(k),
    }
    clauses = lucene.filter_clauses(filters)
    if clauses:
        clause["filter"] = clauses  # a pre-filter: applied during the search
    return {"knn": clause}


def exact_dense_query(vector: np.ndarray, similarity: str, filters: Filters | None = None) -> dict[str, Any]:
    """Brute-force scoring with the same ``_score`` the kNN search gives for ``similarity``."""
    return {
        "script_score": {
            "query": lucene.filter_only(filters),
            "script": {
                "source": EXACT_SCRIPTS[similarity_for(similarity)],
                "params": {"query_vector": np.asarray(vector, dtype=np.float32).tolist()},
            },
        }
    }


def rrf_body(
    sparse_query: dict[str, Any], dense_retriever: dict[str, Any], k: int, prefetch_k: int, rank_constant: int
) -> dict[str, Any]:
    """The ``rrf`` retriever over a sparse ``standard`` retriever and a dense retriever."""
    return {
        "size": int(k),
        "_source": ["doc_id"],
        "retriever": {
            "rrf": {
                "retrievers": [{"standard": {"query": sparse_query}}, dense_retriever],
                "rank_constant": int(rank_constant),
                "rank_window_size": max(int(prefetch_k), int(k)),
            }
        },
    }


# --- the adapter ------------------------------------------------------------------------------------
class ElasticsearchIndex(lucene.LuceneIndex):
    """An Elasticsearch index. Open or create it with :func:`indexers.open_index` / :func:`indexers.create_index`
    and a location ``elasticsearch+http(s)://HOST:PORT/INDEX``; credentials come from
    :class:`~indexers.credentials.Credentials` (flags or ``HYBRID_SEARCH_ELASTICSEARCH_*``)."""

    engine = "elasticsearch"
    library = lucene.ClientLibrary(
        "elasticsearch", "Elasticsearch", "elasticsearch-py", "elasticsearch", refused=("ApiError", "TransportError")
    )
    _mapping_body = staticmethod(mapping_body)
    _knn_query = staticmethod(knn_query)
    _exact_query = staticmethod(exact_dense_query)

    @classmethod
    def _detect(cls, client: Any) -> ElasticsearchCapabilities:
        es = cls._client_module()
        try:
            info = lucene.response_body(client.info())  # transport errors: see LuceneIndex._connect
        except es.UnsupportedProductError as error:
            raise lucene.EngineUnavailableError(
                "the server is not Elasticsearch; for OpenSearch use an opensearch+http(s):// location"
            ) from error
        try:
            license_ = license_type(lucene.response_body(client.license.get()))
        except es.ApiError:  # no permission, or no license API: fuse client-side
            license_ = None
        return capabilities(info, license_)

    def _sparse_query(self, features: Mapping[str, float]) -> dict[str, Any]:
        return sparse_vector_query(features)

    def _hybrid_raw(self, sparse, dense, k, prefetch_k, fusion, rrf_k, filters) -> list[RawHit]:
        dense_query = self._dense_query(np.asarray(dense, dtype=np.float32), prefetch_k, filters)
        # the knn query object is also the knn retriever; any other query goes in a standard retriever
        dense_retriever = dense_query if "knn" in dense_query else {"standard": {"query": dense_query}}
        sparse_query = lucene.with_filters(self._sparse_query(self.keys.features(sparse)), filters)
        return self._search(rrf_body(sparse_query, dense_retriever, k, prefetch_k, int(rrf_k)))
