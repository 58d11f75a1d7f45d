"""Fit the statistics of real SPLADE-tiny vectors that ``bench_scale.py``'s ``fitted`` and ``clustered``
generators sample from.

    python benchmarks/fit_sparse_stats.py [--out benchmarks/sparse_stats_splade_tiny.npz]
    python benchmarks/fit_sparse_stats.py --select     # the held-out likelihood behind CLUSTERS, SMOOTHING

Documents: the MS MARCO 5k passages and the SciFact corpus (5,183 abstracts), encoded with SPLADE-tiny
through the benchmark's embedding cache (so ``bench`` reuses them). Queries: the 50 TREC DL19 queries
and the 809 SciFact **train** queries (SciFact test queries are never looked at). Written, per
vocabulary id: the document frequency among documents and among queries, and the mean log weight in
each; and the empirical numbers of active dimensions, and the pooled spread of log weights around
each token's mean. The file is ~0.1 MB and is shipped, so the benchmark needs neither data nor models.

Topical co-occurrence (``--generator clustered``) goes into a second file, ``--clusters-out``: the
documents, L2-normalised, are clustered by spherical k-means (scikit-learn's ``KMeans`` on unit vectors,
``CLUSTERS`` clusters, seed 0); per cluster it stores the token document frequencies (sparse), the
number of documents and their numbers of active dimensions. Each query goes to the cluster whose
(normalised) centre has the largest dot product with it, and each cluster stores its queries' token
frequencies and numbers of active dimensions. ``SMOOTHING`` is the share of a token law the generator
takes from the global law. Both were chosen by ``--select``: the held-out log-likelihood of real
documents (a seeded 90/10 split of the 10,183; the held-out documents' token sets scored under the
mixture of smoothed cluster laws fitted on the rest), the largest over ``CLUSTERS`` in 1..256 and
``SMOOTHING`` in 0.02..0.4. No query enters the choice.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_OUT = Path(__file__).resolve().parent / "sparse_stats_splade_tiny.npz"
DEFAULT_CLUSTERS_OUT = Path(__file__).resolve().parent / "sparse_clusters_splade_tiny.npz"
VOCAB = 30522
# By --select (held-out log-likelihood per token of real documents, docs/benchmarks.md): 128 clusters and
# 20% of each law from the global one scored -7.919 nats per token against -8.487 for one cluster (the
# ``fitted`` generator); 64 clusters -7.947, 256 clusters -7.922 (both at 0.2).
CLUSTERS = 128
SMOOTHING = 0.2
SELECT_CLUSTERS = (1, 8, 16, 32, 64, 128, 256)
SELECT_SMOOTHING = (0.02, 0.05, 0.1, 0.2, 0.4)


def _per_token(vectors, vocab: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(df, mean log weight per token, nnz per vector, pooled sd of log weight around the token mean)."""
    idx = np.concatenate([v.indices for v in vectors])
    logw = np.log(np.concatenate([v.values for v in vectors]).astype(np.float64))
    df = np.bincount(idx, minlength=vocab)
    mean = np.bincount(idx, weights=logw, minlength=vocab) / np.maximum(df, 1)
    resid = logw - mean[idx]
    return df, mean, np.array([v.nnz for v in vectors]), float(resid.std())


def real_vectors() -> tuple[list, list, int]:
    """SPLADE-tiny vectors of the real documents and the train-side queries, and the vocabulary size."""
    from hybrid_search.dataset import load_beir
    from hybrid_search.encoders import SparseEncoder
    from pipelines.embedding_cache import EmbeddingCache

    splade = SparseEncoder.load("splade-tiny")
    vocab = splade.dimension if hasattr(splade, "dimension") else VOCAB
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
    return docs, queries, vocab


def to_csr(vectors, vocab: int):
    """Sparse vectors as one SciPy CSR matrix (rows in order), in float64 for the clustering's arithmetic."""
    from hybrid_search.training.evaluate import to_csr as pack

    return pack(vectors, vocab).astype(np.float64)


