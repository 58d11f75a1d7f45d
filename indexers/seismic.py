"""Seismic: an approximate sparse channel built beside a store of record.

Seismic (Bruch, Nardini, Rulli, Venturini, "Efficient Inverted Indexes for Approximate Retrieval over
Learned Sparse Representations", SIGIR 2024; ``pyseismic-lsr``, import ``seismic``) prunes each posting
list to its ``n_postings`` heaviest entries, clusters it into blocks with a summary vector each, and at
query time visits the ``query_cut`` heaviest query tokens' lists, skipping blocks whose summary score
cannot beat ``heap_factor`` times the current k-th best. It is static and read-optimised: no upsert, no
delete, no payload, no filters. So here it is an *accelerator*, never the store of record:

- The engine (Qdrant Edge by default, any adapter) keeps documents, payload, dense vectors, filters and
  the exact sparse vectors. :func:`build` reads those vectors back (``scroll_sparse``) and writes, in
  ``INDEX/seismic/`` (or a cache folder for a server engine): Seismic's index, an exact forward index
  (CSR, float32, memory-mapped) and the row → document id table. ``IndexMeta.sparse_ann`` records it,
  and :func:`indexers.open_index` wraps the engine's index in :class:`SeismicAcceleratedIndex`.
- **Never stale.** Every write through the wrapper is logged (``delta.log``, written *before* the engine
  write, so a crash in between can only make the delta larger) together with the new vectors. A search
  masks every logged id out of Seismic's candidates and searches the logged documents that still exist
  exactly (a token-major copy of their stored vectors), then merges. ``hybrid-search optimize INDEX``
  rebuilds and empties the delta; ``hybrid-search index`` does so itself once the delta exceeds
  :meth:`SeismicSettings.rebuild_threshold` (5% of the built documents, at least 1,000).
- **Exact scores.** Seismic stores values in half precision, so its scores are approximate; every
  candidate is re-scored from the exact forward index, the same float32 values the engine stores and
  explanations read. Only recall is approximate; scores, fusion and token explanations are exact.
- **Filters.** Seismic's candidates are over-fetched (``filter_overfetch`` × k) and filtered through the
  store's payload; when fewer than k survive (a selective filter) the query falls back to the engine's
  exact filtered search. :meth:`SeismicAcceleratedIndex.pop_timings` says which path ran.

Example:
    >>> from indexers import open_index  # doctest: +SKIP
    >>> from indexers.seismic import build
    >>> index = open_index("./my-index")  # doctest: +SKIP
    >>> build(index).documents  # doctest: +SKIP
    5000
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_search.fusion import fuse
from hybrid_search.index import Filters, IndexMeta, matches, point_id
from hybrid_search.types import Document, Ranking, ScoredId, SparseVector, sparse_to_csr

logger = logging.getLogger(__name__)

METHOD = "seismic"
FOLDER = "seismic"
_DELTA = "delta.log"
_STATE = "state.json"
_POSTINGS = "postings"  # Seismic appends ".index.seismic"


class SeismicUnavailableError(RuntimeError):
    """``pyseismic-lsr`` is not installed."""


def _seismic() -> Any:
    try:
        import seismic
    except ImportError as error:  # pragma: no cover - it is a declared dependency
        raise SeismicUnavailableError(
            "the Seismic accelerator needs pyseismic-lsr: pip install 'hybrid-search[seismic]' (or pyseismic-lsr)"
        ) from error
    return seismic


@dataclass(frozen=True)
class SeismicSettings:
    """Seismic's build and query settings, and the accelerator's own.

    The defaults were chosen on the synthetic generator fitted to SPLADE-tiny statistics at 100,000
    documents (``bench_seismic_settings.py --bare``) and on the MS MARCO 5k passages with the DL19 queries
    (``--data msmarco``), never on SciFact test: the fastest Seismic call with recall@10 >= 0.97 on both.
    On the fitted data recall is set by ``query_cut`` (8 query tokens: 0.979; 5: 0.923; 10: 0.988), hardly
    by ``n_postings`` (500, 1,000 and 2,000 within 0.006) and not by ``heap_factor``; on MS MARCO
    ``heap_factor`` 0.9 loses 0.024 against 0.8 (0.948 vs 0.972 at ``query_cut`` 8). The call's cost
    grows with the postings visited, so ``n_postings`` is the smallest tried and fixed rather than a share
    of the collection: a query visits at most ``query_cut × max_fraction × n_postings`` postings however
    large the collection grows (recall@10 0.987-0.988 from 100k to 1M documents).
    docs/benchmarks.md has the curves and the scale runs.

    Attributes:
        n_postings: postings kept, on average, per token list; ``0`` = automatic,
            ``max(postings_min, postings_ratio × documents)``, which by default is a constant 500
            (Seismic's guidelines suggest 3,000–6,000 for the 8.8M MS MARCO passages).
        postings_ratio, postings_min: the automatic rule above.
        centroid_fraction: blocks per list as a fraction of ``n_postings`` (guidelines: 0.05–0.2).
        summary_energy: share of each block summary's L1 mass kept (guidelines: 0.4–0.6).
        max_fraction: a list keeps at most ``max_fraction × n_postings`` entries.
        query_cut: query tokens (heaviest first) whose lists are visited.
        heap_factor: block-skip aggressiveness; higher prunes more (guidelines: 0.7–1.0).
        rebuild_fraction, rebuild_min: the delta size (written, changed or deleted documents since the
            build) above which ``index`` rebuilds: ``max(rebuild_min, rebuild_fraction × built)``.
        filter_overfetch: candidates fetched per requested hit when a filter is given.
        build_threads: Seismic's build threads (``0`` = one per core). One by default: its thread pool
            spins while it waits, and on a shared, busy machine that spinning cost a 3,000-document
            build minutes.
    """

    n_postings: int = 0
    postings_ratio: float = 0.0
    postings_min: int = 500
    centroid_fraction: float = 0.1
    summary_energy: float = 0.4
    max_fraction: float = 1.5
    query_cut: int = 8
    heap_factor: float = 0.8
    rebuild_fraction: float = 0.05
    rebuild_min: int = 1000
    filter_overfetch: int = 10
    build_threads: int = 1

    def postings(self, documents: int) -> int:
        return int(self.n_postings or max(self.postings_min, round(self.postings_ratio * documents)))

    def rebuild_threshold(self, built: int) -> int:
        return int(max(self.rebuild_min, self.rebuild_fraction * built))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SeismicSettings:
        known = {f.name: f.type for f in fields(cls)}
        unknown = sorted(set(data or {}) - set(known))
        if unknown:
            raise ValueError(f"unknown Seismic setting(s) {', '.join(unknown)}; known: {', '.join(known)}")
        return cls(**{k: (float(v) if isinstance(getattr(cls, k), float) else int(v)) for k, v in (data or {}).items()})


# --- exact scoring over CSR arrays (pure) -------------------------------------------------------
@dataclass
class Forward:
    """Document-major sparse vectors (CSR): row ``r`` is ``indices/values[indptr[r]:indptr[r + 1]]``."""

    indptr: np.ndarray
    indices: np.ndarray
    values: np.ndarray

    @classmethod
    def from_vectors(cls, vectors: Sequence[SparseVector]) -> Forward:
        return cls(*sparse_to_csr(vectors))


def rescore(forward: Forward, rows: np.ndarray, query: SparseVector) -> np.ndarray:
    """Exact dot products of ``query`` with the given rows (float64 sums of float32 products).

    The query is scattered into a dense array over the token ids, so each stored entry costs one lookup
    (no search); only the candidates' entries are read, so the cost follows ``len(rows)``, not the index.
    """
    rows = np.asarray(rows, dtype=np.int64)
    if rows.size == 0 or query.nnz == 0:
        return np.zeros(rows.size)
    starts, ends = forward.indptr[rows], forward.indptr[rows + 1]
    lengths = ends - starts
    total = int(lengths.sum())
    # Positions of every entry of every row, without a Python loop.
    pos = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths) + np.arange(total)
    idx = forward.indices[pos]
    dense = np.zeros(max(int(query.indices.max()), int(idx.max(initial=0))) + 1)
    dense[query.indices] = query.values
    products = dense[idx] * forward.values[pos]
    return np.bincount(np.repeat(np.arange(rows.size), lengths), weights=products, minlength=rows.size)


@dataclass
class Delta:
    """Documents written since the build, token-major, so a query touches only its tokens' entries."""

    vectors: dict[str, SparseVector] = field(default_factory=dict)
    _ids: list[str] | None = None
    _by_token: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None

    def set(self, doc_id: str, vector: SparseVector | None) -> None:
        if vector is None or vector.nnz == 0:
            self.vectors.pop(doc_id, None)
        else:
            self.vectors[doc_id] = vector
        self._by_token = None

    def _index(self) -> tuple[list[str], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        if self._by_token is None:
            self._ids = list(self.vectors)
            fwd = Forward.from_vectors([self.vectors[i] for i in self._ids])
            rows = np.repeat(np.arange(len(self._ids)), np.diff(fwd.indptr))
            order = np.argsort(fwd.indices, kind="stable")
            tokens = fwd.indices[order]
            self._by_token = (np.unique(tokens), tokens, rows[order], fwd.values[order])
        return self._ids or [], self._by_token

    def search(self, query: SparseVector) -> list[ScoredId]:
        """Every delta document that shares a token with ``query``, scored exactly."""
        if not self.vectors or query.nnz == 0:
            return []
        ids, (_, tokens, rows, values) = self._index()
        lo, hi = np.searchsorted(tokens, query.indices, "left"), np.searchsorted(tokens, query.indices, "right")
        take = [np.arange(a, b) for a, b in zip(lo, hi) if b > a]
        if not take:
            return []
        pos = np.concatenate(take)
        weights = np.repeat(query.values.astype(np.float64)[hi > lo], (hi - lo)[hi > lo])
        scores = np.bincount(rows[pos], weights=weights * values[pos], minlength=len(ids))
        return [ScoredId(ids[r], float(scores[r])) for r in np.unique(rows[pos])]


# --- on disk ------------------------------------------------------------------------------------
def folder_for(index: Any) -> Path:
    """Where an index's accelerator lives: ``INDEX/seismic`` for a folder engine, else a cache folder."""
    recorded = (index.meta.sparse_ann or {}).get("folder")
    if recorded:
        return Path(recorded)
    path = getattr(index, "path", None)
    if path is not None and Path(path).is_dir():
        return Path(path) / FOLDER
    key = hashlib.sha1(str(index.location).encode()).hexdigest()[:16]
    return Path(os.environ.get("HYBRID_SEARCH_CACHE", Path.home() / ".cache" / "hybrid-search")) / "seismic" / key


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """Seismic's Rust code prints build progress on file descriptor 1; keep ``--json`` output clean."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


@dataclass
class BuildReport:
    documents: int
    seconds: float
    read_seconds: float
    n_postings: int
    folder: str

    def summary(self) -> str:
        return (
            f"Seismic accelerator: {self.documents} documents in {self.seconds:.1f}s "
            f"(read {self.read_seconds:.1f}s, n_postings={self.n_postings}) -> {self.folder}"
        )


def _read_store(index: Any, progress: bool) -> tuple[list[str], Forward]:
    """Every stored id and non-empty sparse vector, packed a scroll page at a time.

    Packing each page at once keeps the peak at about one and a half copies of the packed arrays (the
    pages, then each array joined while the pages are let go), where holding every vector as an object
    first cost ~2.8 KB a document (4.5 GB at a million) before packing."""
    from tqdm.auto import tqdm

    ids: list[str] = []
    parts: dict[str, list[np.ndarray]] = {"lengths": [], "indices": [], "values": []}
    with tqdm(desc="reading sparse vectors", unit="doc", disable=not progress, dynamic_ncols=True) as bar:
        for batch in index.scroll_sparse(2000):
            kept = [(doc_id, vector) for doc_id, vector in batch if vector.nnz]
            if kept:
                ids.extend(doc_id for doc_id, _ in kept)
                indptr, indices, values = sparse_to_csr([vector for _, vector in kept])
                for name, part in zip(parts, (np.diff(indptr), indices, values)):
                    parts[name].append(part)
            bar.update(len(batch))
    indptr = np.zeros(len(ids) + 1, dtype=np.int64)
    np.cumsum(_joined(parts["lengths"], np.int64), out=indptr[1:])
    return ids, Forward(indptr, _joined(parts["indices"], np.int32), _joined(parts["values"], np.float32))


def _joined(parts: list[np.ndarray], dtype: type) -> np.ndarray:
    """``parts`` concatenated; the list is emptied, so the pieces go as soon as the whole exists."""
    whole = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    parts.clear()
    return whole


def _write_tables(folder: Path, ids: list[str], forward: Forward) -> np.ndarray:
    """The exact forward index, the id table and the vocabulary; returns the vocabulary.

    Seismic keeps one posting list per dimension and its build pays for each, empty or not: the tokens
    that occur are renumbered 0..n-1 (queries are mapped the same way at search time)."""
    for name in ("indptr", "indices", "values"):
        np.save(folder / f"forward_{name}.npy", getattr(forward, name))
    (folder / "ids.json").write_text(json.dumps(ids, ensure_ascii=False))
    vocabulary = np.unique(forward.indices)
    np.save(folder / "vocabulary.npy", vocabulary)
    return vocabulary


def _seismic_dataset(forward: Forward, vocabulary: np.ndarray) -> Any:
    """Seismic's in-memory dataset of the rows, by row number, in renumbered dimensions."""
    dataset = _seismic().SeismicDataset(dim=len(vocabulary))
    rows, step = len(forward.indptr) - 1, 100_000
    for lo in range(0, rows, step):
        hi = min(lo + step, rows)
        a, b = int(forward.indptr[lo]), int(forward.indptr[hi])
        dataset.add_documents_by_id(
            [str(r) for r in range(lo, hi)],
            np.searchsorted(vocabulary, forward.indices[a:b]).astype(np.int64),
            forward.values[a:b],
            forward.indptr[lo : hi + 1] - a,
        )
    return dataset


def _build_postings(dataset: Any, settings: SeismicSettings, n_postings: int, path: Path) -> None:
    with _stdout_to_stderr():
        postings = _seismic().SeismicIndex.build_from_dataset(
            dataset,
            n_postings=n_postings,
            centroid_fraction=settings.centroid_fraction,
            summary_energy=settings.summary_energy,
            max_fraction=settings.max_fraction,
            num_threads=settings.build_threads,
        )
        postings.save(str(path))


def _swap_in(tmp: Path, final: Path) -> None:
    """Replace ``final`` by ``tmp`` whole: a crash leaves one or the other, never a mix."""
    old = final.with_name(final.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)


def build(
    index: Any,
    settings: SeismicSettings | None = None,
    *,
    progress: bool = True,
    on_step: Callable[[str], None] | None = None,
) -> BuildReport:
    """(Re)build the accelerator from the index's stored sparse vectors and record it in the metadata.

    The new files are written to a temporary folder and swapped in whole, so a crash leaves either the
    old accelerator (with its delta log) or the new one. Works on the raw engine index or on a
    :class:`SeismicAcceleratedIndex` (which then reloads). ``on_step`` is told each step's name as it
    starts (``read``, ``tables``, ``dataset``, ``postings``), for a benchmark that measures each one's memory.
    """
    step = on_step or (lambda _name: None)
    engine = index.inner if isinstance(index, SeismicAcceleratedIndex) else index
    if not engine.meta.sparse:
        raise ValueError("this index has no sparse channel to accelerate")
    settings = settings or SeismicSettings.from_dict((engine.meta.sparse_ann or {}).get("settings"))
    _seismic()
    start = time.perf_counter()
    step("read")
    ids, forward = _read_store(engine, progress)
    read_s = time.perf_counter() - start
    step("tables")
    final = folder_for(engine)
    tmp = final.with_name(final.name + ".building")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    vocabulary = _write_tables(tmp, ids, forward)
    n_postings = settings.postings(len(ids))
    if ids:
        step("dataset")
        dataset = _seismic_dataset(forward, vocabulary)
        del forward  # the peak: one copy of the vectors in Seismic's dataset, then its index
        step("postings")
        _build_postings(dataset, settings, n_postings, tmp / _POSTINGS)
        del dataset
    seconds = time.perf_counter() - start
    built = {
        "method": METHOD,
        "settings": settings.to_dict(),
        "documents": len(ids),
        "n_postings": n_postings,
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 2),
    }
    (tmp / _STATE).write_text(json.dumps(built, indent=2))
    _swap_in(tmp, final)
    if getattr(engine, "path", None) is None or final.parent != Path(engine.path):
        built["folder"] = str(final)
    engine.meta.sparse_ann = built
    engine.save_meta()
    if isinstance(index, SeismicAcceleratedIndex):
        index.reload()
    return BuildReport(len(ids), seconds, read_s, n_postings, str(final))


# --- the loaded accelerator ---------------------------------------------------------------------
class Accelerator:
    """A loaded Seismic index with its forward index, id table and delta."""

    def __init__(self, folder: Path, settings: SeismicSettings) -> None:
        seismic = _seismic()
        self.folder = folder
        self.settings = settings
        self.ids: list[str] = json.loads((folder / "ids.json").read_text())
        # Memory-mapped, read through plain ndarray views (numpy.memmap's own indexing costs ~50 us a call).
        self.forward = Forward(
            *(np.asarray(np.load(folder / f"forward_{n}.npy", mmap_mode="r")) for n in ("indptr", "indices", "values"))
        )
        self.vocabulary = np.load(folder / "vocabulary.npy")
        path = folder / f"{_POSTINGS}.index.seismic"
        self.postings = seismic.SeismicIndex.load(str(path)) if self.ids else None
        # Seismic addresses component c as the string "c": the strings, and token id -> component, once.
        self._names = np.array([str(c) for c in range(len(self.vocabulary))], dtype=seismic.get_seismic_string())
        self._component = np.full(int(self.vocabulary[-1]) + 1 if len(self.vocabulary) else 0, -1, dtype=np.int64)
        self._component[self.vocabulary] = np.arange(len(self.vocabulary))
        self.touched: set[str] = set()
        log = folder / _DELTA
        if log.exists():
            self.touched = {json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line.strip()}
        self.delta = Delta()

    def load_delta(self, engine: Any) -> None:
        """The delta's current vectors, read from the store (deleted documents come back missing)."""
        if self.touched:
            stored = engine.sparse_vectors(sorted(self.touched))
            for doc_id in self.touched:
                self.delta.set(doc_id, stored.get(doc_id))

    def log(self, ids: Sequence[str]) -> None:
        with open(self.folder / _DELTA, "a", encoding="utf-8") as f:
            f.writelines(json.dumps(i, ensure_ascii=False) + "\n" for i in ids)
            f.flush()
            os.fsync(f.fileno())
        self.touched.update(ids)

    @property
    def stale(self) -> bool:
        return len(self.touched) > self.settings.rebuild_threshold(len(self.ids))

    def query_components(self, query: SparseVector) -> tuple[np.ndarray, np.ndarray]:
        """The query in Seismic's renumbered dimensions (tokens no document has are dropped)."""
        inside = query.indices < len(self._component)
        comps = np.full(query.nnz, -1, dtype=np.int64)
        comps[inside] = self._component[query.indices[inside]]
        known = comps >= 0
        return self._names[comps[known]], np.ascontiguousarray(query.values[known], dtype=np.float32)

    def candidates(self, query: SparseVector, k: int) -> list[ScoredId]:
        """Seismic's top ``k`` among the built documents not touched since, re-scored exactly."""
        if self.postings is None or k <= 0:
            return []
        comps, values = self.query_components(query)
        if comps.size == 0:
            return []
        if not self.touched:  # the common case: one call, every candidate kept
            return self._scored(self._search_rows(comps, values, k), query)
        want = k
        while True:
            ask = want + min(len(self.touched), want)
            rows = self._search_rows(comps, values, ask)
            fresh = np.fromiter((self.ids[r] not in self.touched for r in rows.tolist()), dtype=bool, count=rows.size)
            if int(fresh.sum()) >= k or rows.size < ask or ask >= len(self.ids):
                break
            want *= 2
        return self._scored(rows[fresh], query)

    def _search_rows(self, comps: np.ndarray, values: np.ndarray, k: int) -> np.ndarray:
        """The rows of Seismic's approximate top ``k`` (its third field is the document's row id)."""
        assert self.postings is not None
        raw = self.postings.search("q", comps, values, k, self.settings.query_cut, self.settings.heap_factor)
        return np.array([r[2] for r in raw], dtype=np.int64)

    def _scored(self, rows: np.ndarray, query: SparseVector) -> list[ScoredId]:
        scores = rescore(self.forward, rows, query).tolist()
        return [ScoredId(self.ids[r], s) for r, s in zip(rows.tolist(), scores)]


def _ranked(hits: Sequence[ScoredId], k: int) -> Ranking:
    return sorted((h for h in hits if h.score > 0), key=lambda h: (-h.score, h.id))[:k]


class SeismicAcceleratedIndex:
    """The engine's index with its sparse channel served by Seismic + the exact delta.

    Everything but the sparse channel (and writes, which also update the delta) goes to the engine's
    index unchanged. Hybrid queries are fused here, with the same formula the engine uses.
    """

    #: Hybrid queries fuse client-side: the engine's own fusion would search the sparse channel exactly.
    engine_fusions: tuple[str, ...] = ()
    engine_weighted_rrf = False

    def engine_fuses(self, fusion: str, channels: Any, **_: Any) -> bool:
        """Never: the engine's own fusion would search the sparse channel exactly, not through Seismic."""
        return False

    def __init__(self, inner: Any, accelerator: Accelerator | None) -> None:
        self.inner = inner
        self.accelerator = accelerator
        self._timings: dict[str, float] = {}
        self._memo: tuple[Any, Ranking] | None = None
        if accelerator is not None:
            accelerator.load_delta(inner)

    @classmethod
    def open(cls, inner: Any) -> SeismicAcceleratedIndex:
        """Wrap ``inner``; a missing or unreadable accelerator falls back to exact search, with a warning."""
        settings = SeismicSettings.from_dict((inner.meta.sparse_ann or {}).get("settings"))
        folder = folder_for(inner)
        try:
            accelerator = Accelerator(folder, settings)
        except (OSError, ValueError, SeismicUnavailableError) as error:
            logger.warning(
                "Seismic accelerator at %s unavailable (%s); the sparse channel searches exactly. "
                "Rebuild it with: hybrid-search optimize %s",
                folder,
                error,
                inner.location,
            )
            accelerator = None
        return cls(inner, accelerator)

    def reload(self) -> None:
        self.accelerator = Accelerator(
            folder_for(self.inner), SeismicSettings.from_dict(self.meta.sparse_ann["settings"])
        )
        self.accelerator.load_delta(self.inner)
        self._memo = None

    def __getattr__(self, name: str) -> Any:
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def meta(self) -> IndexMeta:
        return self.inner.meta

    @property
    def location(self) -> str:
        return self.inner.location

    def __enter__(self) -> SeismicAcceleratedIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.inner.close()

    # --- writes: logged first, then written, then mirrored into the delta -----------------------
    def upsert(
        self,
        docs: Sequence[Document],
        sparse: Sequence[SparseVector] | None,
        dense: Any,
        *,
        lexical: Sequence[Sequence[int]] | None = None,
    ) -> None:
        ids = [d.id for d in docs]
        if self.accelerator is not None and ids:
            self.accelerator.log(ids)
        self.inner.upsert(docs, sparse, dense, lexical=lexical)
        if self.accelerator is not None and sparse is not None:
            for doc_id, vector in zip(ids, sparse):
                self.accelerator.delta.set(doc_id, vector)
        self._memo = None

    def delete(self, ids: Sequence[str]) -> None:
        ids = list(ids)
        if self.accelerator is not None and ids:
            self.accelerator.log(ids)
        self.inner.delete(ids)
        if self.accelerator is not None:
            for doc_id in ids:
                self.accelerator.delta.set(doc_id, None)
        self._memo = None

    @property
    def delta_size(self) -> int:
        return len(self.accelerator.touched) if self.accelerator is not None else 0

    @property
    def needs_rebuild(self) -> bool:
        return self.accelerator is None or self.accelerator.stale

    # --- the sparse channel ----------------------------------------------------------------------
    def pop_timings(self) -> dict[str, float]:
        """Milliseconds per accelerator stage since the last call, keyed by the path that ran:
        ``sparse_seismic``, ``sparse_seismic_delta``, ``sparse_seismic_filter`` or
        ``sparse_exact_fallback`` (a selective filter, or no accelerator)."""
        out, self._timings = self._timings, {}
        return out

    def _lap(self, stage: str, start: float) -> float:
        now = time.perf_counter()
        self._timings[stage] = self._timings.get(stage, 0.0) + (now - start) * 1e3
        return now

    def search_sparse(self, vector: SparseVector, k: int, filters: Filters | None = None) -> Ranking:
        self.inner._require("sparse")
        self.meta.check_filters(filters)
        if vector.nnz == 0:
            return []
        key = (vector.indices.tobytes(), vector.values.tobytes(), k, json.dumps(filters, sort_keys=True, default=str))
        if self._memo is not None and self._memo[0] == key:  # a hybrid search right after its sparse leg
            return list(self._memo[1])
        ranking = self.search_sparse_uncached(vector, k, filters)
        self._memo = (key, ranking)
        return list(ranking)

    def search_sparse_uncached(self, vector: SparseVector, k: int, filters: Filters | None = None) -> Ranking:
        """:meth:`search_sparse` without the one-query memo (benchmarks time every call)."""
        return self._search_sparse(vector, k, filters)

    def _search_sparse(self, vector: SparseVector, k: int, filters: Filters | None) -> Ranking:
        t = time.perf_counter()
        if self.accelerator is None:
            ranking = self.inner.search_sparse(vector, k, filters)
            self._lap("sparse_exact_fallback", t)
            return ranking
        want = k * self.accelerator.settings.filter_overfetch if filters else k
        hits = self.accelerator.candidates(vector, want)
        t = self._lap("sparse_seismic", t)
        hits += self.accelerator.delta.search(vector)
        t = self._lap("sparse_seismic_delta", t)
        if not filters:
            return _ranked(hits, k)
        ranked = _ranked(hits, len(hits))
        allowed = self._allowed([h.id for h in ranked], filters)
        kept = [h for h in ranked if h.id in allowed][:k]
        t = self._lap("sparse_seismic_filter", t)
        if len(kept) < k:  # a selective filter: the engine's exact filtered search is both right and cheap
            kept = self.inner.search_sparse(vector, k, filters)
            self._lap("sparse_exact_fallback", t)
        return kept

    def _allowed(self, ids: Sequence[str], filters: Filters) -> set[str]:
        rows = self.inner._retrieve_raw([point_id(i) for i in ids], ["doc_id", "meta"], False)
        return {
            str(p["doc_id"])
            for p, _ in rows
            if matches(Document(str(p["doc_id"]), "", metadata=dict(p.get("meta") or {})), filters)
        }

    def search_hybrid(
        self,
        sparse: SparseVector | None,
        dense: Any,
        k: int,
        *,
        prefetch_k: int = 100,
        fusion: str = "rrf",
        rrf_k: float = 60,
        weights: Mapping[str, float] | None = None,
        filters: Filters | None = None,
        engine_fusion: bool = True,
    ) -> Ranking:
        """Seismic's sparse leg and the engine's dense leg, fused client-side (the same formula).

        The legs run one after the other: Seismic's search holds the GIL for its whole call, so a worker
        thread gained nothing (``bench_scale.py --breakdown``, docs/benchmarks.md)."""
        self.meta.check_filters(filters)
        rankings: dict[str, Ranking] = {}
        if sparse is not None:
            rankings["sparse"] = self.search_sparse(sparse, prefetch_k, filters)
        if dense is not None:
            t = time.perf_counter()
            rankings["dense"] = self.inner.search_dense(dense, prefetch_k, filters)
            self._lap("dense_engine", t)
        return fuse(fusion, rankings, rrf_k=rrf_k, weights=weights, limit=k)


def accelerate(inner: Any) -> Any:
    """``inner`` wrapped when its metadata records a Seismic accelerator, else ``inner`` itself."""
    if (inner.meta.sparse_ann or {}).get("method") == METHOD and inner.meta.sparse:
        return SeismicAcceleratedIndex.open(inner)
    return inner


def unwrap(index: Any) -> Any:
    """The engine's own index under an accelerator (exact sparse search)."""
    return index.inner if isinstance(index, SeismicAcceleratedIndex) else index


def refresh(
    index: Any, method: str | None = None, *, settings: SeismicSettings | None = None, progress: bool = True
) -> BuildReport | None:
    """After a write job: build the accelerator when ``method`` asks for one the index lacks, or rebuild
    it when its delta has passed :meth:`SeismicSettings.rebuild_threshold`. ``None`` when nothing ran."""
    if method not in (None, METHOD):
        raise ValueError(f"unknown sparse accelerator {method!r}; the one available is {METHOD!r}")
    accelerated = isinstance(index, SeismicAcceleratedIndex)
    if method is None and not accelerated:
        return None
    if accelerated and not index.needs_rebuild and settings is None:
        return None
    return build(index, settings, progress=progress)
