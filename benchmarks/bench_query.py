"""Query latency, end to end, with the time of each stage: hybrid-search's defaults against sentence-transformers.

    python benchmarks/bench_query.py [--index PATH] [--queries 200] [--repeats 4] [--inference-free]

A hybrid query here is everything the demo does for one query except the reranker: SPLADE-tiny and MiniLM
query encoding, the engine's prefetch (sparse top 100 + dense top 100) with RRF in Qdrant Edge, fetching the
top 10 documents, and the decoded token-overlap explanation of every hit. The same searcher runs with
several sets of encoders, taking turns in blocks (one system answers all queries, then the next; the first
round warms up), so that each keeps its weights in cache as a server would and machine noise reaches all:

- peer: sentence-transformers' ``encode_query`` for both models (``SparseEncoder(fast=False)``,
  ``DenseEncoder(backend="torch")``);
- hybrid-search: the defaults (SPLADE-tiny and MiniLM queries on verified float32 ONNX Runtime exports),
  and, opt-in, MiniLM with int8 weights.

Also timed: one SPLADE-tiny query alone (ONNX export, PyTorch fast pass, sentence-transformers, with their
vectors compared), and inference-free query encoding (a table lookup) against sentence-transformers'
``encode_query`` for the same model. The index is the 5,000-passage DL19 sample, built on first use under ``--index``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT.parent / "shared" / "data" / "msmarco-dl19-5k"
STAGES = ("encode", "encode_sparse", "encode_dense", "fusion", "explain", "other")


def load_queries(n: int) -> list[str]:
    with (DATASET / "queries.jsonl").open() as f:
        return [json.loads(line)["text"] for line in f][:n]


def ensure_index(path: Path) -> None:
    from indexers import parse_location
    from indexers.qdrant_edge import META_FILE
    from pipelines.indexing import index_corpus

    if (path / META_FILE).exists():
        return
    parse_location(str(path))
    print(f"building the benchmark index at {path} (once)", flush=True)
    index_corpus(str(DATASET / "corpus.jsonl"), str(path), sparse="splade-tiny", dense="minilm")


def p(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", type=Path, default=ROOT / "runs" / "bench-query" / "dl19-5k")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=4, help="passes over the queries (the first warms up)")
    parser.add_argument(
        "--inference-free",
        action="store_true",
        help="also time inference-free SPLADE (from SPLADE-tiny, IDF query weights) with MiniLM, "
        "on a second index built once beside --index",
    )
    args = parser.parse_args()

    import torch

    from hybrid_search.encoders import DenseEncoder, SparseEncoder, build_inference_free
    from hybrid_search.retrieval import HybridSearcher
    from indexers import open_index

    ensure_index(args.index)
    queries = load_queries(args.queries)
    index = open_index(str(args.index))
    splade = SparseEncoder.load("splade-tiny")
    minilm = DenseEncoder.load("minilm", backend="torch")
    systems = {
        "sentence-transformers": HybridSearcher(index, SparseEncoder(splade.model, "splade-tiny", fast=False), minilm),
        "hybrid-search": HybridSearcher(index, splade, DenseEncoder(minilm.model, "minilm", backend="auto")),
        "hybrid-search, int8 MiniLM": HybridSearcher(
            index, splade, DenseEncoder(minilm.model, "minilm", backend="onnx-int8")
        ),
    }
    if args.inference_free:
        model_dir = args.index.parent / "inference-free-splade-tiny"
        if not model_dir.exists():
            texts = [json.loads(line)["text"] for line in (DATASET / "corpus.jsonl").open()]
            build_inference_free("splade-tiny", texts).save(str(model_dir))
        if_path = args.index.parent / "dl19-5k-inference-free"
        if not if_path.exists():
            from pipelines.indexing import index_corpus

            print(f"building the inference-free index at {if_path} (once)", flush=True)
            index_corpus(str(DATASET / "corpus.jsonl"), str(if_path), sparse=str(model_dir), dense="minilm")
        if_index, if_sparse = open_index(str(if_path)), SparseEncoder.load(str(model_dir))
        systems["inference-free + MiniLM"] = HybridSearcher(
            if_index, if_sparse, DenseEncoder(minilm.model, "minilm", backend="auto")
        )
        systems["inference-free + int8 MiniLM"] = HybridSearcher(
            if_index, if_sparse, DenseEncoder(minilm.model, "minilm", backend="onnx-int8")
        )
    totals: dict[str, list[float]] = {name: [] for name in systems}
    stages: dict[str, dict[str, list[float]]] = {name: {s: [] for s in STAGES} for name in systems}
    # Round-robin by blocks: each system answers every query in a row, as a server would (its weights stay
    # in cache), and the systems take turns block by block, so that machine noise reaches them all alike.
    for repeat in range(args.repeats):
        for name, searcher in systems.items():
            for query in queries:
                start = time.perf_counter()
                result = searcher.search(query, 10, channel_ranks=False)
                elapsed = (time.perf_counter() - start) * 1e3
                if repeat == 0:
                    continue
                totals[name].append(elapsed)
                timed = dict(result.timings_ms)
                # "encode" is the wall time of both encoders, which overlap; "other" is what is left:
                # fetching the documents, building the hits, decoding the query tokens.
                timed["other"] = elapsed - sum(timed.get(s, 0.0) for s in ("encode", "fusion", "explain"))
                for stage in STAGES:
                    stages[name][stage].append(timed.get(stage, 0.0))

    print(
        f"{len(queries)} DL19 queries x {args.repeats - 1} timed passes, Qdrant Edge, 5,000 passages, "
        f"torch threads {torch.get_num_threads()}"
    )
    print(f"{'system':30}{'p50 ms':>9}{'p95 ms':>9}  " + "".join(f"{s:>14}" for s in STAGES) + "  (stage p50 ms)")
    for name in systems:
        print(
            f"{name:30}{p(totals[name], 50):9.2f}{p(totals[name], 95):9.2f}  "
            + "".join(f"{p(stages[name][s], 50):14.2f}" for s in STAGES)
        )

    # One SPLADE-tiny query alone: the ONNX export (the default), the exact PyTorch fast pass and
    # sentence-transformers' encode_query, in blocks as above; vectors compared with the peer's.
    splade_paths = {
        "onnx": splade,
        "torch fast pass": SparseEncoder(splade.model, "splade-tiny", onnx_queries=False),
        "sentence-transformers": SparseEncoder(splade.model, "splade-tiny", fast=False),
    }
    splade_ms: dict[str, list[float]] = {name: [] for name in splade_paths}
    vectors: dict[str, list] = {}
    for repeat in range(3):
        for name, enc in splade_paths.items():
            vectors[name] = []
            for query in queries:
                start = time.perf_counter()
                vectors[name].append(enc.encode_query([query])[0])
                if repeat:
                    splade_ms[name].append((time.perf_counter() - start) * 1e3)
    max_diff, same_dims = 0.0, True
    for name in ("onnx", "torch fast pass"):
        for ours_vec, ref in zip(vectors[name], vectors["sentence-transformers"]):
            if not np.array_equal(ours_vec.indices, ref.indices):
                same_dims = False
                continue
            max_diff = max(max_diff, float(np.abs(ours_vec.values - ref.values).max(initial=0.0)))
    st_ms = p(splade_ms["sentence-transformers"], 50)
    print(
        "SPLADE-tiny query alone p50: "
        + ", ".join(f"{name} {p(ms, 50):.2f} ms ({st_ms / p(ms, 50):.1f}x)" for name, ms in splade_ms.items())
        + f"; same active dimensions: {same_dims}, max abs diff {max_diff:.1e}"
    )

    # Inference-free query encoding: the lookup against sentence-transformers' encode_query.
    corpus = [json.loads(line)["text"] for line in (DATASET / "corpus.jsonl").open()][:2000]
    model = build_inference_free("splade-tiny", corpus)
    lookup, peer = SparseEncoder(model, "if"), SparseEncoder(model, "if", fast=False)
    timings: dict[str, list[float]] = {"lookup": [], "peer": []}
    for query in queries * 2:
        for name, enc in (("lookup", lookup), ("peer", peer)):
            start = time.perf_counter()
            enc.encode_query([query])
            timings[name].append((time.perf_counter() - start) * 1e3)
    print(
        f"inference-free query encoding p50: lookup {p(timings['lookup'], 50):.3f} ms, "
        f"sentence-transformers {p(timings['peer'], 50):.3f} ms "
        f"({p(timings['peer'], 50) / p(timings['lookup'], 50):.1f}x)"
    )
    ours, theirs = p(totals["hybrid-search"], 50), p(totals["sentence-transformers"], 50)
    print(
        f"hybrid_query_p50_ms={ours:.2f} speedup={theirs / ours:.2f} "
        f"int8_p50_ms={p(totals['hybrid-search, int8 MiniLM'], 50):.2f} "
        f"inference_free_query_ms={p(timings['lookup'], 50):.3f} "
        f"splade_query_ms={p(splade_ms['onnx'], 50):.2f} splade_query_speedup={st_ms / p(splade_ms['onnx'], 50):.2f}"
    )


if __name__ == "__main__":
    main()