def spherical_kmeans(matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels and unit-length centres: k-means on the L2-normalised rows (seed 0, one initialisation)."""
    from sklearn.cluster import KMeans
    from sklearn.preprocessing import normalize

    if k == 1:
        centre = np.asarray(normalize(matrix).mean(axis=0))
        return np.zeros(matrix.shape[0], dtype=np.int64), centre / np.linalg.norm(centre)
    km = KMeans(k, n_init=1, random_state=0, max_iter=100).fit(normalize(matrix))
    return km.labels_.astype(np.int64), km.cluster_centers_ / np.linalg.norm(km.cluster_centers_, axis=1, keepdims=True)


def cluster_df(binary, labels: np.ndarray, k: int) -> np.ndarray:
    """Per-cluster token document frequencies (k × vocabulary, dense) of a binary CSR matrix."""
    import scipy.sparse as sp

    member = sp.csr_matrix((np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, len(labels)))
    return np.asarray((member @ binary).todense())


def heldout_loglik(matrix, k: int, smoothings, seed: int = 0) -> list[float]:
    """Mean log-likelihood per token of 10% held-out documents' token sets under the mixture of cluster
    laws (each smoothed with the global law by each of ``smoothings``) fitted on the other 90%."""
    from scipy.special import logsumexp

    order = np.random.default_rng(seed).permutation(matrix.shape[0])
    test, train = order[: len(order) // 10], order[len(order) // 10 :]
    binary = (matrix > 0).astype(np.float64).tocsr()
    labels, _ = spherical_kmeans(matrix[train], k)
    df = cluster_df(binary[train], labels, k)
    prior = np.log(np.bincount(labels, minlength=k) / len(labels))
    glob = df.sum(axis=0) + 0.01  # a token unseen in training keeps a small probability
    glob /= glob.sum()
    law = df / df.sum(axis=1, keepdims=True)
    held = binary[test]
    return [
        float(logsumexp(held @ np.log((1 - s) * law + s * glob).T + prior, axis=1).sum() / held.nnz) for s in smoothings
    ]


def fit_clusters(docs, queries, vocab: int, k: int = CLUSTERS, smoothing: float = SMOOTHING) -> dict:
    """The ``clustered`` generator's per-cluster statistics (see the module docstring)."""
    matrix = to_csr(docs, vocab)
    labels, centres = spherical_kmeans(matrix, k)
    qmatrix = to_csr(queries, vocab)
    qnorm = qmatrix.multiply(1 / np.maximum(np.sqrt(qmatrix.multiply(qmatrix).sum(axis=1)), 1e-12)).tocsr()
    qlabels = np.asarray((qnorm @ centres.T).argmax(axis=1)).ravel()
    out: dict = {"k": np.int64(k), "smoothing": np.float32(smoothing)}
    for kind, mat, lab, vectors in (("doc", matrix, labels, docs), ("query", qmatrix, qlabels, queries)):
        df = cluster_df((mat > 0).astype(np.float64).tocsr(), lab, k)
        rows, toks = np.nonzero(df)
        out[f"{kind}_ptr"] = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=k)))).astype(np.int32)
        out[f"{kind}_tok"] = toks.astype(np.uint16)
        out[f"{kind}_cnt"] = df[rows, toks].astype(np.uint16)
        out[f"{kind}_size"] = np.bincount(lab, minlength=k).astype(np.int32)
        order = np.argsort(lab, kind="stable")
        out[f"{kind}_nnz"] = np.array([vectors[i].nnz for i in order], dtype=np.int16)  # grouped by cluster
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(DEFAULT_OUT))
    parser.add_argument("--clusters-out", default=str(DEFAULT_CLUSTERS_OUT))
    parser.add_argument(
        "--select", action="store_true", help="print the held-out likelihood over clusters x smoothing, write nothing"
    )
    args = parser.parse_args()

    docs, queries, vocab = real_vectors()
    if args.select:
        matrix = to_csr(docs, vocab)
        for k in SELECT_CLUSTERS:
            lls = heldout_loglik(matrix, k, SELECT_SMOOTHING)
            print(f"clusters {k:>3}: " + ", ".join(f"smoothing {s}: {ll:.4f}" for s, ll in zip(SELECT_SMOOTHING, lls)))
        return
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
    clusters = fit_clusters(docs, queries, vocab)
    np.savez_compressed(args.clusters_out, **clusters)
    print(
        f"wrote {args.clusters_out}: {CLUSTERS} clusters of {clusters['doc_size'].min()}-{clusters['doc_size'].max()} "
        f"documents, {(clusters['query_size'] > 0).sum()} with queries, {len(clusters['doc_tok']):,} "
        f"(cluster, token) document frequencies"
    )


if __name__ == "__main__":
    main()
