"""What the OpenSearch and Elasticsearch adapters share: the Lucene-side half of an index.

Both engines descend from the same code base, so most of an adapter is the same: the document layout,
metadata filters, the BM25 ``match`` query, the fallback sparse query (a ``bool`` of ``rank_feature``
clauses with the ``linear`` function, whose score is the dot product), bulk writes with per-item error
reports and bounded retries, paging by ``search_after``, and the :class:`~hybrid_search.index.IndexMeta`
kept in the mapping's ``_meta``. This module holds that once: request bodies and response parsing as pure
functions, and :class:`LuceneIndex`, the shared adapter the two engine modules subclass.

Document layout (one Lucene document per corpus document, ``_id`` = :func:`~hybrid_search.index.point_id`)::

    doc_id        keyword        the corpus id (sortable: paging uses it)
    title, text   text           copied into ``content``
    content       text           BM25 with k1=0.9, b=0.4 (the same parameters as the rank-bm25 channel)
    meta.*        keyword/...    metadata; strings map to keyword so filters match them exactly
    content_hash  keyword        what the indexing pipeline compares to skip unchanged documents
    lexical       integer        stored only (not indexed, no doc values): the explanation's lexical ids
    sparse        rank_features / sparse_vector   {token name: weight}, see indexers/sparse_keys.py
    dense         knn_vector / dense_vector
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from hybrid_search.index import (
    LEXICAL_FIELD,
    EngineUnavailableError,
    Filters,
    IndexMeta,
    IndexNotFoundError,
    IndexStateError,
    filter_conditions,
)
from hybrid_search.types import Ranking, SparseVector
from indexers.base import BaseIndex, RawHit
from indexers.credentials import Credentials
from indexers.sparse_keys import TokenKeys, load_vocabulary

logger = logging.getLogger(__name__)

SPARSE_FIELD = "sparse"
DENSE_FIELD = "dense"
CONTENT_FIELD = "content"
VECTOR_FIELDS = (SPARSE_FIELD, DENSE_FIELD)
#: The stored payload (see :func:`hybrid_search.index.to_payload`).
PAYLOAD_FIELDS = ("doc_id", "title", "text", "meta", "content_hash", LEXICAL_FIELD)
BM25_SIMILARITY = "hybrid_search_bm25"
#: The key under the mapping's ``_meta`` that holds the IndexMeta.
META_KEY = "hybrid_search"
DEFAULT_INDEX = "hybrid-search"
BULK_CHUNK = 500
BULK_RETRIES = 3
PAGE = 1000
#: Both engines cap knn ``k`` and a search's ``size`` at 10,000 by default.
MAX_RESULTS = 10_000
_INVALID_INDEX = re.compile(r'[\\/*?"<>| ,#:A-Z]')


class BulkWriteError(IndexStateError):
    """Some documents of a bulk write were rejected; ``failures`` holds the engine's per-item reports."""

    def __init__(self, failures: list[dict[str, Any]], total: int) -> None:
        self.failures = failures
        shown = "; ".join(_describe_failure(f) for f in failures[:3])
        more = f" (+{len(failures) - 3} more)" if len(failures) > 3 else ""
        super().__init__(f"{len(failures)} of {total} bulk operations failed: {shown}{more}")


def _describe_failure(item: Mapping[str, Any]) -> str:
    error = item.get("error")
    if isinstance(error, Mapping):
        error = f"{error.get('type')}: {error.get('reason')}"
    return f"id {item.get('_id')} status {item.get('status')} {error}"


# --- server errors -------------------------------------------------------------------------------
@dataclass(frozen=True)
class ErrorClasses:
    """A client library's exception classes, by what they mean to the user (checked in this order)."""

    timeout: tuple[type[BaseException], ...]
    connection: tuple[type[BaseException], ...]
    not_json: tuple[type[BaseException], ...]
    refused: tuple[type[BaseException], ...]


