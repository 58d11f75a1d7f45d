"""Scaling indexing out: encoding workers on one machine, and shards of a corpus for many machines.

- **Workers** (``index --workers N``): N encoding processes, each with its own copy of the models on its own
  device (``--device cuda:0,cuda:1`` puts one on each GPU). The calling process stays the single writer: it
  reads the corpus, skips documents already stored, hands batches to the workers and upserts their vectors
  in corpus order, so the index is the same as a one-process run and stays idempotent and resumable.
- **Shards** (``index --shard I/N``): only the documents whose id hashes to shard ``I`` of ``N``. N machines
  (or N jobs of a batch system) each run one shard against the same server index (Qdrant, OpenSearch,
  Elasticsearch) and fill it in parallel; each shard resumes on its own, and rerunning one changes nothing.
  The hash is of the corpus id alone, so a document stays in its shard whatever else the corpus holds.

Example:
    >>> Shard.parse("1/4")
    Shard(index=1, count=4)
    >>> shard_of("doc-42", 4) == shard_of("doc-42", 4)
    True
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from hybrid_search.device import is_cpu, resolve_devices, worker_devices
from hybrid_search.types import Document

if TYPE_CHECKING:
    import numpy as np

    from hybrid_search.encoders import DenseEncoder, SparseEncoder
    from hybrid_search.types import SparseVector

logger = logging.getLogger(__name__)

#: Batches handed to each worker ahead of the writer: enough to keep every worker busy while one batch is
#: written, few enough that memory stays bounded whatever the corpus size.
BATCHES_AHEAD_PER_WORKER = 2


# --- shards -------------------------------------------------------------------------------------
def shard_of(doc_id: str, count: int) -> int:
    """The shard (0-based, of ``count``) that a corpus id falls in: a stable hash, the same on every machine,
    Python version and run (unlike ``hash()``, which is salted per process)."""
    digest = hashlib.blake2b(str(doc_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based: ``0/2`` and ``1/2`` are the two halves)."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"bad shard {self.index}/{self.count}: use I/N with N >= 1 and 0 <= I < N")

    @classmethod
    def parse(cls, spec: str) -> Shard:
        """``"I/N"`` as given to ``--shard``."""
        index, slash, count = str(spec).strip().partition("/")
        try:
            return cls(int(index), int(count if slash else "x"))
        except ValueError:  # not numbers, or out of range
            raise ValueError(f"bad --shard {spec!r}: use I/N with 0 <= I < N, e.g. 0/4 ... 3/4") from None

    def holds(self, doc_id: str) -> bool:
        return shard_of(doc_id, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def select_shard(docs: Iterable[Document], shard: Shard | None) -> Iterator[Document]:
    """The documents of ``shard``, streamed (all of them without one)."""
    if shard is None or shard.count == 1:
        yield from docs
        return
    for doc in docs:
        if shard.holds(doc.id):
            yield doc


# --- encoders -----------------------------------------------------------------------------------
class WorkerError(RuntimeError):
    """An encoding worker process could not start or died (e.g. killed for memory); what was written stays."""


class Encoded(NamedTuple):
    """One batch's vectors, in the batch's order."""

    sparse: list[SparseVector] | None
    dense: np.ndarray | None


class BatchEncoder(Protocol):
    """Encodes batches of document texts, possibly several at once; :func:`index_documents` writes the
    results in the order it submitted them."""

    #: How many batches may be submitted before the oldest one's result is needed.
    lookahead: int

    def submit(self, texts: Sequence[str]) -> Future[Encoded]: ...

    def close(self) -> None: ...


def _encode(sparse: SparseEncoder | None, dense: DenseEncoder | None, texts: Sequence[str]) -> Encoded:
    return Encoded(
        sparse.encode_document(texts) if sparse is not None else None,
        dense.encode_document(texts) if dense is not None else None,
    )


class InlineEncoder:
    """Encodes in the calling process, when asked: one batch at a time (the default, ``--workers 1``)."""

    lookahead = 0

    def __init__(self, sparse: SparseEncoder | None, dense: DenseEncoder | None) -> None:
        self.sparse, self.dense = sparse, dense

    def submit(self, texts: Sequence[str]) -> Future[Encoded]:
        """Encode now (an error is raised here, before anything else is read); the result as a done future."""
        future: Future[Encoded] = Future()
        future.set_result(_encode(self.sparse, self.dense, texts))
        return future

    def close(self) -> None:
        pass


@dataclass(frozen=True)
class EncoderSpec:
    """What a worker process needs to load the same encoders as the caller's (names and options)."""

    sparse: str | None = None
    sparse_options: dict[str, Any] = field(default_factory=dict)
    dense: str | None = None
    dense_options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, sparse: SparseEncoder | None, dense: DenseEncoder | None) -> EncoderSpec:
        """The spec of loaded encoders: each worker reloads them by the name they were loaded by."""
        return cls(
            sparse=sparse.name if sparse is not None else None,
            sparse_options={"max_active_dims": sparse.max_active_dims, "batch_size": sparse.batch_size}
            if sparse is not None
            else {},
            dense=dense.name if dense is not None else None,
            dense_options={"backend": dense.backend, "batch_size": dense.batch_size} if dense is not None else {},
        )

    def check(self, devices: Sequence[str]) -> None:
        """Refuse, before any process starts, what a worker could not load on its device."""
        backend = self.dense_options.get("backend", "auto")
        if self.dense and backend not in ("auto", "torch") and not all(is_cpu(d) for d in devices):
            raise ValueError(f"the dense backend {backend!r} runs on the CPU; use the torch backend on a GPU")

    def load(self, device: str) -> tuple[SparseEncoder | None, DenseEncoder | None]:
        from hybrid_search.encoders import DenseEncoder, SparseEncoder

        sparse = SparseEncoder.load(self.sparse, device=device, **self.sparse_options) if self.sparse else None
        dense = DenseEncoder.load(self.dense, device=device, **self.dense_options) if self.dense else None
        return sparse, dense


