"""Scale: hybrid indexing and querying of up to a million documents in Qdrant Edge, embedded.

    python benchmarks/bench_scale.py [--sizes 100000,1000000] [--peer-sizes 5000,20000] [--queries 200]

The vectors are synthetic, shaped like MS MARCO under SPLADE and MiniLM:

- sparse: ~130 active dimensions per passage (normal, sd 40, clipped to 20..400) over the 30,522-token
  BERT vocabulary, token ids drawn from a Zipf law (exponent 1.05, a fixed random rank order), weights
  log-normal (median 0.6, as SPLADE-tiny's on the DL19 sample);
- dense: 384 dimensions, unit length, around 2,000 topic centres (a clustered corpus, as real embeddings
  are; isotropic noise would be the easiest case for the sparse index and the hardest for HNSW);
- queries: ~17 sparse dimensions from the same law, and a dense vector near a random passage's.

Documents go in through the product's own adapter (``indexers.create_index`` → ``upsert`` in batches of
1,000, payload ``doc_id`` + a short text), then ``optimize()`` builds the engine's indexes. At each size in
``--sizes`` the script reports the cumulative build time, the peak resident memory of the process, the
index's size on disk, and the p50/p95 of a hybrid query (sparse top 100 + dense top 100 prefetch, RRF, top
10, vectors given, through ``search_hybrid``). ``--peer-sizes`` builds the same data in qdrant-client's
local mode and in Qdrant Edge side by side and prints the latency ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

VOCAB = 30522
FIRST_TOKEN = 1000  # BERT's [unused*] and special tokens are never active
DIM = 384
CENTRES = 2000
BATCH = 1000


class Synthetic:
    """Deterministic MS MARCO-shaped sparse + dense vectors; document ``i`` is the same at any size."""

    def __init__(self, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        ranks = np.arange(1, VOCAB - FIRST_TOKEN + 1, dtype=np.float64)
        p = ranks**-1.05
        self.cdf = np.cumsum(p / p.sum())
        self.token_of_rank = rng.permutation(np.arange(FIRST_TOKEN, VOCAB))
        centres = rng.standard_normal((CENTRES, DIM)).astype(np.float32)
        self.centres = centres / np.linalg.norm(centres, axis=1, keepdims=True)
        self.seed = seed

    def _tokens(self, rng: np.random.Generator, n_active: int) -> np.ndarray:
        draws = np.searchsorted(self.cdf, rng.random(n_active * 3))
        ranks = np.unique(np.minimum(draws, len(self.cdf) - 1))
        return np.sort(self.token_of_rank[rng.permutation(ranks)[:n_active]])

    def batch(self, start: int, size: int):
        from hybrid_search.types import Document, SparseVector

        rng = np.random.default_rng([self.seed, start])
        actives = np.clip(rng.normal(130, 40, size).astype(int), 20, 400)
        sparse = []
        for n in actives:
            idx = self._tokens(rng, int(n))
            sparse.append(SparseVector(idx, rng.lognormal(np.log(0.6), 0.6, len(idx)).astype(np.float32)))
        dense = self._dense(rng, size)
        docs = [Document(f"d{start + i}", f"synthetic passage {start + i}") for i in range(size)]
        return docs, sparse, dense

    def _dense(self, rng: np.random.Generator, size: int) -> np.ndarray:
        vecs = self.centres[rng.integers(0, CENTRES, size)] + 0.08 * rng.standard_normal((size, DIM)).astype(np.float32)
        return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)

    def queries(self, n: int):
        from hybrid_search.types import SparseVector

        rng = np.random.default_rng([self.seed, 10**9])
        out = []
        for _ in range(n):
            idx = self._tokens(rng, int(np.clip(rng.normal(17, 5), 4, 40)))
            out.append((SparseVector(idx, rng.lognormal(np.log(0.8), 0.5, len(idx)).astype(np.float32)),
                        self._dense(rng, 1)[0]))
        return out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def new_index(location: str):
    from hybrid_search.index import IndexMeta
    from indexers import create_index

    meta = IndexMeta(
        engine="",
        sparse={"name": "synthetic-splade", "architecture": "splade", "vocab_size": VOCAB},
        dense={"name": "synthetic-minilm", "dimension": DIM, "similarity": "cosine"},
    )
    return create_index(location, meta)


def fill(index, data: Synthetic, start: int, stop: int, desc: str) -> None:
    with tqdm(total=stop - start, desc=desc, unit="doc", unit_scale=True, file=sys.stderr) as bar:
        for s in range(start, stop, BATCH):
            docs, sparse, dense = data.batch(s, min(BATCH, stop - s))
            index.upsert(docs, sparse, dense)
            bar.update(len(docs))


def latencies_ms(index, queries) -> list[float]:
    index.search_hybrid(*queries[0], 10, prefetch_k=100)  # warm-up
    times = []
    for sparse, dense in queries:
        start = time.perf_counter()
        hits = index.search_hybrid(sparse, dense, 10, prefetch_k=100)
        times.append((time.perf_counter() - start) * 1e3)
        assert len(hits) == 10
    return times


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def measure_existing(path: Path, queries, recall_queries: int) -> None:
    from indexers import open_index

    index = open_index(str(path))
    size = index.count()
    cold = latencies_ms(index, queries)  # a reopened index is memory-mapped: the first pass reads it in
    print(f"edge {size:>9,} (reopened, first pass): hybrid p50 {pct(cold, 50):.2f} ms, p95 {pct(cold, 95):.2f} ms",
          flush=True)
    times = latencies_ms(index, queries)
    approx = [[h.id for h in index.search_hybrid(s, d, 10, prefetch_k=100)] for s, d in queries[:recall_queries]]
    index.close()
    exact_index = open_index(str(path), exact=True)
    exact = [[h.id for h in exact_index.search_hybrid(s, d, 10, prefetch_k=100)] for s, d in queries[:recall_queries]]
    exact_index.close()
    recall = statistics.fmean(len(set(a) & set(e)) / 10 for a, e in zip(approx, exact))
    print(f"edge {size:>9,} (reopened, second pass): disk {disk_mb(path):.0f} MB, hybrid p50 {pct(times, 50):.2f} ms, "
          f"p95 {pct(times, 95):.2f} ms, recall@10 against exact search {recall:.3f} ({len(exact)} queries), "
          f"peak RSS {peak_rss_mb():.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="index sizes to report, ascending")
    parser.add_argument("--peer-sizes", default="5000,20000",
                        help="sizes at which qdrant-client local mode is measured against Qdrant Edge ('' for none)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--peer-queries", type=int, default=30, help="queries per size for the local-mode peer")
    parser.add_argument("--dir", help="where to build the indexes (default: a temporary folder, removed after)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--open", metavar="PATH",
                        help="measure an index this script built earlier (kept with --dir): latency, disk, "
                        "and recall@10 of the HNSW hybrid top 10 against exact search")
    parser.add_argument("--recall-queries", type=int, default=50)
    args = parser.parse_args()
    if args.open:
        measure_existing(Path(args.open), Synthetic().queries(args.queries), args.recall_queries)
        return
    sizes = sorted(int(s) for s in args.sizes.split(",") if s)
    peer_sizes = sorted(int(s) for s in args.peer_sizes.split(",") if s)

    data = Synthetic()
    queries = data.queries(args.queries)
    root = Path(args.dir or tempfile.mkdtemp(prefix="hs-scale-"))
    results: dict = {"edge": [], "peer": []}
    try:
        for size in peer_sizes:
            row = {"size": size}
            for engine, location in (("qdrant-local", f"qdrant-local:{root / f'local-{size}'}"),
                                     ("qdrant-edge", str(root / f"edge-{size}"))):
                index = new_index(location)
                fill(index, data, 0, size, f"{engine} {size:,}")
                if hasattr(index, "optimize"):
                    index.optimize()
                times = latencies_ms(index, queries[: args.peer_queries])
                row[engine] = {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}
                index.close()
            row["edge_speedup_p50"] = row["qdrant-local"]["p50_ms"] / row["qdrant-edge"]["p50_ms"]
            results["peer"].append(row)
            print(f"peer {size:>9,}: qdrant-client local p50 {row['qdrant-local']['p50_ms']:.1f} ms, "
                  f"Qdrant Edge p50 {row['qdrant-edge']['p50_ms']:.2f} ms -> {row['edge_speedup_p50']:.0f}x", flush=True)

        path = root / "edge-scale"
        index = new_index(str(path))
        built, elapsed = 0, 0.0
        for size in sizes:
            start = time.perf_counter()
            fill(index, data, built, size, f"qdrant-edge {size:,}")
            upserted = time.perf_counter()
            index.optimize()
            index.flush()
            optimized = time.perf_counter()
            elapsed += optimized - start
            built = size
            times = latencies_ms(index, queries)
            row = {
                "size": size,
                "build_s": elapsed,
                "last_upsert_s": upserted - start,
                "last_optimize_s": optimized - upserted,
                "peak_rss_mb": peak_rss_mb(),
                "disk_mb": disk_mb(path),
                "p50_ms": pct(times, 50),
                "p95_ms": pct(times, 95),
                "mean_ms": statistics.fmean(times),
            }
            results["edge"].append(row)
            print(f"edge {size:>9,}: build {elapsed:.0f} s, peak RSS {row['peak_rss_mb']:.0f} MB, "
                  f"disk {row['disk_mb']:.0f} MB, hybrid p50 {row['p50_ms']:.2f} ms, p95 {row['p95_ms']:.2f} ms",
                  flush=True)
        index.close()
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    last = results["edge"][-1] if results["edge"] else None
    if last:
        print(f"scale_docs={last['size']} build_s={last['build_s']:.0f} peak_rss_mb={last['peak_rss_mb']:.0f} "
              f"disk_mb={last['disk_mb']:.0f} hybrid_p50_ms={last['p50_ms']:.2f} hybrid_p95_ms={last['p95_ms']:.2f}")


if __name__ == "__main__":
    main()
