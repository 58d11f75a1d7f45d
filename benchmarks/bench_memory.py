"""Peak memory while indexing a growing corpus: does anything but the engine grow with the corpus?

    nice -n 10 python benchmarks/bench_memory.py --docs 50000 --checkpoints 5000,10000,20000,50000 \
        [--dense minilm|none] [--sink edge|null] [--workers N] [--json out.json]

The corpus is the 5,000 MS MARCO passages of ``../shared/data/msmarco-dl19-5k`` repeated with unique ids
(``ID~k`` for the k-th copy), written to a temporary JSONL file and indexed by the product's own pipeline
(``CorpusReader`` → ``index_documents`` → the index), one process per run. When the reader hands out
document ``n`` for each ``n`` in ``--checkpoints`` (and at the end), the script records:

- ``peak_rss_mb``: the process's peak resident memory so far (``getrusage``), workers excluded;
- ``rss_mb``: its resident memory now;
- ``index_mb``: the index's size on disk.

``--encode model`` (the default) encodes every document with the models. ``--encode replay`` looks each
passage's vectors up in the embedding cache of the 5k corpus (``pipelines.embedding_cache``, filled by
``hybrid-search bench`` or on first use): everything else is the same pipeline, and the encoders' memory
per batch does not depend on the corpus size, so this measures reading, hashing, the writer and the engine
at sizes that real encoding would take hours to reach on a shared 2-core machine.

``--sink edge`` writes into a fresh Qdrant Edge folder (the default engine), whose own memory grows with
the index it holds. ``--sink null`` writes into an index that keeps nothing (it counts the documents and
stores no vector), which isolates the pipeline (reading, encoding, the writer thread): its memory must be
flat in the corpus size. The difference between the two runs at the same checkpoint is the engine's.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "data" / "msmarco-dl19-5k" / "corpus.jsonl"


def write_repeated_corpus(path: Path, docs: int) -> Path:
    """``docs`` passages: the 5k corpus repeated, each copy with its own ids (``ID~k``)."""
    rows = [json.loads(line) for line in CORPUS.open(encoding="utf-8")]
    with path.open("w", encoding="utf-8") as out:
        for i in range(docs):
            row = rows[i % len(rows)]
            out.write(json.dumps({**row, "_id": f"{row['_id']}~{i // len(rows)}"}, ensure_ascii=False) + "\n")
    return path


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports kB


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20 if path.exists() else 0.0


def null_index(meta: Any) -> Any:
    """An index that stores nothing: the pipeline's own memory, without an engine's."""
    from indexers.base import BaseIndex

    class NullIndex(BaseIndex):
        engine = "null"

        def __init__(self) -> None:
            super().__init__("null", meta)
            self.written = 0

        def _upsert_raw(self, pids, payloads, sparse, dense) -> None:
            self.written += len(pids)

        def _retrieve_raw(self, pids, payload, sparse):
            return []

        def _count_raw(self) -> int:
            return self.written

        def save_meta(self) -> None:
            pass

    return NullIndex()


class ReplayEncoder:
    """A :class:`~pipelines.workers.BatchEncoder` that returns the cached vectors of the 5k passages."""

    lookahead = 0

    def __init__(self, sparse: Any, dense: Any) -> None:
        from hybrid_search.dataset import load_beir
        from pipelines.embedding_cache import EmbeddingCache

        data = load_beir(CORPUS.parent)
        docs = list(data.corpus.values())
        cache = EmbeddingCache(progress=True)
        self.row = {d.full_text: i for i, d in enumerate(docs)}
        self.sparse = cache.sparse(sparse, docs, data.fingerprint())[0] if sparse else None
        self.dense = cache.dense(dense, docs, data.fingerprint())[0] if dense is not None else None

    def submit(self, texts: list[str]) -> Any:
        from concurrent.futures import Future

        from pipelines.workers import Encoded

        rows = [self.row[t] for t in texts]
        future: Future = Future()
        future.set_result(
            Encoded(
                [self.sparse[r] for r in rows] if self.sparse else None,
                self.dense[rows] if self.dense is not None else None,
            )
        )
        return future

    def close(self) -> None:
        pass


def checkpointed(docs: Iterable[Any], marks: list[int], record: Any) -> Iterator[Any]:
    """Pass the documents through, calling ``record(n)`` as document ``n`` of ``marks`` is handed out."""
    pending = sorted(marks)
    n = 0
    for n, doc in enumerate(docs, start=1):
        if pending and n == pending[0]:
            record(n)
            pending.pop(0)
        yield doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=50000)
    parser.add_argument("--checkpoints", default="5000,10000,20000,50000")
    parser.add_argument("--sparse", default="splade-tiny")
    parser.add_argument(
        "--dense", default="none", help="dense model or 'none' (default none: 50k with MiniLM takes ~25 min on 2 cores)"
    )
    parser.add_argument("--sink", choices=["edge", "null"], default="edge")
    parser.add_argument("--encode", choices=["model", "replay"], default="model")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dir", help="work folder (default: a temporary one, removed at the end)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args()

    from hybrid_search.corpus import CorpusReader
    from hybrid_search.encoders import DenseEncoder, SparseEncoder
    from hybrid_search.index import IndexMeta
    from pipelines.indexing import index_documents, open_or_create
    from pipelines.workers import ScaleOptions

    work = Path(args.dir or tempfile.mkdtemp(prefix="bench-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    corpus = write_repeated_corpus(work / "corpus.jsonl", args.docs)
    scale = ScaleOptions(workers=args.workers)
    device = scale.main_device()
    sparse = SparseEncoder.load(args.sparse, device=device) if args.sparse != "none" else None
    dense = DenseEncoder.load(args.dense, device=device) if args.dense != "none" else None
    location = work / "index"
    shutil.rmtree(location, ignore_errors=True)
    if args.sink == "edge":
        index = open_or_create(str(location), sparse, dense)
    else:
        index = null_index(
            IndexMeta(
                engine="null", sparse=sparse.settings() if sparse else None, dense=dense.settings() if dense else None
            )
        )
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()

    def record(n: int) -> None:
        rows.append(
            {
                "documents": n,
                "seconds": round(time.perf_counter() - start, 1),
                "rss_mb": round(rss_mb()),
                "peak_rss_mb": round(peak_rss_mb()),
                "index_mb": round(folder_mb(location)),
            }
        )
        print(json.dumps(rows[-1]), flush=True)

    marks = [int(m) for m in args.checkpoints.split(",") if int(m) < args.docs]
    encoder = ReplayEncoder(sparse, dense) if args.encode == "replay" else scale.encoder(sparse, dense)
    record(0)  # the models (and replay tables) loaded, the index opened, nothing read
    try:
        reader = CorpusReader(corpus)
        index_documents(
            checkpointed(reader, marks, record),
            index,
            sparse,
            dense,
            batch_size=args.batch_size,
            total=args.docs,
            progress=False,
            encoder=encoder,
        )
    finally:
        encoder.close()
    if args.sink == "edge":
        index.flush()
    record(args.docs)
    index.close()
    result = {
        "docs": args.docs,
        "sink": args.sink,
        "encode": args.encode,
        "sparse": args.sparse,
        "dense": args.dense,
        "workers": args.workers or 1,
        "batch_size": args.batch_size,
        "checkpoints": rows,
    }
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if not args.dir:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
