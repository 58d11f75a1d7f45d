"""Qdrant Edge: Qdrant's own engine, in-process and on disk. The embedded default.

Layout of an index folder::

    PATH/hybrid_search.json   the IndexMeta (engine, models, metadata fields)
    PATH/shard/               the Qdrant Edge shard (segments + write-ahead log)
    PATH/shard.partial/       only while :meth:`QdrantEdgeIndex.create` runs (renamed to shard/ when built)

The metadata file is written last when an index is created, so it marks a complete index; a shard left
without it by a crash holds no documents and the next ``create`` replaces it.

Writes go through the shard's write-ahead log, so a process killed mid-indexing loses at most the batch
it was writing; the indexing pipeline's resume logic does the rest.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from hybrid_search.index import (
    DiskFullError,
    IndexCorruptError,
    IndexMeta,
    IndexNotFoundError,
    IndexReadOnlyError,
    IndexStateError,
    check_free_space,
)
from indexers._qdrant_common import EDGE_SPELLING, ENGINE_RRF_OFFSET, QdrantFamilyIndex, collection_vectors, raw_hits
from indexers.base import RawHit

META_FILE = "hybrid_search.json"
#: Free space kept before any write: Qdrant's own rule, twice its write-ahead log segment (32 MiB). Its files
#: are memory-mapped, and a write into a full disk is a SIGBUS, not an error.
FREE_SPACE_MARGIN = 2 * 32 * (1 << 20)
#: Where :meth:`QdrantEdgeIndex.create` builds a shard before renaming it to ``shard``.
PARTIAL_SHARD = "shard.partial"


class IndexLockedError(IndexStateError):
    """Another process holds the index's write-ahead log."""


