"""Engine adapters. :func:`open_index` and :func:`create_index` pick one from a location string.

- a folder path: Qdrant Edge (embedded, the default);
- ``:memory:``, ``qdrant-local:PATH``: qdrant-client local mode;
- ``http(s)://HOST:PORT`` or ``qdrant+http(s)://...``: a Qdrant server;
- ``opensearch+http(s)://HOST:PORT[/INDEX]``: an OpenSearch index (default name ``hybrid-search``);
- ``elasticsearch+http(s)://HOST:PORT[/INDEX]``: an Elasticsearch index.

Server credentials come from a ``credentials=`` :class:`~indexers.credentials.Credentials` or from the
``HYBRID_SEARCH_<ENGINE>_*`` environment variables (see ``indexers/credentials.py``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hybrid_search.index import IndexMeta, IndexNotFoundError, SearchIndex
from indexers.base import BaseIndex
from indexers.qdrant_edge import META_FILE

_LOCAL_PREFIX = "qdrant-local:"
#: Location prefixes of the server engines, ``ENGINE+http(s)://``.
SERVER_ENGINES = ("opensearch", "elasticsearch")


def _server_class(engine: str) -> type[BaseIndex]:
    if engine == "opensearch":
        from indexers.opensearch import OpenSearchIndex

        return OpenSearchIndex
    from indexers.elasticsearch import ElasticsearchIndex

    return ElasticsearchIndex


def _qdrant_server_kwargs(target: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """qdrant-client keyword arguments: the API key and the timeout from ``credentials=`` or the
    ``HYBRID_SEARCH_QDRANT_*`` variables."""
    from indexers.credentials import Credentials

    credentials = kwargs.pop("credentials", None)
    if target.startswith(("http://", "https://")):
        credentials = credentials or Credentials.resolve("qdrant", url=target)
        if credentials.api_key and "api_key" not in kwargs:
            kwargs["api_key"] = credentials.api_key
        kwargs.setdefault("timeout", credentials.qdrant_kwargs()["timeout"])
    return kwargs


def parse_location(location: str) -> tuple[str, str]:
    """``(engine, target)`` for a location string."""
    location = str(location)
    if not location.strip():
        # An empty path is the current directory: an index would be written among whatever is there.
        raise ValueError("the index location is empty; give a folder such as ./my-index, or a server URL")
    if location == ":memory:":
        return "qdrant", ":memory:"
    if location.startswith(_LOCAL_PREFIX):
        return "qdrant", location[len(_LOCAL_PREFIX) :]
    if location.startswith(("qdrant+http://", "qdrant+https://")):
        return "qdrant", location[len("qdrant+") :]
    for engine in SERVER_ENGINES:
        if location.startswith((f"{engine}+http://", f"{engine}+https://")):
            return engine, location[len(engine) + 1 :]
    if location.startswith(("http://", "https://")):
        return "qdrant", location
    meta = Path(location) / META_FILE
    if meta.is_file():
        try:
            return json.loads(meta.read_text()).get("engine", "qdrant-edge"), location
        except (ValueError, AttributeError):  # damaged: the adapter's open() says so, with what to do
            pass
    return "qdrant-edge", location


def open_index(location: str, *, exact: bool = False, sparse_ann: bool = True, **kwargs: Any) -> BaseIndex:
    """Open an existing index; :class:`IndexNotFoundError` says how to build one if there is none.

    An index whose metadata records a sparse accelerator (``index --sparse-ann seismic``) comes back
    wrapped in :class:`~indexers.seismic.SeismicAcceleratedIndex`; ``sparse_ann=False`` gives the engine's
    own index, whose sparse search is exact (writes through it bypass the accelerator's delta log, so
    use it for reading).
    """
    index = _open_engine(location, exact=exact, **kwargs)
    if sparse_ann and index.meta.sparse_ann:
        from indexers.seismic import accelerate

        return accelerate(index)
    return index


def _open_engine(location: str, *, exact: bool = False, **kwargs: Any) -> BaseIndex:
    engine, target = parse_location(location)
    if engine == "qdrant-edge":
        from indexers.qdrant_edge import QdrantEdgeIndex

        return QdrantEdgeIndex.open(target, exact=exact)
    if engine == "qdrant":
        from indexers.qdrant import QdrantIndex

        if target not in (":memory:",) and not target.startswith("http") and not Path(target).exists():
            raise IndexNotFoundError(
                f"no index at {target}. Build one with: hybrid-search index CORPUS --index {location}"
            )
        return QdrantIndex.open(target, exact=exact, **_qdrant_server_kwargs(target, kwargs))
    if engine in SERVER_ENGINES:
        return _server_class(engine).open(target, exact=exact, **kwargs)
    raise IndexNotFoundError(f"unknown engine {engine!r} for {location}")


def create_index(location: str, meta: IndexMeta, *, exact: bool = False, **kwargs: Any) -> BaseIndex:
    engine, target = parse_location(location)
    if engine == "qdrant-edge":
        from indexers.qdrant_edge import QdrantEdgeIndex

        return QdrantEdgeIndex.create(target, meta, exact=exact)
    if engine in SERVER_ENGINES:
        return _server_class(engine).create(target, meta, exact=exact, **kwargs)
    from indexers.qdrant import QdrantIndex

    return QdrantIndex.create(target, meta, exact=exact, **_qdrant_server_kwargs(target, kwargs))


__all__ = ["BaseIndex", "SearchIndex", "create_index", "open_index", "parse_location"]
