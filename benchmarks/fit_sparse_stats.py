"""Fit the statistics of real SPLADE-tiny vectors that ``bench_scale.py --generator fitted`` samples from.

    python benchmarks/fit_sparse_stats.py [--out benchmarks/sparse_stats_splade_tiny.npz]

Documents: the MS MARCO 5k passages and the SciFact corpus (5,183 abstracts), encoded with SPLADE-tiny
through the benchmark's embedding cache (so ``bench`` reuses them). Queries: the 50 TREC DL19 queries
and the 809 SciFact **train** queries (SciFact test queries are never looked at). Written, per
vocabulary id: the document frequency among documents and among queries, and the mean log weight in
each; and the empirical numbers of active dimensions, and the pooled spread of log weights around
each token's mean. The file is ~0.3 MB and is shipped, so the benchmark needs neither data nor models.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_OUT = Path(__file__).resolve().parent / "sparse_stats_splade_tiny.npz"


def _per_token(vectors, vocab: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(df, mean log weight per token, nnz per vector, pooled sd of log weight around the token mean)."""
    idx = np.concatenate([v.indices for v in vectors])
    logw = np.log(np.concatenate([v.values for v in vectors]).astype(np.float64))
    df = np.bincount(idx, minlength=vocab)
    mean = np.bincount(idx, weights=logw, minlength=vocab) / np.maximum(df, 1)
    resid = logw - mean[idx]
    return df, mean, np.array([v.nnz for v in vectors]), float(resid.std())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    args = parser.parse_args()

    from hybrid_search.dataset import load_beir
    from hybrid_search.encoders import SparseEncoder
    from pipelines.embedding_cache import EmbeddingCache

    splade = SparseEncoder.load("splade-tiny")
    vocab = splade.dimension if hasattr(splade, "dimension") else 30522
    cache = EmbeddingCache()
    docs, queries = [], []
    for name, query_split in (("msmarco-dl19-5k", "test"), ("scifact", "train")):
        data = load_beir(DATA / name, split="test")
        vectors, _ = cache.sparse(splade, list(data.corpus.values()), data.fingerprint())
        docs += vectors
        qdata = load_beir(DATA / name, split=query_split)
        texts = [qdata.queries[q] for q in qdata.judged_queries if qdata.queries.get(q, "").strip()]
        queries += list(splade.encode_query(texts))
        print(f"{name}: {len(vectors)} documents, {len(texts)} {query_split} queries")
    ddf, dmean, dnnz, dsd = _per_token(docs, vocab)
    qdf, qmean, qnnz, qsd = _per_token(queries, vocab)
    np.savez_compressed(
        args.out,
        doc_df=ddf.astype(np.int32),
        doc_logw_mean=dmean.astype(np.float16),
        doc_nnz=dnnz.astype(np.int16),
        doc_logw_sd=np.float32(dsd),
        query_df=qdf.astype(np.int32),
        query_logw_mean=qmean.astype(np.float16),
        query_nnz=qnnz.astype(np.int16),
        query_logw_sd=np.float32(qsd),
        n_docs=np.int64(len(docs)),
        n_queries=np.int64(len(queries)),
    )
    print(
        f"wrote {args.out}: docs nnz mean {dnnz.mean():.1f}, queries nnz mean {qnnz.mean():.1f}, "
        f"distinct doc tokens {(ddf > 0).sum()}, distinct query tokens {(qdf > 0).sum()}, "
        f"log-weight sd docs {dsd:.2f} queries {qsd:.2f}"
    )


if __name__ == "__main__":
    main()
