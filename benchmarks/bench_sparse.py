"""Sparse document encoding: hybrid-search's exact fast SPLADE pass against sentence-transformers.

    python benchmarks/bench_sparse.py [--docs 256] [--repeats 3] [--corpus PATH]

Both encode the same MS MARCO passages (and, for context, the fast pass without its bfloat16 screen) with the same SPLADE-tiny weights, batch 32, in one process,
alternating so that machine noise hits both alike; the best of ``--repeats`` runs of each is compared.
The last line is ``sparse_encode_speedup=X.XX max_abs_diff=Y``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = ROOT.parent / "shared" / "data" / "msmarco-dl19-5k" / "corpus.jsonl"
FALLBACK_CORPUS = ROOT / "pipelines" / "data" / "demo_corpus.jsonl"


def load_texts(path: Path, n: int) -> list[str]:
    texts = []
    with path.open() as f:
        for line in f:
            row = json.loads(line)
            texts.append(f"{row.get('title', '')} {row['text']}".strip())
            if len(texts) == n:
                break
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS if DEFAULT_CORPUS.exists() else FALLBACK_CORPUS)
    args = parser.parse_args()

    from hybrid_search.encoders import SparseEncoder

    texts = load_texts(args.corpus, args.docs)
    encoder = SparseEncoder.load("splade-tiny", batch_size=args.batch_size)
    model = encoder.model

    def peer() -> torch.Tensor:
        return model.encode_document(texts, batch_size=args.batch_size, convert_to_tensor=True)

    def ours() -> list:
        return encoder.encode_document(texts)

    from hybrid_search.encoders.fast_splade import FastSpladeForward

    fp32_head = FastSpladeForward.for_model(model, screen=False)  # the same pass without the bf16 screen

    def fp32_only() -> torch.Tensor:
        return fp32_head(texts, args.batch_size)

    # Warm-up on a few texts: first calls pay for allocations and kernel selection.
    model.encode_document(texts[:64], batch_size=args.batch_size)
    encoder.encode_document(texts[:64])
    fp32_head(texts[:64], args.batch_size)
    peer_times, our_times, fp32_times = [], [], []

    def timed(run, times: list[float]):
        start = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - start)
        return out

    for _ in range(args.repeats):
        reference = timed(peer, peer_times)
        vectors = timed(ours, our_times)
        fp32_vectors = timed(fp32_only, fp32_times)

    reference = reference.to_dense().numpy()
    mine = np.zeros_like(reference)
    for row, vec in enumerate(vectors):
        mine[row, vec.indices] = vec.values
    max_abs_diff = float(np.abs(reference - mine).max())
    same_support = bool(((reference > 0) == (mine > 0)).all())
    best_peer, best_ours = min(peer_times), min(our_times)
    print(f"corpus={args.corpus.name} docs={len(texts)} batch={args.batch_size} threads={torch.get_num_threads()}")
    print(
        f"sentence-transformers: {len(texts) / best_peer:.1f} docs/s  (runs: {', '.join(f'{t:.2f}s' for t in peer_times)})"
    )
    print(
        f"hybrid-search fast:    {len(texts) / best_ours:.1f} docs/s  (runs: {', '.join(f'{t:.2f}s' for t in our_times)})"
        f"  bf16 screen: {encoder._fast_documents.screen}"
    )
    fp32_diff = float(np.abs(reference - fp32_vectors.numpy()).max())
    print(
        f"  without the bf16 screen (float32 head only): {len(texts) / min(fp32_times):.1f} docs/s, "
        f"speed-up {best_peer / min(fp32_times):.2f}, max abs diff {fp32_diff:.2e}"
    )
    print(f"identical active dimensions: {same_support}")
    print(f"sparse_encode_speedup={best_peer / best_ours:.2f} max_abs_diff={max_abs_diff:.2e}")


if __name__ == "__main__":
    main()