@dataclass(frozen=True)
class ClientLibrary:
    """An engine's Python client library, as an adapter names it (imported only when used)."""

    package: str  # the import name
    client_class: str  # the client class in ``package``
    distribution: str  # its name on PyPI
    extra: str  # the hybrid-search extra that installs it
    errors_module: str = ""  # the submodule holding its exception classes ("": the package itself)
    refused: tuple[str, ...] = ("TransportError",)  # the exceptions that mean the server refused a request


def _one_line(text: Any, limit: int = 160) -> str:
    flat = " ".join(str(text).split())
    if flat.lstrip("('\"b").startswith("<"):
        return "an HTML page"
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def describe_server_error(
    error: BaseException, classes: ErrorClasses, engine: str, location: str, timeout: float | None
) -> IndexStateError | None:
    """One line that says what went wrong with the server at ``location`` (which carries no credentials), or
    ``None`` when ``error`` is not the client's."""
    name = {"opensearch": "OpenSearch", "elasticsearch": "Elasticsearch"}.get(engine, engine)
    variable = f"HYBRID_SEARCH_{engine.upper()}_TIMEOUT"
    if isinstance(error, classes.timeout):
        within = f" within {timeout:g} s" if timeout else ""
        return EngineUnavailableError(
            f"{name} at {location} did not answer{within}; check that the server is up and not overloaded, "
            f"or allow it more time with --timeout SECONDS ({variable})"
        )
    if isinstance(error, classes.connection):
        return EngineUnavailableError(f"cannot reach {name} at {location}: {_one_line(error)}")
    if isinstance(error, classes.not_json):
        return EngineUnavailableError(
            f"{name} at {location} answered with something that is not JSON ({_one_line(error, 80)}); "
            f"is that URL the {name} server itself, and not a proxy or login page?"
        )
    if isinstance(error, classes.refused):
        status = getattr(error, "status_code", None) or getattr(error, "status", None)
        info = getattr(error, "info", None) or getattr(error, "body", None) or getattr(error, "error", None) or error
        head = f"{name} at {location} answered"
        return IndexStateError(
            f"{head} {status}: {_one_line(info)}" if isinstance(status, int) else f"{head}: {_one_line(info)}"
        )
    return None


@contextmanager
def server_errors(classes: ErrorClasses, engine: str, location: str, timeout: float | None) -> Iterator[None]:
    """Turn the client library's transport errors into one-line :class:`IndexStateError` messages."""
    try:
        yield
    except IndexStateError:
        raise
    except Exception as error:  # anything not the client's is re-raised as it is
        translated = describe_server_error(error, classes, engine, location, timeout)
        if translated is None:
            raise
        raise translated from error


def _talks_to_server(method: Callable[..., Any]) -> Callable[..., Any]:
    """Decorate a :class:`LuceneIndex` method that sends requests: its client errors become one-line errors."""

    @functools.wraps(method)
    def wrapper(self: LuceneIndex, *args: Any, **kwargs: Any) -> Any:
        with server_errors(self._error_classes(), self.engine, self.location, self.timeout):
            return method(self, *args, **kwargs)

    return wrapper


# --- locations ------------------------------------------------------------------------------------
def parse_target(target: str) -> tuple[str, str]:
    """``(base URL, index name)`` from ``http(s)://host:port[/index]``; the index defaults to ``hybrid-search``."""
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"expected http(s)://HOST:PORT[/INDEX], got {target!r}")
    name = parts.path.strip("/") or DEFAULT_INDEX
    if "/" in name or _INVALID_INDEX.search(name) or name.startswith(("-", "_", "+")) or name in (".", ".."):
        raise ValueError(
            f"invalid index name {name!r}: use lowercase letters, digits, '-', '_' or '.', not starting with '-', '_' or '+'"
        )
    return urlunsplit((parts.scheme, parts.netloc, "", "", "")), name


