"""Index a corpus: read as a stream → encode in batches → upsert idempotently, resumably.

Each document's stored ``content_hash`` tells a rerun what is already there: unchanged documents are
skipped before encoding, changed ones are re-encoded and overwritten. A run killed at any point (even by
SIGKILL) therefore finishes on the next run with exactly the corpus's documents, no duplicates, and no
document encoded twice. Duplicate ids in a corpus resolve to the last occurrence.

Example:
    >>> from pipelines.indexing import index_corpus
    >>> report = index_corpus("corpus.jsonl", "./my-index")  # doctest: +SKIP
    >>> report.indexed, report.skipped_unchanged  # doctest: +SKIP
    (5000, 0)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from hybrid_search.corpus import CorpusReader, ReadReport, count_documents
from hybrid_search.encoders import DenseEncoder, SparseEncoder
from hybrid_search.index import IndexMeta, IndexNotFoundError, content_hash
from hybrid_search.types import Document
from indexers import BaseIndex, create_index, open_index
from pipelines.workers import BatchEncoder, Encoded, InlineEncoder, ScaleOptions, select_shard

logger = logging.getLogger(__name__)


@dataclass
class IndexReport:
    """What an indexing run did."""

    location: str
    read: int = 0
    indexed: int = 0
    skipped_unchanged: int = 0
    truncated: int = 0
    count: int = 0
    seconds: float = 0.0
    corpus: dict[str, Any] = field(default_factory=dict)

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
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "docs_per_second": self.docs_per_second}


def _batches(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    it = iter(docs)
    while batch := list(islice(it, size)):
        yield batch


def _last_wins(batch: list[Document]) -> list[Document]:
    """Keep the last occurrence of each id inside one batch (across batches, later upserts overwrite)."""
    latest = {d.id: d for d in batch}
    return list(latest.values())


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
    index.meta.check_models(sparse_settings, dense_settings)
    return index


def _opened_after_race(location: str, error: Exception, **options: Any) -> BaseIndex:
    """The index another process created between our look and our create (``index --shard`` runs start
    together), or the create's own error when there is still none."""
    try:
        return open_index(location, **options)
    except IndexNotFoundError:
        raise error from None


def index_documents(
    docs: Iterable[Document],
    index: BaseIndex,
    sparse: SparseEncoder | None,
    dense: DenseEncoder | None,
    *,
    batch_size: int = 64,
    total: int | None = None,
    progress: bool = True,
    report: IndexReport | None = None,
    encoder: BatchEncoder | None = None,
) -> IndexReport:
    """Encode and upsert ``docs`` into an open index, skipping documents already stored unchanged.

    Writing overlaps encoding: while batch *n* is upserted on a writer thread, batch *n + 1* is encoded
    (the encoders release the GIL in their matrix products). Batches land in order and memory stays
    bounded: at most one write is in flight, plus the batches an ``encoder`` of several workers
    (:mod:`pipelines.workers`) encodes ahead; a failed write stops the job at the next batch with the
    engine's error, and everything written before it stays.
    """
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    from tqdm.auto import tqdm

    report = report or IndexReport(location=index.location)
    start = time.perf_counter()
    bar = tqdm(total=total, unit="doc", desc="indexing", disable=not progress, dynamic_ncols=True)
    writer = ThreadPoolExecutor(1, thread_name_prefix="hybrid-search-upsert")
    encoder = encoder or InlineEncoder(sparse, dense)
    pending: deque[Future] = deque()  # writes queued in batch order; each waits for its batch's vectors
    failed = threading.Event()
    engine = threading.Lock()  # adapters need not be thread-safe: one call into the index at a time

    def write(todo: list[Document], job: Future[Encoded], read: int, size: int) -> None:
        if failed.is_set():  # an earlier batch failed: write nothing after it
            raise RuntimeError("an earlier batch failed to encode or write")
        try:
            svecs, dvecs = job.result()
            write_encoded(todo, svecs, dvecs, read, size)
        except BaseException:
            failed.set()
            raise

    def write_encoded(todo: list[Document], svecs: Any, dvecs: Any, read: int, size: int) -> None:
        # The lexical ids (which of a vector's tokens the text itself contains) are tokenised here, on
        # the writer thread, while the next batch encodes: explanations then need no tokenizer.
        lexical = sparse.lexical_ids([d.full_text for d in todo], svecs) if sparse is not None else None
        with engine:
            index.upsert(todo, svecs, dvecs, lexical=lexical)
        report.indexed += len(todo)
        logger.info("committed %d documents (%d new in this batch)", read, len(todo))
        bar.update(size)

    try:
        for batch in _batches(docs, batch_size):
            size = len(batch)
            report.read += size
            batch = _last_wins(batch)
            with engine:
                stored = index.stored_hashes([d.id for d in batch])
            todo = [d for d in batch if stored.get(d.id) != content_hash(d)]
            report.skipped_unchanged += len(batch) - len(todo)
            if not todo:
                bar.update(size)
                continue
            texts = [d.full_text for d in todo]
            if sparse is not None:
                report.truncated += sparse.count_truncated(texts)
            job = encoder.submit(texts)  # encoded here (inline) or by a worker process
            while len(pending) > encoder.lookahead:
                pending.popleft().result()  # the oldest batch is written (or its error raised) before more go
            pending.append(writer.submit(write, todo, job, report.read, size))
        while pending:
            pending.popleft().result()
    finally:
        writer.shutdown(wait=True, cancel_futures=True)
        bar.close()
        report.seconds += time.perf_counter() - start
    report.count = index.count()
    return report


