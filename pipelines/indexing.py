"""Index a corpus: read as a stream → encode in batches → upsert idempotently, resumably.

Each document's stored ``content_hash`` tells a rerun what is already there: unchanged documents are
skipped before encoding, changed ones are re-encoded and overwritten. A run killed at any point (even by
SIGKILL) therefore finishes on the next run with exactly the corpus's documents, no duplicates, and no
document encoded twice. Duplicate ids in a corpus resolve to the last occurrence, corpus-wide: a quick first
pass over the ids finds them, and the earlier copies are never encoded or stored. Free disk space is checked
before each write, so a filling disk stops the run with a message and a resumable index instead of a crash.

Example:
    >>> from pipelines.indexing import index_corpus
    >>> report = index_corpus("corpus.jsonl", "./my-index")  # doctest: +SKIP
    >>> report.indexed, report.skipped_unchanged  # doctest: +SKIP
    (5000, 0)
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybrid_search.corpus import CorpusReader
from hybrid_search.encoders import DenseEncoder, SparseEncoder
from hybrid_search.index import (
    DiskFullError,
    IndexMeta,
    IndexNotFoundError,
    ModelMismatchError,
    content_hash,
)
from hybrid_search.jsonout import non_finite_as_null
from hybrid_search.readers import ReadReport, count_records
from hybrid_search.types import Document
from indexers import BaseIndex, create_index, open_index
from indexers.credentials import redact
from pipelines.workers import BatchEncoder, Encoded, InlineEncoder, ScaleOptions, Shard, select_shard

if TYPE_CHECKING:
    from concurrent.futures import Future

logger = logging.getLogger(__name__)


@dataclass
class IndexReport:
    """What an indexing run did."""

    location: str
    read: int = 0
    indexed: int = 0
    skipped_unchanged: int = 0
    truncated: int = 0
    superseded: int = 0
    pruned: int = 0
    pruned_ids: list[str] = field(default_factory=list)
    prune_skipped: str = ""
    count: int = 0
    seconds: float = 0.0
    corpus: dict[str, Any] = field(default_factory=dict)
    #: The sparse accelerator build this run triggered (``indexers.seismic.BuildReport``), if any.
    sparse_ann: dict[str, Any] | None = None

    @property
    def docs_per_second(self) -> float:
        return self.indexed / self.seconds if self.seconds else 0.0

    def summary(self) -> str:
        parts = [
            f"indexed {self.indexed} documents into {self.location} in {self.seconds:.1f}s"
            f" ({self.docs_per_second:.1f} docs/s)",
            f"skipped {self.skipped_unchanged} already stored",
            f"index now holds {self.count}",
        ]
        if self.truncated:
            parts.append(f"{self.truncated} documents longer than the model's max length were truncated")
        if self.superseded:
            parts.append(f"{self.superseded} earlier records of duplicate ids skipped (the last one wins)")
        if self.pruned:
            shown = ", ".join(self.pruned_ids[:_SHOWN_IDS]) + (", ..." if self.pruned > _SHOWN_IDS else "")
            parts.append(f"pruned {self.pruned} documents the corpus no longer has ({shown})")
        if self.prune_skipped:
            parts.append(f"not pruned: {self.prune_skipped}")
        if self.sparse_ann:
            parts.append(
                f"Seismic accelerator built over {self.sparse_ann['documents']} documents "
                f"in {self.sparse_ann['seconds']:.1f}s"
            )
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-able data; a non-finite number (never valid JSON) becomes ``None``."""
        return non_finite_as_null({**asdict(self), "docs_per_second": self.docs_per_second})


_SHOWN_IDS = 10


@dataclass(frozen=True)
class IndexOptions:
    """How an indexing run goes, besides what it reads, the models and where it writes.

    Attributes:
        batch_size: documents encoded and upserted together.
        exact: open the index for exact (full-scan) dense search.
        progress: show a progress bar.
        prune: afterwards, delete the stored documents whose ids the corpus no longer has (reported).
        index_options: passed to the adapter, e.g. ``credentials=`` for a server.
        sparse_ann: ``"seismic"`` builds a Seismic accelerator for the sparse channel after indexing
            (see ``indexers/seismic.py``). An index that has one keeps it: each run's writes go to its
            exactly-searched delta, and the run rebuilds it once the delta passes 5% of the built
            documents (at least 1,000).
        scale: the device(s), encoding workers and corpus shard (:class:`~pipelines.workers.ScaleOptions`).
    """

    batch_size: int = 64
    exact: bool = False
    progress: bool = True
    prune: bool = False
    index_options: dict[str, Any] | None = None
    sparse_ann: str | None = None
    scale: ScaleOptions | None = None

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"the batch size must be at least 1 (got {self.batch_size})")

    @classmethod
    def split(cls, options: IndexOptions | None, keywords: dict[str, Any]) -> tuple[IndexOptions, dict[str, Any]]:
        """``options`` (or the defaults) with the keywords that name its fields applied, and the other keywords."""
        names = {f.name for f in fields(cls)}
        own = {k: v for k, v in keywords.items() if k in names}
        return replace(options or cls(), **own), {k: v for k, v in keywords.items() if k not in names}


