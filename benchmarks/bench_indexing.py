"""Indexing end to end against the encoders alone: is the engine, or I/O, ever the bottleneck?

    python benchmarks/bench_indexing.py [--docs 1000] [--batch-size 64]

Encodes the same MS MARCO passages twice with the default encoders (SPLADE-tiny and MiniLM, batch
``--batch-size``): once by calling the encoders alone, once through ``pipelines.indexing.index_documents``
into a fresh Qdrant Edge index (content hashes, upserts overlapped with encoding, the final count). The
last line is ``indexing_vs_encoder=R`` with R the end-to-end throughput over the encoders' throughput
(1.00: the index costs nothing).
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT.parent / "shared" / "data" / "msmarco-dl19-5k" / "corpus.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    from hybrid_search.encoders import DenseEncoder, SparseEncoder
    from hybrid_search.index import IndexMeta
    from hybrid_search.types import Document
    from indexers import create_index
    from pipelines.indexing import index_documents

    docs = []
    with CORPUS.open() as f:
        for line in f:
            row = json.loads(line)
            docs.append(Document(row["_id"], row["text"], row.get("title", "")))
            if len(docs) == args.docs:
                break
    sparse, dense = SparseEncoder.load("splade-tiny"), DenseEncoder.load("minilm")
    warm = [d.full_text for d in docs[:32]]
    sparse.encode_document(warm), dense.encode_document(warm)

    start = time.perf_counter()
    for s in range(0, len(docs), args.batch_size):
        texts = [d.full_text for d in docs[s : s + args.batch_size]]
        sparse.encode_document(texts)
        dense.encode_document(texts)
    encoders = len(docs) / (time.perf_counter() - start)

    folder = Path(tempfile.mkdtemp(prefix="hs-index-bench-"))
    try:
        index = create_index(
            str(folder / "index"), IndexMeta(engine="", sparse=sparse.settings(), dense=dense.settings())
        )
        start = time.perf_counter()
        report = index_documents(docs, index, sparse, dense, batch_size=args.batch_size, progress=False)
        index.close()
        end_to_end = len(docs) / (time.perf_counter() - start)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert report.indexed == len(docs), report
    print(
        f"docs={len(docs)} batch={args.batch_size} dense backend={dense.backend} (documents on "
        f"{'torch' if dense.backend in ('auto', 'torch') else dense.backend})"
    )
    print(f"encoders alone (SPLADE-tiny + MiniLM): {encoders:.1f} docs/s")
    print(f"index_documents into Qdrant Edge:      {end_to_end:.1f} docs/s")
    print(f"indexing_vs_encoder={end_to_end / encoders:.2f}")


if __name__ == "__main__":
    main()