def version_tuple(number: str) -> tuple[int, int, int]:
    """``"2.19.1"`` → ``(2, 19, 1)``; suffixes such as ``-SNAPSHOT`` are ignored."""
    digits = [int(p) for p in re.findall(r"\d+", number.split("-")[0])[:3]]
    return tuple(digits + [0] * (3 - len(digits)))  # type: ignore[return-value]


def similarity_option(options: Mapping[str, Any], similarity: str, what: str) -> Any:
    """``options[similarity]``, or a ValueError that names what ``what`` supports."""
    try:
        return options[similarity]
    except KeyError:
        raise ValueError(f"{what} has no {similarity!r} similarity; use one of {', '.join(options)}") from None


def response_body(response: Any) -> Any:
    """The JSON body of a client response (elasticsearch-py wraps it, opensearch-py does not)."""
    return getattr(response, "body", response)


# --- mappings -------------------------------------------------------------------------------------
def index_settings(shards: int = 1) -> dict[str, Any]:
    """Index settings both engines accept: the shard count and the BM25 similarity of ``content``.

    One shard by default: hybrid subqueries and knn return their top hits per shard, so a single shard
    makes engine-side fusion see exactly the candidates client-side fusion sees.
    """
    return {
        "number_of_shards": int(shards),
        "similarity": {BM25_SIMILARITY: {"type": "BM25", "k1": 0.9, "b": 0.4}},
    }


def base_mappings(meta: IndexMeta) -> dict[str, Any]:
    """The mapping without the vector fields: payload, BM25 text, metadata and the IndexMeta in ``_meta``."""
    return {
        "_meta": {META_KEY: meta.to_dict()},
        "dynamic_templates": [
            {
                "metadata_strings": {
                    "path_match": "meta.*",
                    "match_mapping_type": "string",
                    "mapping": {"type": "keyword"},
                }
            }
        ],
        "properties": {
            "doc_id": {"type": "keyword"},
            "title": {"type": "text", "copy_to": CONTENT_FIELD},
            "text": {"type": "text", "copy_to": CONTENT_FIELD},
            CONTENT_FIELD: {"type": "text", "similarity": BM25_SIMILARITY},
            "content_hash": {"type": "keyword"},
            # Read back with the document, never searched: kept in _source only.
            LEXICAL_FIELD: {"type": "integer", "index": False, "doc_values": False},
            "meta": {"type": "object"},
        },
    }


def meta_update_body(meta: IndexMeta) -> dict[str, Any]:
    """Body of ``PUT INDEX/_mapping`` that replaces the stored IndexMeta."""
    return {"_meta": {META_KEY: meta.to_dict()}}


def meta_from_mapping(response: Mapping[str, Any], index: str) -> dict[str, Any] | None:
    """The stored IndexMeta dict from a ``GET INDEX/_mapping`` response (keyed by the concrete index name)."""
    body = response.get(index) or next(iter(response.values()), {})
    return ((body.get("mappings") or {}).get("_meta") or {}).get(META_KEY)


# --- queries --------------------------------------------------------------------------------------
def filter_clauses(filters: Filters | None) -> list[dict[str, Any]]:
    """Equality (``term``) and any-of (``terms``) clauses on ``meta.<field>``."""
    clauses = []
    for key, values in filter_conditions(filters):
        clauses.append({"term": {key: values[0]}} if len(values) == 1 else {"terms": {key: list(values)}})
    return clauses


def with_filters(query: dict[str, Any], filters: Filters | None) -> dict[str, Any]:
    """``query`` restricted to documents matching ``filters`` (filters do not change scores)."""
    clauses = filter_clauses(filters)
    return {"bool": {"must": [query], "filter": clauses}} if clauses else query


def filter_only(filters: Filters | None) -> dict[str, Any]:
    """Every document that matches ``filters`` (all documents when there are none), unscored."""
    clauses = filter_clauses(filters)
    return {"bool": {"filter": clauses}} if clauses else {"match_all": {}}