def _batches(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    it = iter(docs)
    while batch := list(islice(it, size)):
        yield batch


def _last_wins(batch: list[Document]) -> list[Document]:
    """Keep the last occurrence of each id inside one batch (across batches, later upserts overwrite)."""
    latest = {d.id: d for d in batch}
    return list(latest.values())


def drop_superseded(docs: Iterable[Document], duplicates: dict[str, int], report: IndexReport) -> Iterator[Document]:
    """Yield only the last record of each id, given ``{id: occurrences}`` for the ids that repeat.

    Resolving duplicates before anything is stored makes "the last record wins" hold corpus-wide: the
    earlier copies are never encoded or written, so a rerun finds the last copy stored and skips it, and
    no run can end with an earlier copy in the index. Each skipped record counts in ``report.superseded``.
    """
    remaining = dict(duplicates)
    for doc in docs:
        left = remaining.get(doc.id)
        if left is not None and left > 1:
            remaining[doc.id] = left - 1
            report.superseded += 1
            continue
        yield doc


def _check_channels(index: BaseIndex, sparse: SparseEncoder | None, dense: DenseEncoder | None) -> None:
    """Refuse to index with a different set of channels than the index has, before encoding anything."""
    for channel, built, given in (("sparse", index.meta.sparse, sparse), ("dense", index.meta.dense, dense)):
        has = ", ".join(c for c in index.meta.channels if c != "bm25")
        if given is not None and not built:
            raise ModelMismatchError(
                f"the index at {index.location} has no {channel} channel (it was built with: {has}); index with "
                f"--{channel} none, or into a new index to have both"
            )
        if given is None and built:
            raise ModelMismatchError(
                f"the index at {index.location} has a {channel} channel (model {built.get('name')!r}); index with "
                f"--{channel} {built.get('name')} too, so that every document has a vector for each channel"
            )


def _batch_bytes(docs: list[Document], svecs: Any, dvecs: Any) -> int:
    """A generous estimate of what writing one batch takes on disk (payload and write-ahead log)."""
    text = sum(len(d.full_text.encode("utf-8", "replace")) + len(str(d.metadata)) for d in docs)
    sparse = sum(8 * int(v.nnz) for v in svecs) if svecs is not None else 0
    dense = int(dvecs.nbytes) if dvecs is not None else 0
    return 2 * (2 * text + 2 * sparse + dense + 1024 * len(docs))


def open_or_create(
    location: str,
    sparse: SparseEncoder | None,
    dense: DenseEncoder | None,
    *,
    exact: bool = False,
    **index_options: Any,
) -> BaseIndex:
    """Open the index at ``location`` (refusing other models than its own) or create it."""
    if sparse is None and dense is None:
        raise ValueError("an index needs at least one of a sparse and a dense model")
    sparse_settings = sparse.settings() if sparse else None
    dense_settings = dense.settings() if dense else None
    try:
        index = open_index(location, exact=exact, **index_options)
    except IndexNotFoundError:
        meta = IndexMeta(engine="", sparse=sparse_settings, dense=dense_settings)
        try:
            return create_index(location, meta, exact=exact, **index_options)
        except Exception as error:  # noqa: BLE001 - e.g. another shard's process created it meanwhile
            index = _opened_after_race(location, error, exact=exact, **index_options)
    try:
        index.meta.check_models(sparse_settings, dense_settings)
        _check_channels(index, sparse, dense)
    except BaseException:
        index.close()
        raise
    return index


def _opened_after_race(location: str, error: Exception, **options: Any) -> BaseIndex:
    """The index another process created between our look and our create (``index --shard`` runs start
    together), or the create's own error when there is still none."""
    try:
        return open_index(location, **options)
    except IndexNotFoundError:
        raise error from None


class _OrderedWriter:
    """Upserts encoded batches on one writer thread, in batch order, while the next batches encode.

    A failed write stops every later one (the job then fails at its next batch with the engine's error, and
    everything written before it stays); stored hashes are never read for ids whose write has not landed.
    """

    def __init__(self, index: BaseIndex, sparse: SparseEncoder | None, report: IndexReport, bar: Any) -> None:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self.index, self.sparse, self.report, self.bar = index, sparse, report, bar
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="hybrid-search-upsert")
        # Writes queued in batch order, each with the ids it writes; each waits for its batch's vectors.
        self._pending: deque[tuple[Future, set[str]]] = deque()
        self._failed = threading.Event()
        self._engine = threading.Lock()  # adapters need not be thread-safe: one call into the index at a time

    def stored_hashes(self, ids: set[str]) -> dict[str, str]:
        while self._pending and any(not written.isdisjoint(ids) for _, written in self._pending):
            self._pending.popleft()[0].result()  # never compare against a write that has not landed
        with self._engine:
            return self.index.stored_hashes(list(ids))

    def submit(self, todo: list[Document], job: Future[Encoded], read: int, size: int, lookahead: int) -> None:
        """Queue ``todo``'s write, once at most ``lookahead`` others wait (the oldest is written, or its error
        raised, before more go)."""
        while len(self._pending) > lookahead:
            self._pending.popleft()[0].result()
        self._pending.append((self._pool.submit(self._write, todo, job, read, size), {d.id for d in todo}))

    def drain(self) -> None:
        while self._pending:
            self._pending.popleft()[0].result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _write(self, todo: list[Document], job: Future[Encoded], read: int, size: int) -> None:
        if self._failed.is_set():  # an earlier batch failed: write nothing after it
            raise RuntimeError("an earlier batch failed to encode or write")
        try:
            svecs, dvecs = job.result()
            self._write_encoded(todo, svecs, dvecs, read, size)
        except BaseException:
            self._failed.set()
            raise

    def _write_encoded(self, todo: list[Document], svecs: Any, dvecs: Any, read: int, size: int) -> None:
        # The lexical ids (which of a vector's tokens the text itself contains) are tokenised here, on
        # the writer thread, while the next batch encodes: explanations then need no tokenizer.
        texts = [d.full_text for d in todo]
        lexical = self.sparse.lexical_ids(texts, svecs) if self.sparse is not None else None
        with self._engine:
            # Stop cleanly, everything so far written, before a disk fills (memory-mapped files SIGBUS).
            self.index.ensure_free_space(_batch_bytes(todo, svecs, dvecs))
            _upsert(self.index, todo, svecs, dvecs, lexical)
        self.report.indexed += len(todo)
        logger.info("committed %d documents (%d new in this batch)", read, len(todo))
        self.bar.update(size)