_WORKER: dict[str, Any] = {}  # the models of a worker process, loaded once by its initializer


def _init_worker(spec: EncoderSpec, devices: Any, threads: int) -> None:
    """Load the models in a fresh worker process, on the next free device of the pool's list."""
    device = devices.get()
    if is_cpu(device):
        import torch

        torch.set_num_threads(threads)  # the cores are shared out: N workers × threads = the machine
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass
    _WORKER["device"] = device
    _WORKER["encoders"] = spec.load(device)


def _encode_in_worker(texts: Sequence[str]) -> Encoded:
    return _encode(*_WORKER["encoders"], texts)


def _relay(done: Future[Encoded], result: Future[Encoded]) -> None:
    from concurrent.futures.process import BrokenProcessPool

    error = done.exception()
    if isinstance(error, BrokenProcessPool):
        error = WorkerError(
            "an encoding worker process failed to start or died (its messages are above; out of "
            "memory?); rerun the same command to resume: everything written so far is kept"
        )
    if error is not None:
        result.set_exception(error)
    else:
        result.set_result(done.result())


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask, where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


class EncoderPool:
    """N encoding processes, one per entry of ``devices``, each loading the models of ``spec`` once.

    Processes are started with ``spawn`` (CUDA cannot be used in a forked child, and a fork of a process
    running torch's thread pool can deadlock). CPU workers share the machine's cores out between them.

    Args:
        spec: the encoders to load in each worker.
        devices: one device per worker, e.g. ``["cuda:0", "cuda:1"]`` or ``["cpu", "cpu"]``.
    """

    def __init__(self, spec: EncoderSpec, devices: Sequence[str]) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        spec.check(devices)
        context = multiprocessing.get_context("spawn")
        queue = context.Queue()
        for device in devices:
            queue.put(device)
        cpu_workers = sum(is_cpu(d) for d in devices)
        threads = max(1, cpu_cores() // max(1, cpu_workers))
        self.devices = list(devices)
        self.lookahead = BATCHES_AHEAD_PER_WORKER * len(devices)
        self._queue = queue
        self._pool = ProcessPoolExecutor(
            len(devices), mp_context=context, initializer=_init_worker, initargs=(spec, queue, threads)
        )
        logger.info("encoding with %d worker processes on %s", len(devices), ", ".join(devices))

    def submit(self, texts: Sequence[str]) -> Future[Encoded]:
        """The batch's vectors, from whichever worker is free; a dead worker becomes a :class:`WorkerError`."""
        job = self._pool.submit(_encode_in_worker, list(texts))
        result: Future[Encoded] = Future()
        job.add_done_callback(lambda done: _relay(done, result))
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._queue.close()


# --- options --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ScaleOptions:
    """Where and how an indexing run encodes, and which part of the corpus it takes.

    Args:
        device: one device or a comma-separated list (``cuda:0,cuda:1``); ``None``: ``$HYBRID_SEARCH_DEVICE``,
            else ``auto``.
        workers: encoding processes (default: one per listed device, i.e. 1 for a single device).
        shard: only this shard of the corpus.
    """

    device: str | None = None
    workers: int | None = None
    shard: Shard | None = None

    def worker_devices(self) -> list[str]:
        """The device of each worker; one entry means encoding in the calling process."""
        return worker_devices(resolve_devices(self.device), self.workers)

    def main_device(self) -> str:
        """Where the calling process loads its models: the one device, or the CPU when workers encode (it
        then only reads their settings and tokenises)."""
        devices = self.worker_devices()
        return devices[0] if len(devices) == 1 else "cpu"

    def encoder(self, sparse: SparseEncoder | None, dense: DenseEncoder | None) -> BatchEncoder:
        """An :class:`InlineEncoder` on the loaded models, or an :class:`EncoderPool` of several workers."""
        devices = self.worker_devices()
        if len(devices) == 1:
            return InlineEncoder(sparse, dense)
        return EncoderPool(EncoderSpec.of(sparse, dense), devices)


__all__ = [
    "BatchEncoder",
    "Encoded",
    "EncoderPool",
    "EncoderSpec",
    "InlineEncoder",
    "ScaleOptions",
    "Shard",
    "WorkerError",
    "select_shard",
    "shard_of",
]