def bm25_query(text: str) -> dict[str, Any]:
    return {"match": {CONTENT_FIELD: {"query": text}}}


def rank_feature_query(features: Mapping[str, float]) -> dict[str, Any]:
    """The sparse dot product as a ``bool`` of ``rank_feature`` clauses with the ``linear`` function.

    ``linear`` scores a document by the stored feature value; ``boost`` multiplies it by the query weight,
    and ``bool`` sums the clauses: Σ q_t · d_t. ``minimum_should_match`` keeps documents without any
    query token out when the query is wrapped with filters.
    """
    if not features:
        return {"match_none": {}}
    return {
        "bool": {
            "should": [
                {"rank_feature": {"field": f"{SPARSE_FIELD}.{key}", "linear": {}, "boost": weight}}
                for key, weight in features.items()
            ],
            "minimum_should_match": 1,
        }
    }


def search_body(query: dict[str, Any], size: int, source: Sequence[str] | bool = ("doc_id",)) -> dict[str, Any]:
    return {"query": query, "size": int(size), "_source": list(source) if not isinstance(source, bool) else source}


def mget_body(pids: Sequence[str], fields: Sequence[str]) -> dict[str, Any]:
    """``POST INDEX/_mget``: documents by ``_id`` with only ``fields`` of their source. Multi-get is real-time,
    so it sees writes that no refresh has made searchable yet."""
    return {"docs": [{"_id": pid, "_source": list(fields)} for pid in pids]}