def index_documents(
    docs: Iterable[Document],
    index: BaseIndex,
    sparse: SparseEncoder | None,
    dense: DenseEncoder | None,
    *,
    total: int | None = None,
    report: IndexReport | None = None,
    encoder: BatchEncoder | None = None,
    options: IndexOptions | None = None,
    **keywords: Any,
) -> IndexReport:
    """Encode and upsert ``docs`` into an open index, skipping documents already stored unchanged.

    Writing overlaps encoding: while batch *n* is upserted on a writer thread, batch *n + 1* is encoded
    (the encoders release the GIL in their matrix products). Batches land in order and memory stays
    bounded: at most one write is in flight, plus the batches an ``encoder`` of several workers
    (:mod:`pipelines.workers`) encodes ahead; a failed write stops the job at the next batch with the
    engine's error, and everything written before it stays. Stored hashes are never compared against a
    write that has not landed, and free space is checked before every write.

    ``options`` (:class:`IndexOptions`: ``batch_size`` and ``progress`` matter here) may also be given as
    keywords, e.g. ``batch_size=16``.
    """
    from tqdm.auto import tqdm

    opts, unknown = IndexOptions.split(options, keywords)
    if unknown:
        raise TypeError(f"index_documents() got unexpected keyword arguments: {', '.join(unknown)}")
    report = report or IndexReport(location=index.location)
    start = time.perf_counter()
    bar = tqdm(total=total, unit="doc", desc="indexing", disable=not opts.progress, dynamic_ncols=True)
    encoder = encoder or InlineEncoder(sparse, dense)
    writer = _OrderedWriter(index, sparse, report, bar)
    try:
        for batch in _batches(docs, opts.batch_size):
            size = len(batch)
            report.read += size
            batch = _last_wins(batch)
            stored = writer.stored_hashes({d.id for d in batch})
            todo = [d for d in batch if stored.get(d.id) != content_hash(d)]
            report.skipped_unchanged += len(batch) - len(todo)
            if not todo:
                bar.update(size)
                continue
            texts = [d.full_text for d in todo]
            if sparse is not None:
                report.truncated += sparse.count_truncated(texts)
            job = encoder.submit(texts)  # encoded here (inline) or by a worker process
            writer.submit(todo, job, report.read, size, encoder.lookahead)
        writer.drain()
    finally:
        writer.close()
        bar.close()
        report.seconds += time.perf_counter() - start
    report.count = index.count()
    return report


