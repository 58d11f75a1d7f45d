"""Engine adapters. :func:`open_index` and :func:`create_index` pick one from a location string.

- a folder path: Qdrant Edge (embedded, the default);
- ``:memory:``, ``qdrant-local:PATH``: qdrant-client local mode;
- ``http(s)://HOST:PORT`` or ``qdrant+http(s)://...``: a Qdrant server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hybrid_search.index import IndexMeta, IndexNotFoundError, SearchIndex

from indexers.base import BaseIndex
from indexers.qdrant_edge import META_FILE

_LOCAL_PREFIX = "qdrant-local:"


def parse_location(location: str) -> tuple[str, str]:
    """``(engine, target)`` for a location string."""
    location = str(location)
    if location == ":memory:":
        return "qdrant", ":memory:"
    if location.startswith(_LOCAL_PREFIX):
        return "qdrant", location[len(_LOCAL_PREFIX):]
    if location.startswith(("qdrant+http://", "qdrant+https://")):
        return "qdrant", location[len("qdrant+"):]
    if location.startswith(("http://", "https://")):
        return "qdrant", location
    meta = Path(location) / META_FILE
    if meta.exists():
        return json.loads(meta.read_text()).get("engine", "qdrant-edge"), location
    return "qdrant-edge", location


def open_index(location: str, *, exact: bool = False, **kwargs: Any) -> BaseIndex:
    """Open an existing index; :class:`IndexNotFoundError` says how to build one if there is none."""
    engine, target = parse_location(location)
    if engine == "qdrant-edge":
        from indexers.qdrant_edge import QdrantEdgeIndex

        return QdrantEdgeIndex.open(target, exact=exact)
    if engine == "qdrant":
        from indexers.qdrant import QdrantIndex

        if target not in (":memory:",) and not target.startswith("http") and not Path(target).exists():
            raise IndexNotFoundError(f"no index at {target}. Build one with: hybrid-search index CORPUS --index {location}")
        return QdrantIndex.open(target, exact=exact, **kwargs)
    raise IndexNotFoundError(f"unknown engine {engine!r} for {location}")


def create_index(location: str, meta: IndexMeta, *, exact: bool = False, **kwargs: Any) -> BaseIndex:
    engine, target = parse_location(location)
    if engine == "qdrant-edge":
        from indexers.qdrant_edge import QdrantEdgeIndex

        return QdrantEdgeIndex.create(target, meta, exact=exact)
    from indexers.qdrant import QdrantIndex

    return QdrantIndex.create(target, meta, exact=exact, **kwargs)


__all__ = ["BaseIndex", "SearchIndex", "create_index", "open_index", "parse_location"]
