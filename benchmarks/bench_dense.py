"""Dense document encoding: hybrid-search's ONNX Runtime backends against sentence-transformers.

    python benchmarks/bench_dense.py [--docs 256] [--repeats 3] [--model minilm]

The same MS MARCO passages, batch 32, one process; sentence-transformers' PyTorch ``encode_document``,
then the float32 ONNX export (the same vectors; the default for queries) and the int8 one (opt-in), alternating
so that machine noise hits all alike; the best of ``--repeats`` runs of each is compared. The last line is
``dense_encode_speedup=X.XX max_abs_diff=Y int8_speedup=Z.ZZ int8_min_cosine=C``. With the DL19 queries
beside the corpus, it also times one query at a time (p50 over the queries, twice each).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from bench_sparse import DEFAULT_CORPUS, FALLBACK_CORPUS, load_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS if DEFAULT_CORPUS.exists() else FALLBACK_CORPUS)
    args = parser.parse_args()

    import torch

    from hybrid_search.encoders import DenseEncoder

    texts = load_texts(args.corpus, args.docs)
    peer = DenseEncoder.load(args.model, backend="torch", batch_size=args.batch_size)
    systems = {
        "sentence-transformers": peer,
        "onnx float32": DenseEncoder(peer.model, args.model, backend="onnx", batch_size=args.batch_size),
        "onnx int8": DenseEncoder(peer.model, args.model, backend="onnx-int8", batch_size=args.batch_size),
    }
    for enc in systems.values():
        enc.encode_document(texts[:32])  # warm-up (and, the first time, the export)
    times: dict[str, list[float]] = {name: [] for name in systems}
    vectors: dict[str, np.ndarray] = {}
    for _ in range(args.repeats):
        for name, enc in systems.items():
            start = time.perf_counter()
            vectors[name] = enc.encode_document(texts)
            times[name].append(time.perf_counter() - start)
    best = {name: min(t) for name, t in times.items()}
    reference = vectors["sentence-transformers"]
    print(f"model={args.model} docs={len(texts)} batch={args.batch_size} threads={torch.get_num_threads()}")
    for name in systems:
        diff = float(np.abs(vectors[name] - reference).max())
        cosine = float((vectors[name] * reference).sum(axis=1).min())
        print(
            f"{name:22} {len(texts) / best[name]:7.1f} docs/s  x{best['sentence-transformers'] / best[name]:.2f}"
            f"  max abs diff {diff:.1e}  min cosine {cosine:.4f}"
            f"  (runs: {', '.join(f'{t:.2f}s' for t in times[name])})"
        )
    # One query at a time, as a search sees them (encode_query runs one thread for a handful of texts).
    queries_file = args.corpus.parent / "queries.jsonl"
    if queries_file.exists():
        import json

        queries = [json.loads(line)["text"] for line in queries_file.open()][:100]
        latency: dict[str, list[float]] = {name: [] for name in systems}
        for enc in systems.values():
            enc.encode_query(queries[:5])
        for query in queries * 2:
            for name, enc in systems.items():
                start = time.perf_counter()
                enc.encode_query([query])
                latency[name].append((time.perf_counter() - start) * 1e3)
        p50 = {name: float(np.percentile(v, 50)) for name, v in latency.items()}
        print(
            "one query, p50 ms: "
            + ", ".join(f"{name} {p50[name]:.2f} (x{p50['sentence-transformers'] / p50[name]:.2f})" for name in systems)
        )
    int8 = vectors["onnx int8"]
    print(
        f"dense_encode_speedup={best['sentence-transformers'] / best['onnx float32']:.2f} "
        f"max_abs_diff={float(np.abs(vectors['onnx float32'] - reference).max()):.2e} "
        f"int8_speedup={best['sentence-transformers'] / best['onnx int8']:.2f} "
        f"int8_min_cosine={float((int8 * reference).sum(axis=1).min()):.4f}"
    )


if __name__ == "__main__":
    main()