def parse_mget(response: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The sources of the documents found, in request order (``found: false`` ones are left out)."""
    return [doc.get("_source") or {} for doc in response["docs"] if doc.get("found")]


def scroll_body(after: str | None, size: int = PAGE) -> dict[str, Any]:
    """One page of all documents in ``doc_id`` order, continuing after ``after``."""
    body: dict[str, Any] = {
        "query": {"match_all": {}},
        "size": size,
        # The plain field name (ascending): the {"doc_id": "asc"} form is the same request, but both engines'
        # API specifications reject it (OpenSearch's is ambiguous between two sort forms, Elasticsearch's
        # generated one lacks it); see tests/indexers/test_lucene_spec_conformance.py.
        "sort": ["doc_id"],
        "_source": {"excludes": list(VECTOR_FIELDS)},
    }
    if after is not None:
        body["search_after"] = [after]
    return body


def parse_count(response: Mapping[str, Any]) -> int:
    """The document count of a ``GET INDEX/_count`` response."""
    return int(response["count"])


def parse_hits(response: Mapping[str, Any]) -> list[RawHit]:
    """``[(source, score)]`` from a search response, best first."""
    return [(hit.get("_source") or {}, float(hit.get("_score") or 0.0)) for hit in response["hits"]["hits"]]


def clamp_k(k: int) -> int:
    if k > MAX_RESULTS:
        raise ValueError(f"k={k} is above the engines' limit of {MAX_RESULTS} results per request")
    return max(int(k), 1)


# --- bulk writes ----------------------------------------------------------------------------------
def index_actions(
    index: str,
    pids: Sequence[str],
    payloads: Sequence[Mapping[str, Any]],
    sparse: Sequence[Mapping[str, float]] | None,
    dense: np.ndarray | None,
) -> Iterator[dict[str, Any]]:
    """``helpers.streaming_bulk`` actions that write (or overwrite) whole documents by ``_id``."""
    for i, (pid, payload) in enumerate(zip(pids, payloads)):
        source = dict(payload)
        if sparse is not None and sparse[i]:
            source[SPARSE_FIELD] = dict(sparse[i])
        if dense is not None:
            source[DENSE_FIELD] = np.asarray(dense[i], dtype=np.float32).tolist()
        yield {"_op_type": "index", "_index": index, "_id": pid, "_source": source}


def delete_actions(index: str, pids: Iterable[str]) -> Iterator[dict[str, Any]]:
    for pid in pids:
        yield {"_op_type": "delete", "_index": index, "_id": pid}


def run_bulk(
    streaming_bulk: Callable[..., Iterable[tuple[bool, dict[str, Any]]]],
    client: Any,
    actions: Iterable[dict[str, Any]],
    *,
    missing_ok: bool = False,
) -> int:
    """Run bulk actions; per-item failures are collected and raised together as :class:`BulkWriteError`.

    Items rejected with 429 (queue full) are retried up to :data:`BULK_RETRIES` times with exponential
    backoff; connection errors and timeouts are retried by the client's transport. Deleting a document
    that is not there is not a failure when ``missing_ok``.
    """
    failures: list[dict[str, Any]] = []
    total = 0
    for ok, item in streaming_bulk(
        client,
        actions,
        chunk_size=BULK_CHUNK,
        max_retries=BULK_RETRIES,
        initial_backoff=1,
        max_backoff=30,
        raise_on_error=False,
        raise_on_exception=True,
    ):
        total += 1
        result = next(iter(item.values())) if item else {}
        if ok or (missing_ok and result.get("status") == 404):
            continue
        failures.append(result)
    if failures:
        raise BulkWriteError(failures, total)
    return total


# --- the shared adapter ---------------------------------------------------------------------------
class LuceneIndex(BaseIndex):
    """One OpenSearch / Elasticsearch index. Subclasses supply the engine's client and its vector queries.

    Args:
        client: the engine's Python client.
        name: the index name.
        meta: what the index records about itself.
        location: the location string, without credentials.
        exact: exact (brute-force) dense scoring instead of HNSW.
        vocabulary: the sparse model's tokens; loaded from the model the index records when not given.
        capabilities: what the server supports (see the engine modules' ``capabilities`` functions).
    """

    engine = "lucene"
    engine_fusions: tuple[str, ...] = ()
    #: The client library (set by each engine module).
    library: ClassVar[ClientLibrary]

    def __init__(
        self,
        client: Any,
        name: str,
        meta: IndexMeta,
        location: str,
        *,
        exact: bool = False,
        vocabulary: Sequence[str] | None = None,
        capabilities: Any = None,
    ) -> None:
        super().__init__(location, meta)
        self.client = client
        self.name = name
        self.exact = exact
        self.capabilities = capabilities
        self.engine_fusions = capabilities.fusions if capabilities is not None else ()
        self._unrefreshed = False  # writes not yet visible to search and count
        self._vocabulary = vocabulary
        self._keys: TokenKeys | None = None
        #: Seconds each request may wait (from the credentials); only used in error messages here.
        self.timeout: float | None = None

    @classmethod
    def _client_module(cls, submodule: str = "") -> Any:
        """The client library (imported lazily), or an ImportError that names the extra to install."""
        library = cls.library
        try:
            return importlib.import_module(library.package + (f".{submodule}" if submodule else ""))
        except ImportError as error:
            raise ImportError(
                f"{cls.engine} support needs {library.distribution}: pip install 'hybrid-search[{library.extra}]'"
            ) from error

    @classmethod
    def _error_classes(cls) -> ErrorClasses:
        """The client library's exceptions (see :func:`describe_server_error`): both clients name them alike."""
        errors = cls._client_module(cls.library.errors_module)
        return ErrorClasses(
            timeout=(errors.ConnectionTimeout,),
            connection=(errors.ConnectionError,),
            not_json=(errors.SerializationError,),
            refused=tuple(getattr(errors, name) for name in cls.library.refused),
        )

    @classmethod
    def _streaming_bulk(cls) -> Callable[..., Iterable[tuple[bool, dict[str, Any]]]]:
        return cls._client_module("helpers").streaming_bulk

    # --- hooks the engine modules implement -----------------------------------------------------

    @classmethod
    def _detect(cls, client: Any) -> Any:
        """The server's capabilities; raises :class:`EngineUnavailableError` for the wrong engine or version."""
        raise NotImplementedError

    @staticmethod
    def _mapping_body(meta: IndexMeta, capabilities: Any, *, shards: int) -> dict[str, Any]:
        """Body of ``PUT INDEX``."""
        raise NotImplementedError

    def _sparse_query(self, features: Mapping[str, float]) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def _knn_query(vector: np.ndarray, k: int, filters: Filters | None) -> dict[str, Any]:
        """Approximate nearest neighbours (HNSW)."""
        raise NotImplementedError

    @staticmethod
    def _exact_query(vector: np.ndarray, similarity: str, filters: Filters | None) -> dict[str, Any]:
        """Brute-force scoring of every document that matches ``filters``."""
        raise NotImplementedError

    def _dense_query(self, vector: np.ndarray, k: int, filters: Filters | None) -> dict[str, Any]:
        if self.exact:
            return self._exact_query(vector, self.meta.dense.get("similarity", "cosine"), filters)
        return self._knn_query(vector, k, filters)

    # --- opening and creating -------------------------------------------------------------------
    @classmethod
    def _connect(cls, target: str, credentials: Credentials | None, client: Any) -> tuple[Any, str, str, Any, float]:
        """``(client, index name, location without credentials, capabilities, timeout)`` for
        ``http(s)://HOST:PORT/INDEX``."""
        base, name = parse_target(target)
        creds = (credentials or Credentials.resolve(cls.engine)).with_url(base)
        if client is None:
            client = getattr(cls._client_module(), cls.library.client_class)(**creds.client_kwargs(cls.engine))
        location = f"{cls.engine}+{creds.url}/{name}"
        with server_errors(cls._error_classes(), cls.engine, location, creds.timeout):
            try:
                capabilities = cls._detect(client)
            except EngineUnavailableError as error:  # the wrong engine or version: say which server
                raise EngineUnavailableError(f"{location}: {error}") from error
        return client, name, location, capabilities, creds.timeout

    @classmethod
    def create(
        cls,
        target: str,
        meta: IndexMeta,
        *,
        exact: bool = False,
        credentials: Credentials | None = None,
        client: Any = None,
        vocabulary: Sequence[str] | None = None,
        shards: int = 1,
    ) -> LuceneIndex:
        """Create the index ``target`` (``http(s)://HOST:PORT/INDEX``) for the models ``meta`` records."""
        client, name, location, capabilities, timeout = cls._connect(target, credentials, client)
        with server_errors(cls._error_classes(), cls.engine, location, timeout):
            if client.indices.exists(index=name):
                raise FileExistsError(f"index {name!r} already exists at {location}; open it instead")
            meta.engine = cls.engine
            client.indices.create(index=name, body=cls._mapping_body(meta, capabilities, shards=shards))
        logger.info("created %s", location)
        index = cls(client, name, meta, location, exact=exact, vocabulary=vocabulary, capabilities=capabilities)
        index.timeout = timeout
        return index

    @classmethod
    def open(
        cls,
        target: str,
        *,
        exact: bool = False,
        credentials: Credentials | None = None,
        client: Any = None,
        vocabulary: Sequence[str] | None = None,
    ) -> LuceneIndex:
        """Open an index this project built; :class:`IndexNotFoundError` says how to build one otherwise."""
        client, name, location, capabilities, timeout = cls._connect(target, credentials, client)
        with server_errors(cls._error_classes(), cls.engine, location, timeout):
            if not client.indices.exists(index=name):
                raise IndexNotFoundError(
                    f"no index {name!r} at {location}. Build one with: hybrid-search index CORPUS --index {location}"
                )
            stored = meta_from_mapping(response_body(client.indices.get_mapping(index=name)), name)
        if not stored:
            raise IndexNotFoundError(f"index {name!r} at {location} was not built by hybrid-search")
        meta = IndexMeta.from_dict(stored)
        index = cls(client, name, meta, location, exact=exact, vocabulary=vocabulary, capabilities=capabilities)
        index.timeout = timeout
        return index

    @_talks_to_server
    def save_meta(self) -> None:
        self.client.indices.put_mapping(index=self.name, body=meta_update_body(self.meta))

    @_talks_to_server
    def drop(self) -> None:
        """Delete the whole index from the server."""
        self.client.indices.delete(index=self.name)

    def close(self) -> None:
        self.client.close()

    # --- helpers --------------------------------------------------------------------------------
    @property
    def keys(self) -> TokenKeys:
        """Token names ↔ vocabulary ids for this index's sparse model (loaded on first use)."""
        if self._keys is None:
            vocabulary = self._vocabulary if self._vocabulary is not None else load_vocabulary(self.meta.sparse)
            self._keys = TokenKeys(vocabulary)
        return self._keys

    @_talks_to_server
    def _search(self, body: dict[str, Any], **params: Any) -> list[RawHit]:
        self._refresh()
        return parse_hits(response_body(self.client.search(index=self.name, body=body, **params)))

    @_talks_to_server
    def _refresh(self) -> None:
        """Make writes searchable, once before the first read that needs it (not after every batch)."""
        if self._unrefreshed:
            self.client.indices.refresh(index=self.name)
            self._unrefreshed = False

    def _channel_query(self, channel: str, vector: Any, k: int, filters: Filters | None) -> dict[str, Any]:
        if channel == "sparse":
            return with_filters(self._sparse_query(self.keys.features(vector)), filters)
        return self._dense_query(np.asarray(vector, dtype=np.float32), k, filters)

    # --- primitives -----------------------------------------------------------------------------
    @_talks_to_server
    def _upsert_raw(self, pids, payloads, sparse, dense) -> None:
        features = [self.keys.features(v) for v in sparse] if sparse is not None else None
        self._unrefreshed = True
        run_bulk(self._streaming_bulk(), self.client, index_actions(self.name, pids, payloads, features, dense))

    @_talks_to_server
    def _delete_raw(self, pids) -> None:
        self._unrefreshed = True
        run_bulk(self._streaming_bulk(), self.client, delete_actions(self.name, pids), missing_ok=True)

    @_talks_to_server
    def _count_raw(self) -> int:
        self._refresh()
        return parse_count(response_body(self.client.count(index=self.name)))

    @_talks_to_server
    def _retrieve_raw(self, pids, payload, sparse):
        fields = list(PAYLOAD_FIELDS) if payload is True else list(payload or ["doc_id"])
        if sparse:
            fields.append(SPARSE_FIELD)
        out: list[tuple[dict, SparseVector | None]] = []
        for start in range(0, len(pids), PAGE):
            body = mget_body(pids[start : start + PAGE], fields)
            for source in parse_mget(response_body(self.client.mget(index=self.name, body=body))):
                vec = self.keys.vector(source.pop(SPARSE_FIELD, None) or {}) if sparse else None
                out.append((source, vec))
        return out

    def _search_raw(self, channel, vector, k, filters) -> list[RawHit]:
        k = clamp_k(k)
        return self._search(search_body(self._channel_query(channel, vector, k, filters), k))

    def _scroll_raw(self) -> Iterator[dict]:
        after = None
        while True:
            page = self._search(scroll_body(after))
            for source, _ in page:
                yield source
            if len(page) < PAGE:
                break
            after = page[-1][0]["doc_id"]

    def search_bm25(self, text: str, k: int, filters: Filters | None = None) -> Ranking:
        """BM25 from the engine itself: a ``match`` query on ``content`` (title + text)."""
        self.meta.check_filters(filters)
        if not text.strip():
            return []
        k = clamp_k(k)
        return self._ranking(self._search(search_body(with_filters(bm25_query(text), filters), k)))