def index_corpus(
    corpus: str | Path,
    location: str,
    *,
    sparse: str | SparseEncoder | None = "splade-tiny",
    dense: str | DenseEncoder | None = "minilm",
    batch_size: int = 64,
    exact: bool = False,
    progress: bool = True,
    index_options: dict[str, Any] | None = None,
    scale: ScaleOptions | None = None,
    **reader_options: Any,
) -> IndexReport:
    """Index a corpus file, folder or Hugging Face dataset into ``location`` (created if missing).

    Args:
        corpus: JSONL, CSV/TSV, Parquet, a BEIR folder, or ``hf:owner/name``.
        location: an index folder (Qdrant Edge), ``:memory:``, ``qdrant-local:PATH`` or a Qdrant URL.
        sparse, dense: model names or loaded encoders; ``None`` leaves that channel out.
        batch_size: documents encoded and upserted together.
        index_options: passed to the adapter, e.g. ``credentials=`` for a server.
        scale: the device(s), encoding workers and corpus shard (:class:`~pipelines.workers.ScaleOptions`).
        reader_options: passed to :class:`~hybrid_search.corpus.CorpusReader` (field names, ``strict``...).
    """
    scale = scale or ScaleOptions()
    device = scale.main_device()
    sparse_enc = SparseEncoder.load(sparse, device=device) if isinstance(sparse, str) else sparse
    dense_enc = DenseEncoder.load(dense, device=device) if isinstance(dense, str) else dense
    reader = CorpusReader(corpus, **reader_options)
    index = open_or_create(location, sparse_enc, dense_enc, exact=exact, **(index_options or {}))
    encoder = None
    try:
        encoder = scale.encoder(sparse_enc, dense_enc)
        report = IndexReport(location=str(location))
        index_documents(
            select_shard(reader, scale.shard), index, sparse_enc, dense_enc,
            batch_size=batch_size, total=count_documents(corpus) if scale.shard is None else None, progress=progress,
            report=report, encoder=encoder,
        )
    finally:
        if encoder is not None:
            encoder.close()
        index.close()
    report.corpus = _read_report(reader.report)
    return report


def _read_report(report: ReadReport) -> dict[str, Any]:
    data = asdict(report)
    data["summary"] = report.summary()
    return data