def _check_folder(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise IndexStateError(f"{path} is a file, not an index folder; give a folder for --index (new or existing)")


def _check_writable(path: Path) -> None:
    """Refuse an index folder (or the nearest existing parent of a new one) that cannot be written."""
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    targets = [probe] + [p for p in (probe / "shard", probe / META_FILE) if p.exists()]
    if any(not os.access(p, os.W_OK) for p in targets):
        raise IndexReadOnlyError(
            f"the index folder {probe} is read-only. Qdrant Edge opens an index's files for writing even to "
            "search it (it has no read-only mode), so it cannot be used in place: copy the folder somewhere "
            f"writable (cp -r {probe} /tmp/copy) and use the copy, or make it writable."
        )


def _read_meta(path: Path) -> IndexMeta:
    try:
        return IndexMeta.from_dict(json.loads((path / META_FILE).read_text(encoding="utf-8")))
    except (ValueError, TypeError, AttributeError) as error:  # bad JSON, bad UTF-8, or not an object
        raise IndexCorruptError(
            f"the index's metadata file {path / META_FILE} is damaged ({error}). Restore it from a backup, "
            "or delete the folder and index the corpus again."
        ) from error


def _engine_error(path: Path, error: BaseException) -> IndexStateError:
    """The user's reading of an error the engine raised while loading ``path``."""
    text = str(error)
    if "WouldBlock" in text:
        return IndexLockedError(
            f"the index at {path} is open in another process (a running `hybrid-search ui`, or an "
            "indexing job). Qdrant Edge allows one process per index: stop that process, or search "
            "through it."
        )
    if "os error 30" in text or "os error 13" in text:  # EROFS, EACCES
        return IndexReadOnlyError(
            f"the index at {path} cannot be opened for writing ({text.rsplit(': ', 1)[-1]}); Qdrant Edge needs "
            "write access even to search. Use a writable copy of the folder."
        )
    if "os error 28" in text:  # ENOSPC
        return DiskFullError(f"the disk holding {path} is full ({text}). Free some space and rerun the same command.")
    return IndexCorruptError(
        f"the index at {path} is damaged and cannot be loaded: {text}. Restore it from a backup, or delete the "
        "folder and index the corpus again."
    )


def _load_shard(path: Path) -> Any:
    try:
        return _qe().EdgeShard.load(str(path / "shard"))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as error:  # the engine raises bare Exceptions, and panics (BaseException) on some damage
        raise _engine_error(path, error) from error


def _clear_interrupted_creation(path: Path) -> None:
    """Remove what a crashed :meth:`QdrantEdgeIndex.create` left (a shard without metadata), if it holds nothing."""
    shutil.rmtree(path / PARTIAL_SHARD, ignore_errors=True)  # never holds data: it is renamed before any write
    shard = path / "shard"
    if not shard.exists():
        return
    try:
        loaded = _qe().EdgeShard.load(str(shard))
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # noqa: BLE001 - a half-created shard may not load (even panic); it held nothing
        loaded = None
    if loaded is not None:
        count = int(loaded.count(_qe().CountRequest(exact=True)))
        loaded.close()
        if count:
            raise IndexCorruptError(
                f"{shard} holds {count} documents but {path / META_FILE} is missing, so the models that built them "
                "are unknown. Restore the metadata file, or delete the folder and index the corpus again."
            )
    shutil.rmtree(shard)


def _qe() -> Any:
    import qdrant_edge

    return qdrant_edge


class QdrantEdgeIndex(QdrantFamilyIndex):
    """An index in a local folder, served by Qdrant Edge.

    Use :meth:`create` for a new index and :meth:`open` for an existing one.

    Args:
        path: the index folder.
        exact: exact (full-scan) dense search instead of HNSW, e.g. for reproducible benchmarks.
    """

    engine = "qdrant-edge"
    spelling = EDGE_SPELLING
    _models = staticmethod(_qe)

    def __init__(self, path: str | os.PathLike[str], meta: IndexMeta, shard: Any, *, exact: bool = False) -> None:
        super().__init__(str(path), meta)
        self.path = Path(path)
        self.shard = shard
        self.exact = exact

    @classmethod
    def create(cls, path: str | os.PathLike[str], meta: IndexMeta, *, exact: bool = False) -> QdrantEdgeIndex:
        """Create a new index at ``path``: atomically, so a crash at any point leaves either no index
        (and a folder that the next ``create`` cleans up) or a whole one, never a half one."""
        qe = _qe()
        path = Path(path)
        _check_folder(path)
        if (path / META_FILE).exists():
            raise FileExistsError(f"an index already exists at {path}; open it instead")
        _check_writable(path)
        check_free_space(path, 0, margin=FREE_SPACE_MARGIN, engine="Qdrant Edge")
        _clear_interrupted_creation(path)
        meta.engine = cls.engine
        vectors, sparse = collection_vectors(qe, cls.spelling, meta)
        # The shard is built under a temporary name and renamed into place before the metadata is written:
        # the metadata file marks a complete index, and anything left without it is an interrupted creation.
        partial = path / PARTIAL_SHARD
        qe.EdgeShard.create(str(partial), qe.EdgeConfig(vectors=vectors or None, sparse_vectors=sparse)).close()
        os.replace(partial, path / "shard")
        index = cls(path, meta, _qe().EdgeShard.load(str(path / "shard")), exact=exact)
        index.save_meta()
        return index

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, exact: bool = False) -> QdrantEdgeIndex:
        path = Path(path)
        _check_folder(path)
        if not (path / META_FILE).exists():
            leftover = (
                " (an interrupted creation left an empty shard there; indexing recreates it)"
                if ((path / "shard").exists() or (path / PARTIAL_SHARD).exists())
                else ""
            )
            raise IndexNotFoundError(
                f"no index at {path}{leftover}. Build one with: hybrid-search index CORPUS --index {path}"
            )
        meta = _read_meta(path)
        # Qdrant Edge opens its files for writing even to search (it has no read-only mode), so a read-only
        # index is named as such, and a nearly full disk is refused before the engine can crash on it.
        _check_writable(path)
        check_free_space(path, 0, margin=FREE_SPACE_MARGIN, engine="Qdrant Edge")
        return cls(path, meta, _load_shard(path), exact=exact)

    def ensure_free_space(self, needed: int) -> None:
        check_free_space(self.path, needed, margin=FREE_SPACE_MARGIN, engine="Qdrant Edge")

    def save_meta(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        tmp = self.path / (META_FILE + ".tmp")
        tmp.write_text(json.dumps(self.meta.to_dict(), indent=2))
        os.replace(tmp, self.path / META_FILE)  # atomic: a crash never leaves half a meta file

    def close(self) -> None:
        if self.shard is not None:
            self.shard.flush()
            self.shard.close()
            self.shard = None

    def flush(self) -> None:
        self.shard.flush()

    def optimize(self) -> bool:
        """Build the engine's indexes (HNSW, merged segments) now rather than on demand."""
        return bool(self.shard.optimize())

    # --- primitives -----------------------------------------------------------------------------
    def _params(self) -> Any:
        return _qe().SearchParams(exact=True) if self.exact else None

    def _write_points(self, points: list[Any]) -> None:
        self._update(_qe().UpdateOperation.upsert_points(points))

    def _delete_raw(self, pids) -> None:
        self._update(_qe().UpdateOperation.delete_points(list(pids)))

    def _update(self, operation: Any) -> None:
        try:
            self.shard.update(operation)
        except Exception as error:  # the engine raises bare Exceptions
            if "os error 28" in str(error):  # ENOSPC from a plain write (mapped writes never get this far)
                raise _engine_error(self.path, error) from error
            raise

    def _count_raw(self) -> int:
        return int(self.shard.count(_qe().CountRequest(exact=True)))

    def _records(self, pids: list[str], payload: bool | list[str], vectors: bool | list[str]) -> list[Any]:
        return list(self.shard.retrieve(pids, with_payload=payload, with_vector=vectors))

    def _page(
        self, offset: Any, limit: int, payload: bool | list[str], vectors: bool | list[str]
    ) -> tuple[list[Any], Any]:
        request = _qe().ScrollRequest(offset=offset, limit=limit, with_payload=payload, with_vector=vectors)
        records, offset = self.shard.scroll(request)
        return list(records), offset

    def _nearest(self, channel: str, vector: Any) -> Any:
        return _qe().Query.Nearest(self._vector(channel, vector), using=channel)

    def _search_raw(self, channel, vector, k, filters) -> list[RawHit]:
        qe = _qe()
        request = qe.QueryRequest(
            limit=k,
            query=self._nearest(channel, vector),
            filter=self._filter(filters),
            params=self._params(),
            with_payload=["doc_id"],
        )
        return raw_hits(self.shard.query(request))

    def _hybrid_raw(self, sparse, dense, k, prefetch_k, fusion, rrf_k, filters) -> list[RawHit]:
        qe = _qe()
        flt = self._filter(filters)
        prefetches = [
            qe.Prefetch(limit=prefetch_k, query=self._nearest(c, v), filter=flt, params=self._params())
            for c, v in (("sparse", sparse), ("dense", dense))
        ]
        fused = qe.Fusion.Rrf(k=int(rrf_k) + ENGINE_RRF_OFFSET) if fusion == "rrf" else qe.Fusion.Dbsf()
        request = qe.QueryRequest(limit=k, prefetches=prefetches, query=fused, filter=flt, with_payload=["doc_id"])
        return raw_hits(self.shard.query(request))
