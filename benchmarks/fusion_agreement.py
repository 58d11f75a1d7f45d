"""Index the 5k-passage MS MARCO set into Qdrant Edge, then check engine-side RRF == client-side RRF.

    python benchmarks/fusion_agreement.py --dataset ../shared/data/msmarco-dl19-5k --index /tmp/dl19-edge

Prints the indexing wall time and, for every query, whether the engine's fused top 10 equals the one
fused in Python with the same formula (ties compared as sets, see hybrid_search.fusion.same_order).
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from hybrid_search.dataset import load_beir
from hybrid_search.encoders import DenseEncoder, SparseEncoder
from hybrid_search.fusion import same_order
from hybrid_search.retrieval import HybridSearcher
from indexers import open_index
from pipelines.indexing import index_corpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default=str(Path(__file__).resolve().parents[2] / "shared/data/msmarco-dl19-5k"))
    parser.add_argument("--index", default="/tmp/hybrid-search-dl19-edge")
    parser.add_argument("--keep", action="store_true", help="reuse an existing index instead of rebuilding it")
    args = parser.parse_args()

    sparse, dense = SparseEncoder.load("splade-tiny"), DenseEncoder.load("minilm")
    if not args.keep:
        shutil.rmtree(args.index, ignore_errors=True)
    start = time.perf_counter()
    report = index_corpus(args.dataset, args.index, sparse=sparse, dense=dense)
    print(f"{report.summary()} (wall {time.perf_counter() - start:.1f}s)")

    data = load_beir(args.dataset)
    searcher = HybridSearcher(open_index(args.index, exact=True), sparse=sparse, dense=dense)
    agree = 0
    for qid, query in data.queries.items():
        engine = searcher.search(query, k=10, explain_hits=False)
        client = searcher.search(query, k=10, explain_hits=False, engine_fusion=False)
        same = same_order(engine.hits, client.hits, 10)
        exact = [h.id for h in engine.hits] == [h.id for h in client.hits]
        agree += same
        print(f"{qid:>8} {'same' if same else 'DIFFERENT'}{'' if exact else ' (tied scores in another order)'}")
    print(f"engine-side RRF top 10 == client-side RRF top 10 for {agree}/{len(data.queries)} queries")


if __name__ == "__main__":
    main()