def _upsert(index: BaseIndex, todo: list[Document], svecs: Any, dvecs: Any, lexical: Any) -> None:
    """One batch's upsert; a full disk is a :class:`DiskFullError` that says how to resume."""
    try:
        index.upsert(todo, svecs, dvecs, lexical=lexical)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise DiskFullError(
            f"the disk holding {index.location} is full ({error.strerror}). Everything before this batch "
            "is stored: free some space and rerun the same command to resume."
        ) from error


def index_corpus(
    corpus: str | Path,
    location: str,
    *,
    sparse: str | SparseEncoder | None = "splade-tiny",
    dense: str | DenseEncoder | None = "minilm",
    options: IndexOptions | None = None,
    **keywords: Any,
) -> IndexReport:
    """Index a corpus file, folder or Hugging Face dataset into ``location`` (created if missing).

    Args:
        corpus: JSONL, CSV/TSV, Parquet, a BEIR folder, or ``hf:owner/name``.
        location: an index folder (Qdrant Edge), ``:memory:``, ``qdrant-local:PATH`` or a Qdrant URL.
        sparse, dense: model names or loaded encoders; ``None`` leaves that channel out.
        options: how the run goes (:class:`IndexOptions`: batch size, pruning, accelerator, scale...).
        keywords: :class:`IndexOptions` fields (``batch_size=16``, ``progress=False``...), which override
            ``options``; the others go to :class:`~hybrid_search.corpus.CorpusReader` (field names,
            ``strict``...).
    """
    opts, reader_options = IndexOptions.split(options, keywords)
    scale = opts.scale or ScaleOptions()
    device = scale.main_device()
    sparse_enc = SparseEncoder.load(sparse, device=device) if isinstance(sparse, str) else sparse
    dense_enc = DenseEncoder.load(dense, device=device) if isinstance(dense, str) else dense
    reader = CorpusReader(corpus, **reader_options)
    duplicates = reader.duplicate_ids()  # before the index is opened: a bad corpus changes nothing
    index = open_or_create(location, sparse_enc, dense_enc, exact=opts.exact, **(opts.index_options or {}))
    report = IndexReport(location=redact(str(location)))
    seen: set[str] | None = set() if opts.prune else None
    encoder = None
    try:
        encoder = scale.encoder(sparse_enc, dense_enc)
        total = count_records(corpus) if scale.shard is None else None
        docs = _remember_ids(drop_superseded(select_shard(reader, scale.shard), duplicates, report), seen)
        total = total and total - sum(n - 1 for n in duplicates.values())
        index_documents(docs, index, sparse_enc, dense_enc, total=total, report=report, encoder=encoder, options=opts)
        if seen is not None:
            prune_missing(index, seen, reader.report, report, shard=scale.shard)
        report.sparse_ann = _refresh_accelerator(index, opts.sparse_ann, opts.progress)
    finally:
        if encoder is not None:
            encoder.close()
        index.close()
    report.corpus = _read_report(reader.report)
    return report


def _remember_ids(docs: Iterable[Document], seen: set[str] | None) -> Iterator[Document]:
    for doc in docs:
        if seen is not None:
            seen.add(doc.id)
        yield doc


def prune_missing(
    index: BaseIndex, corpus_ids: set[str], read: ReadReport, report: IndexReport, *, shard: Shard | None = None
) -> None:
    """Delete the stored documents whose ids are not in ``corpus_ids``, recording them in ``report``.

    With a ``shard``, only that shard's documents are candidates: the others belong to other machines' runs.

    Nothing is deleted when some records' ids could not be read (malformed lines, missing ids): one of
    them may be a stored document whose record is damaged, not removed, and a careful prune keeps it.
    """
    unreadable = read.malformed + read.missing_id
    if unreadable:
        report.prune_skipped = (
            f"{unreadable} records of the corpus have no readable id (see the problems listed), so what it no "
            "longer has is unknown; fix them and rerun with --prune"
        )
        return
    gone = sorted(i for i in index.stored_ids() if i not in corpus_ids and (shard is None or shard.holds(i)))
    index.ensure_free_space(256 * len(gone))  # a delete is a write-ahead log entry too
    for start in range(0, len(gone), 1000):
        index.delete(gone[start : start + 1000])
    report.pruned, report.pruned_ids = len(gone), gone[:_SHOWN_IDS]
    report.count = index.count()


def _refresh_accelerator(index: BaseIndex, method: str | None, progress: bool) -> dict[str, Any] | None:
    if method is None and not index.meta.sparse_ann:
        return None
    from indexers.seismic import refresh

    built = refresh(index, method, progress=progress)
    return asdict(built) if built is not None else None


def _read_report(report: ReadReport) -> dict[str, Any]:
    data = asdict(report)
    data["summary"] = report.summary()
    return data
