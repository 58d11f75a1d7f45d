"""Scale: hybrid indexing and querying of up to a million documents in Qdrant Edge, embedded, and the
Seismic accelerator for the sparse channel against the engine's exact sparse search.

    python benchmarks/bench_scale.py [--sizes 100000,1000000] [--peer-sizes 5000,20000] [--queries 200]
    python benchmarks/bench_scale.py --sparse-ann seismic --sizes 100000[,300000,1000000] [--peers bmp]

The vectors are synthetic, from one of three generators (``--generator``):

- ``fitted`` (default): sampled from statistics of real SPLADE-tiny vectors of the MS MARCO 5k passages
  and the SciFact corpus (documents) and of the DL19 + SciFact *train* queries, fitted by
  ``benchmarks/fit_sparse_stats.py`` into ``benchmarks/sparse_stats_splade_tiny.npz``: each vocabulary
  id is drawn in proportion to its document frequency (queries: its query frequency, smoothed with 20%
  of the document law), the number of active dimensions from the empirical distribution, and each
  weight log-normally around that token's own mean log weight with the pooled spread. Tokens are drawn
  independently, so topical co-occurrence is not modelled;
- ``clustered``: the same real vectors, with topical co-occurrence. ``fit_sparse_stats.py`` also clusters
  the real documents (spherical k-means, 128 clusters) into ``benchmarks/sparse_clusters_splade_tiny.npz``:
  per cluster its size, its token document frequencies and its documents' numbers of active dimensions,
  and the same for the training queries, each assigned to its nearest cluster centre. A document picks a
  cluster in proportion to its size and draws its tokens from 80% of the cluster's law + 20% of the
  global document law, its number of active dimensions from the cluster's own; a query picks a cluster
  in proportion to its real queries and draws from its query law (itself 80% the cluster's query
  frequencies, 20% its document law) smoothed 20% with the global query law. The number of clusters and
  the 20% are the largest held-out likelihood of real documents (``fit_sparse_stats.py --select``).
  Weights are ``fitted``'s; each document and query has its own seeded generator; the dense vector
  lies near one of the cluster's own topic centres, so the two channels of a query point at one topic;
- ``zipf`` (the earlier one): ~130 active dimensions per passage (normal, sd 40, clipped to 20..400) over
  the 30,522-token BERT vocabulary, token ids drawn from a Zipf law (exponent 1.05, a fixed random rank
  order), weights log-normal (median 0.6); queries ~17 dimensions from the same law. Its head tokens sit
  in almost every document and every query, which makes posting lists unrealistically long.

Dense vectors: 384 dimensions, unit length, around 2,000 topic centres; a query's is near a random
passage's (``clustered``: near one of its cluster's centres).

Documents go in through the product's own adapter (``indexers.create_index`` → ``upsert`` in batches of
1,000, payload ``doc_id`` + a short text), then ``optimize()`` builds the engine's indexes. At each size in
``--sizes`` the script reports the cumulative build time, the peak resident memory of the process, the
index's size on disk, and the p50/p95 of a hybrid query (sparse top 100 + dense top 100 prefetch, RRF, top
10, vectors given, through ``search_hybrid``). ``--peer-sizes`` builds the same data in qdrant-client's
local mode and in Qdrant Edge side by side and prints the latency ratio.

``--sparse-ann seismic`` measures, at each size, the sparse channel alone (top 10 and the hybrid's top
100, vectors given): Qdrant Edge's exact search against the Seismic accelerator (``indexers/seismic.py``,
built by the product from the stored vectors, candidates re-scored exactly), recall@10 of Seismic's top
10 against the exact top 10, the accelerator's build time and the process's peak memory, the hybrid
query through the accelerator, and the growth exponent of each p50 across sizes. ``--peers bmp`` adds
block-max pruning (``bmp`` from PyPI, weights quantised to 8 bits, alpha = beta = 1: its exact mode) on the
same vectors; ``--peers kannolo`` kANNolo's sparse HNSW graph (``kannolo`` from PyPI). ``--breakdown``
adds the accelerated query's per-stage p50s and GIL checks (``benchmarks/seismic_stages.py``). The last
line is ``seismic_sparse_speedup=X recall_at_10=Y`` at the smallest size.

A watchdog process (:func:`memory_guard`) stops any run whose anonymous memory passes ``--max-anon-mb``
or that leaves the machine less than ``--memory-floor-mb`` available; RSS, which counts the memory-mapped
segments, is reported (peak RSS) but not guarded.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
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
            out.append(
                (
                    SparseVector(idx, rng.lognormal(np.log(0.8), 0.5, len(idx)).astype(np.float32)),
                    self._dense(rng, 1)[0],
                )
            )
        return out


STATS = Path(__file__).resolve().parent / "sparse_stats_splade_tiny.npz"
QUERY_SMOOTHING = 0.2  # share of a query token's law taken from the document law (unseen query tokens)


class Fitted(Synthetic):
    """Sparse vectors sampled from SPLADE-tiny's real statistics (see the module docstring); the dense
    half, the ids and the determinism are :class:`Synthetic`'s."""

    def __init__(self, seed: int = 0, stats: Path = STATS) -> None:
        super().__init__(seed)
        z = np.load(stats)
        doc_df, query_df = z["doc_df"].astype(np.float64), z["query_df"].astype(np.float64)
        self.doc_cdf = np.cumsum(doc_df / doc_df.sum())
        q = (1 - QUERY_SMOOTHING) * query_df / query_df.sum() + QUERY_SMOOTHING * doc_df / doc_df.sum()
        self.query_cdf = np.cumsum(q / q.sum())
        self.doc_mean = z["doc_logw_mean"].astype(np.float64)
        # A query token never seen in the fitted queries gets its document mean, shifted by the average gap.
        seen = query_df > 0
        gap = float(np.average(z["query_logw_mean"][seen] - self.doc_mean[seen], weights=query_df[seen]))
        self.query_mean = np.where(seen, z["query_logw_mean"].astype(np.float64), self.doc_mean + gap)
        self.doc_sd, self.query_sd = float(z["doc_logw_sd"]), float(z["query_logw_sd"])
        self.doc_nnz, self.query_nnz = z["doc_nnz"].astype(int), z["query_nnz"].astype(int)

    @staticmethod
    def _draw(rng: np.random.Generator, cdf: np.ndarray, n: int) -> np.ndarray:
        draws = np.minimum(np.searchsorted(cdf, rng.random(int(n * 1.5) + 8)), len(cdf) - 1)
        _, first = np.unique(draws, return_index=True)
        return np.sort(draws[np.sort(first)[:n]])  # the first n distinct draws, in vocabulary order

    def _vector(self, rng: np.random.Generator, cdf: np.ndarray, nnz: np.ndarray, mean: np.ndarray, sd: float):
        from hybrid_search.types import SparseVector

        idx = self._draw(rng, cdf, int(rng.choice(nnz)))
        return SparseVector(idx, np.exp(mean[idx] + sd * rng.standard_normal(len(idx))).astype(np.float32))

    def batch(self, start: int, size: int):
        from hybrid_search.types import Document

        rng = np.random.default_rng([self.seed, start])
        sparse = [self._vector(rng, self.doc_cdf, self.doc_nnz, self.doc_mean, self.doc_sd) for _ in range(size)]
        docs = [Document(f"d{start + i}", f"synthetic passage {start + i}") for i in range(size)]
        return docs, sparse, self._dense(rng, size)

    def queries(self, n: int):
        rng = np.random.default_rng([self.seed, 10**9])
        return [
            (self._vector(rng, self.query_cdf, self.query_nnz, self.query_mean, self.query_sd), self._dense(rng, 1)[0])
            for _ in range(n)
        ]


CLUSTER_STATS = Path(__file__).resolve().parent / "sparse_clusters_splade_tiny.npz"


class Clustered(Fitted):
    """Sparse vectors with topical co-occurrence: each document belongs to one of the real documents'
    spherical k-means clusters and draws its tokens from that cluster's law (see the module docstring).

    Every document and query has its own seeded generator, so document ``i`` is the same whatever the
    batch it is made in and whatever the size; weights are :class:`Fitted`'s, per token."""

    def __init__(self, seed: int = 0, stats: Path = STATS, clusters: Path = CLUSTER_STATS) -> None:
        super().__init__(seed, stats)
        z = np.load(clusters)
        self.k, self.smoothing = int(z["k"]), float(z["smoothing"])
        self.doc_laws = self._laws(z, "doc", [None] * self.k)
        # A cluster's query law before smoothing: its queries' tokens, with QUERY_SMOOTHING of its document
        # law (as Fitted does globally); a cluster with no query never gets one.
        self.query_laws = self._laws(z, "query", self.doc_laws)
        self.doc_pick = np.cumsum(z["doc_size"] / z["doc_size"].sum())
        self.query_pick = np.cumsum(z["query_size"] / z["query_size"].sum())
        self.doc_nnz_of = np.split(z["doc_nnz"].astype(int), np.cumsum(z["doc_size"])[:-1])
        self.query_nnz_of = np.split(z["query_nnz"].astype(int), np.cumsum(z["query_size"])[:-1])

    def _laws(self, z, kind: str, blend: list) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per cluster: (token ids, cumulative law over them) from the stored frequencies;
        ``blend``, when given per cluster, is mixed in with QUERY_SMOOTHING (a cluster without its own
        frequencies takes it whole)."""
        ptr, tok, cnt = z[f"{kind}_ptr"], z[f"{kind}_tok"].astype(np.int64), z[f"{kind}_cnt"].astype(np.float64)
        laws = []
        for c in range(self.k):
            t, p = tok[ptr[c] : ptr[c + 1]], cnt[ptr[c] : ptr[c + 1]]
            p = p / p.sum() if len(p) else p
            if blend[c] is not None:
                bt, bp = blend[c]
                bp = np.diff(np.concatenate(([0.0], bp)))
                share = QUERY_SMOOTHING if len(t) else 1.0
                t, inverse = np.unique(np.concatenate((t, bt)), return_inverse=True)
                p = np.bincount(inverse, np.concatenate(((1 - share) * p, share * bp)), minlength=len(t))
            laws.append((t, np.cumsum(p)))
        return laws

    def _mixed(self, rng: np.random.Generator, law, glob: np.ndarray, n: int) -> np.ndarray:
        """The first ``n`` distinct draws from (1 - smoothing) × the cluster's law + smoothing × ``glob``."""
        tok, cdf = law
        m = int(n * 1.5) + 8
        u, own = rng.random(m), rng.random(m) >= self.smoothing
        draws = np.empty(m, dtype=np.int64)
        draws[own] = tok[np.minimum(np.searchsorted(cdf, u[own] * cdf[-1]), len(tok) - 1)]
        draws[~own] = np.minimum(np.searchsorted(glob, u[~own]), len(glob) - 1)
        _, first = np.unique(draws, return_index=True)
        return np.sort(draws[np.sort(first)[:n]])

    def _one(self, rng: np.random.Generator, query: bool):
        from hybrid_search.types import SparseVector

        pick, laws, glob, nnz_of = (
            (self.query_pick, self.query_laws, self.query_cdf, self.query_nnz_of)
            if query
            else (self.doc_pick, self.doc_laws, self.doc_cdf, self.doc_nnz_of)
        )
        mean, sd = (self.query_mean, self.query_sd) if query else (self.doc_mean, self.doc_sd)
        c = int(np.searchsorted(pick, rng.random() * pick[-1], side="right"))
        idx = self._mixed(rng, laws[c], glob, int(nnz_of[c][rng.integers(len(nnz_of[c]))]))
        weights = np.exp(mean[idx] + sd * rng.standard_normal(len(idx))).astype(np.float32)
        # The dense vector is near one of the cluster's own centres (centre j belongs to cluster j mod k).
        centre = self.centres[c + self.k * int(rng.integers(0, (CENTRES - 1 - c) // self.k + 1))]
        dense = centre + np.float32(0.08) * rng.standard_normal(DIM, dtype=np.float32)
        return SparseVector(idx, weights), dense / np.sqrt(dense @ dense), c

    def cluster_of(self, i: int) -> int:
        """The cluster document ``i`` was drawn from (tests)."""
        return self._one(np.random.default_rng([self.seed, 1, i]), query=False)[2]

    def batch(self, start: int, size: int):
        from hybrid_search.types import Document

        made = [self._one(np.random.default_rng([self.seed, 1, i]), query=False) for i in range(start, start + size)]
        docs = [Document(f"d{start + i}", f"synthetic passage {start + i}") for i in range(size)]
        return docs, [s for s, _, _ in made], np.stack([d for _, d, _ in made])

    def queries(self, n: int):
        made = [self._one(np.random.default_rng([self.seed, 2, j]), query=True) for j in range(n)]
        return [(s, d) for s, d, _ in made]


GENERATORS = {"fitted": Fitted, "zipf": Synthetic, "clustered": Clustered}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _proc_mb(path: str, field: str) -> float:
    """A ``field:  N kB`` line of a /proc file, in MB (0 when absent)."""
    with open(path) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


_GUARD = r"""
import os, shutil, signal, sys, time
pid, max_anon, floor, cleanup = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
def mb(path, field):
    with open(path) as f:
        return next((int(l.split()[1]) / 1024 for l in f if l.startswith(field + ":")), 0.0)
while os.getppid() == pid:
    try:
        anon, rss = mb(f"/proc/{pid}/status", "RssAnon"), mb(f"/proc/{pid}/status", "VmRSS")
    except OSError:
        break
    available = mb("/proc/meminfo", "MemAvailable")
    if anon > max_anon or available < floor:
        print(f"memory guard: stopped the run: anonymous {anon:,.0f} MB (limit {max_anon:,.0f}), machine "
              f"available {available:,.0f} MB (floor {floor:,.0f}), RSS {rss:,.0f} MB", file=sys.stderr, flush=True)
        os.kill(pid, signal.SIGKILL)
        if cleanup:
            shutil.rmtree(cleanup, ignore_errors=True)
        break
    time.sleep(0.5)
"""


@contextlib.contextmanager
def memory_guard(max_anon_mb: float, floor_mb: float, cleanup: Path | None) -> Iterator[None]:
    """Stop the run (SIGKILL, then remove ``cleanup``) when the process's anonymous memory passes
    ``max_anon_mb`` or the machine's available memory (``MemAvailable``) falls below ``floor_mb``: those
    are what exhaust the machine. RSS is not guarded: it counts memory-mapped segment files, which the
    kernel drops under pressure; at 1M documents, inside the HNSW ``optimize()``, it read 13.2 GB while
    the anonymous memory was 4.3 GB and the machine's used memory 4.8 GB (peak RSS 17.7 GB), and an RSS
    limit of 16 GB had stopped such a run. The guard is a separate process
    because the native calls that grow memory hold the GIL, so a thread of ours would not run."""
    import os
    import subprocess

    guard = subprocess.Popen(
        [sys.executable, "-c", _GUARD, str(os.getpid()), str(max_anon_mb), str(floor_mb), str(cleanup or "")]
    )
    try:
        yield
    finally:
        guard.terminate()
        guard.wait()


class MemoryWatch:
    """Peak memory per named step, sampled in a thread (``ru_maxrss`` only says the peak so far, not which
    step reached it). RSS counts the pages of memory-mapped files the process has touched (Qdrant Edge's
    segments, the forward index), which the kernel can drop under pressure; *anonymous* (``RssAnon`` in
    /proc/self/status) is the heap that cannot be. Sampling stops outside :meth:`step`, so timed queries
    run without it. The thread needs the GIL, which Qdrant Edge's and Seismic's calls hold: a step that
    is one long native call (``optimize()``) is sampled only at its ends, so its peak here can be lower
    than ``ru_maxrss``'s (at 1M with HNSW: 9.0 GB sampled, 17.7 GB by ``ru_maxrss``)."""

    def __init__(self, interval_s: float = 0.1) -> None:
        self._interval = interval_s
        self.peaks: dict[str, tuple[float, float]] = {}  # step -> (peak RSS MB, peak anonymous MB)
        self._step: str | None = None

    def _sample(self) -> None:
        rss, anon = _proc_mb("/proc/self/status", "VmRSS"), _proc_mb("/proc/self/status", "RssAnon")
        old = self.peaks.get(self._step or "", (0.0, 0.0))
        self.peaks[self._step or ""] = (max(old[0], rss), max(old[1], anon))

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        import threading

        self._step, stop = name, threading.Event()

        def loop() -> None:
            while not stop.wait(self._interval):
                self._sample()

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            self._sample()
            self._step = None

    def switch(self, name: str) -> None:
        """Inside :meth:`step`: the samples from now on count for ``name`` (e.g. a build's own steps)."""
        self._sample()
        self._step = name

    def summary(self) -> str:
        return ", ".join(f"{name} {rss:,.0f}/{anon:,.0f}" for name, (rss, anon) in self.peaks.items())


WATCH: MemoryWatch | None = None


def watched(name: str) -> contextlib.AbstractContextManager:
    return WATCH.step(name) if WATCH is not None else contextlib.nullcontext()


def disk_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def new_index(location: str, dense: bool = True):
    from hybrid_search.index import IndexMeta
    from indexers import create_index

    meta = IndexMeta(
        engine="",
        sparse={"name": "synthetic-splade", "architecture": "splade", "vocab_size": VOCAB},
        dense={"name": "synthetic-minilm", "dimension": DIM, "similarity": "cosine"} if dense else None,
    )
    return create_index(location, meta)


def fill(index, data: Synthetic, start: int, stop: int, desc: str) -> None:
    with tqdm(total=stop - start, desc=desc, unit="doc", unit_scale=True, file=sys.stderr) as bar:
        for s in range(start, stop, BATCH):
            docs, sparse, dense = data.batch(s, min(BATCH, stop - s))
            index.upsert(docs, sparse, dense if index.meta.dense else None)
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
    print(
        f"edge {size:>9,} (reopened, first pass): hybrid p50 {pct(cold, 50):.2f} ms, p95 {pct(cold, 95):.2f} ms",
        flush=True,
    )
    times = latencies_ms(index, queries)
    approx = [[h.id for h in index.search_hybrid(s, d, 10, prefetch_k=100)] for s, d in queries[:recall_queries]]
    index.close()
    exact_index = open_index(str(path), exact=True)
    exact = [[h.id for h in exact_index.search_hybrid(s, d, 10, prefetch_k=100)] for s, d in queries[:recall_queries]]
    exact_index.close()
    recall = statistics.fmean(len(set(a) & set(e)) / 10 for a, e in zip(approx, exact))
    print(
        f"edge {size:>9,} (reopened, second pass): disk {disk_mb(path):.0f} MB, hybrid p50 {pct(times, 50):.2f} ms, "
        f"p95 {pct(times, 95):.2f} ms, recall@10 against exact search {recall:.3f} ({len(exact)} queries), "
        f"peak RSS {peak_rss_mb():.0f} MB"
    )


def sparse_latencies_ms(search, queries, k: int) -> tuple[list[float], list[list[str]]]:
    """The second of two timed passes over the queries (the first warms up): after a single warm-up
    query, the exact search's first pass over a freshly optimised 100k index was ~3x slower than the
    same calls timed later in the run."""
    for _ in range(2):
        times, tops = [], []
        for sparse, _ in queries:
            start = time.perf_counter()
            hits = search(sparse, k)
            times.append((time.perf_counter() - start) * 1e3)
            tops.append([h.id for h in hits[:10]])
    return times, tops


def recall_at_10(approx: list[list[str]], exact: list[list[str]]) -> float:
    return statistics.fmean(len(set(a) & set(e)) / max(1, len(e)) for a, e in zip(approx, exact))


def growth_exponent(sizes: list[int], p50s: list[float]) -> float | None:
    """Slope of log p50 against log size: 1 = linear in the collection, 0 = flat."""
    if len(sizes) < 2:
        return None
    return float(np.polyfit(np.log(sizes), np.log(p50s), 1)[0])


def bmp_peer(data, size: int, queries, root: Path, exact_tops: list[list[str]]) -> dict:
    """Block-max pruning (``bmp``, PyPI) on the same vectors, exact mode (alpha = beta = 1).

    bmp stores impacts as 8-bit integers: weights are scaled so the first batch's largest maps to 255
    (later ones clipped there). The earlier ×100 overflowed the 8 bits for any weight above 2.55 and gave
    recall 0.021; what remains below 1.0 is the 8-bit quantisation of a heavy-tailed weight law."""
    import bmp

    path = root / f"bmp-{size}.bmp"
    start = time.perf_counter()
    indexer = bmp.Indexer(str(path), bsize=32, compress_range=False)
    scale = None
    for s in range(0, size, BATCH):
        docs, sparse, _ = data.batch(s, min(BATCH, size - s))
        scale = scale or 255.0 / max(float(v.values.max()) for v in sparse)
        for doc, vec in zip(docs, sparse):
            impacts = np.clip(np.rint(vec.values * scale), 1, 255).astype(int).tolist()
            indexer.add_document(doc.id, dict(zip(map(str, vec.indices.tolist()), impacts)))
    indexer.finish()
    build_s = time.perf_counter() - start
    searcher = bmp.Searcher(str(path))

    def search(vec, k):
        ids, _ = searcher.search(
            {str(i): float(v) for i, v in zip(vec.indices.tolist(), vec.values.tolist())}, k=k, alpha=1.0, beta=1.0
        )
        return [type("H", (), {"id": i})() for i in ids]

    times, tops = sparse_latencies_ms(search, queries, 10)
    path.unlink(missing_ok=True)
    return {
        "build_s": build_s,
        "p50_ms": pct(times, 50),
        "p95_ms": pct(times, 95),
        "recall_at_10": recall_at_10(tops, exact_tops),
    }


def kannolo_peer(data, size: int, queries, exact_tops: list[list[str]]) -> dict:
    """kANNolo (``kannolo``, PyPI; the Seismic authors' graph library): an HNSW graph over the same sparse
    vectors (``SparsePlainHNSW``, its defaults m 32, ef_construction 200; ef_search 100 at query time).
    Row ``i`` is document ``d{i}``."""
    import kannolo

    start = time.perf_counter()
    parts = [data.batch(s, min(BATCH, size - s))[1] for s in range(0, size, BATCH)]
    from hybrid_search.types import sparse_to_csr

    indptr, indices, values = sparse_to_csr([v for part in parts for v in part])
    del parts
    index = kannolo.SparsePlainHNSW.build_from_arrays(indices.astype(np.int32), values, indptr)
    build_s = time.perf_counter() - start

    def search(vec, k):
        _, ids = index.search(vec.indices.astype(np.int32), vec.values.astype(np.float32), k, 100)
        return [type("H", (), {"id": f"d{int(i)}"})() for i in ids]

    times, tops = sparse_latencies_ms(search, queries, 10)
    return {
        "build_s": build_s,
        "p50_ms": pct(times, 50),
        "p95_ms": pct(times, 95),
        "recall_at_10": recall_at_10(tops, exact_tops),
    }


def where_time_goes(row: dict, index, accelerated, queries) -> None:
    """The bare Seismic call (no token mapping, no re-scoring), the dense leg alone, and the hybrid query
    through the engine's own fusion (exact sparse) and through the accelerator."""
    acc = accelerated.accelerator
    comps = [acc.query_components(q) for q, _ in queries]
    for k in (10, 100):
        bare = []
        for c, v in comps:
            t = time.perf_counter()
            acc.postings.search("q", c, v, k, acc.settings.query_cut, acc.settings.heap_factor)
            bare.append((time.perf_counter() - t) * 1e3)
        row[f"seismic_bare_k{k}_p50_ms"] = pct(bare, 50)
    if not index.meta.dense:  # --sparse-only
        return
    dense = []
    for _, d in queries:
        t = time.perf_counter()
        index.search_dense(d, 100)
        dense.append((time.perf_counter() - t) * 1e3)
    row["dense_k100_p50_ms"] = pct(dense, 50)
    hybrid_exact = [latencies_ms(index, queries) for _ in range(2)][-1]  # the second, warm pass
    hybrid_seismic = [latencies_ms(accelerated, queries) for _ in range(2)][-1]
    row["hybrid_exact_p50_ms"], row["hybrid_seismic_p50_ms"] = pct(hybrid_exact, 50), pct(hybrid_seismic, 50)
    row["hybrid_seismic_p95_ms"] = pct(hybrid_seismic, 95)


def print_row(row: dict) -> None:
    hybrid = (
        f"dense top100 {row['dense_k100_p50_ms']:.2f} ms; hybrid p50 exact {row['hybrid_exact_p50_ms']:.2f} ms, "
        f"seismic {row['hybrid_seismic_p50_ms']:.2f} ms; "
        if "dense_k100_p50_ms" in row
        else ""
    )
    print(
        f"seismic {row['size']:>9,}: sparse top10 p50/p95 exact {row['exact_k10']['p50_ms']:.2f}/{row['exact_k10']['p95_ms']:.2f} ms, "
        f"seismic {row['seismic_k10']['p50_ms']:.2f}/{row['seismic_k10']['p95_ms']:.2f} ms (n_postings {row['n_postings']}) "
        f"(bare call {row['seismic_bare_k10_p50_ms']:.2f}) -> {row['speedup_k10']:.1f}x, recall@10 {row['recall_at_10']:.3f}; "
        f"top100 exact {row['exact_k100']['p50_ms']:.2f} ms, seismic {row['seismic_k100']['p50_ms']:.2f} ms "
        f"(bare call {row['seismic_bare_k100_p50_ms']:.2f}) -> {row['speedup_k100']:.1f}x; {hybrid}"
        f"build {row['build_s']:.0f} s (read {row['read_s']:.0f} s), peak RSS {row['peak_rss_mb']:.0f} MB "
        f"(before build {row['peak_rss_before_build_mb']:.0f}), seismic disk {row['seismic_disk_mb']:.0f} MB",
        flush=True,
    )
    for peer in ("bmp", "kannolo"):
        if peer not in row:
            continue
        b = row[peer]
        print(
            f"   peer {peer} {row['size']:>9,}: p50 {b['p50_ms']:.2f} ms, p95 {b['p95_ms']:.2f} ms, "
            f"recall@10 {b['recall_at_10']:.3f}, build {b['build_s']:.0f} s",
            flush=True,
        )


def measure_sparse_ann(index, path: Path, data, queries, size: int, options: dict) -> dict:
    """One size of ``--sparse-ann seismic``: exact vs Seismic sparse channel, recall, build, memory.

    ``options``: ``settings`` (a :class:`~indexers.seismic.SeismicSettings` or ``None`` for the
    defaults), ``peers`` and ``root`` (where a peer's files go)."""
    from indexers.seismic import SeismicAcceleratedIndex, build

    peers, root = options["peers"], options["root"]
    row: dict = {"size": size}
    for k in (10, 100):
        times, tops = sparse_latencies_ms(index.search_sparse, queries, k)
        row[f"exact_k{k}"] = {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}
        if k == 10:
            exact_tops = tops
    rss_before = peak_rss_mb()
    with watched(f"seismic build {size:,}"):
        report = build(index, options["settings"], progress=False, on_step=_build_step(size))
    row["n_postings"] = report.n_postings
    row["build_s"], row["read_s"] = report.seconds, report.read_seconds
    row["peak_rss_mb"], row["peak_rss_before_build_mb"] = peak_rss_mb(), rss_before
    row["seismic_disk_mb"] = disk_mb(path / "seismic")
    accelerated = SeismicAcceleratedIndex.open(index)
    for k in (10, 100):
        times, tops = sparse_latencies_ms(accelerated.search_sparse_uncached, queries, k)
        row[f"seismic_k{k}"] = {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}
        if k == 10:
            row["recall_at_10"] = recall_at_10(tops, exact_tops)
    where_time_goes(row, index, accelerated, queries)
    row["speedup_k10"] = row["exact_k10"]["p50_ms"] / row["seismic_k10"]["p50_ms"]
    row["speedup_k100"] = row["exact_k100"]["p50_ms"] / row["seismic_k100"]["p50_ms"]
    if "bmp" in peers:
        row["bmp"] = bmp_peer(data, size, queries, root, exact_tops)
    if "kannolo" in peers:
        row["kannolo"] = kannolo_peer(data, size, queries, exact_tops)
    print_row(row)
    if options["breakdown"]:
        breakdown(row, accelerated, queries)
    accelerated.accelerator = None  # the engine index stays open for the next size
    return row


def _build_step(size: int):
    """The Seismic build's steps as memory-watch steps (``build(on_step=...)``)."""
    return (lambda name: WATCH.switch(f"seismic {name} {size:,}")) if WATCH is not None else None


def breakdown(row: dict, accelerated, queries) -> None:
    """``--breakdown``: the per-stage p50s and the overlap checks (``benchmarks/seismic_stages.py``)."""
    import seismic_stages as stages

    for k in (10, 100):
        row[f"stages_k{k}"] = stages.sparse_stages(accelerated, queries, k)
        print(stages.format_stages(f"stages {row['size']:>9,} sparse top {k}", row[f"stages_k{k}"]), flush=True)
    if accelerated.meta.dense:
        row["stages_hybrid"] = stages.hybrid_stages(accelerated, queries)
        print(stages.format_stages(f"stages {row['size']:>9,} hybrid", row["stages_hybrid"]), flush=True)
    row["overlap"] = stages.overlaps(accelerated, queries)
    print(stages.format_overlaps(row["size"], row["overlap"]), flush=True)


def run_sparse_ann(args, data, queries, sizes: list[int], root: Path, peers: list[str]) -> list[dict]:
    from indexers.seismic import SeismicSettings

    given = dict(kv.split("=", 1) for kv in args.seismic.split(",") if kv)
    options = {
        "settings": SeismicSettings.from_dict(given) if given else None,
        "peers": peers,
        "root": root,
        "breakdown": args.breakdown,
    }
    path = root / "edge-seismic"
    index = new_index(str(path), dense=not args.sparse_only)
    built, rows = 0, []
    for size in sizes:
        start = time.perf_counter()
        with watched(f"fill {size:,}"):
            fill(index, data, built, size, f"qdrant-edge {size:,}")
        filled = time.perf_counter()
        with watched(f"optimize {size:,}"):
            index.optimize()
            index.flush()
        print(
            f"qdrant-edge {size:,}: upsert {filled - start:.0f} s, optimize {time.perf_counter() - filled:.0f} s",
            flush=True,
        )
        built = size
        rows.append(measure_sparse_ann(index, path, data, queries, size, options))
        rows[-1]["memory_mb"] = dict(WATCH.peaks) if WATCH is not None else {}
        if WATCH is not None:
            print(f"memory peaks so far, RSS/anonymous MB: {WATCH.summary()}", flush=True)
    index.close()
    done = [r["size"] for r in rows]
    for label, key in (
        ("exact", "exact_k10"),
        ("seismic", "seismic_k10"),
        ("exact top100", "exact_k100"),
        ("seismic top100", "seismic_k100"),
    ):
        g = growth_exponent(done, [r[key]["p50_ms"] for r in rows])
        if g is not None:
            print(f"growth exponent of the sparse p50 ({label}): {g:.2f} over {', '.join(f'{s:,}' for s in done)}")
    return rows


def run_peers(data, queries, peer_sizes: list[int], root: Path, n_queries: int) -> list[dict]:
    """qdrant-client's local mode against Qdrant Edge on the same data (``--peer-sizes``)."""
    rows: list[dict] = []
    for size in peer_sizes:
        row = {"size": size}
        for engine, location in (
            ("qdrant-local", f"qdrant-local:{root / f'local-{size}'}"),
            ("qdrant-edge", str(root / f"edge-{size}")),
        ):
            index = new_index(location)
            fill(index, data, 0, size, f"{engine} {size:,}")
            if hasattr(index, "optimize"):
                index.optimize()
            times = latencies_ms(index, queries[:n_queries])
            row[engine] = {"p50_ms": pct(times, 50), "p95_ms": pct(times, 95)}
            index.close()
        row["edge_speedup_p50"] = row["qdrant-local"]["p50_ms"] / row["qdrant-edge"]["p50_ms"]
        rows.append(row)
        print(
            f"peer {size:>9,}: qdrant-client local p50 {row['qdrant-local']['p50_ms']:.1f} ms, "
            f"Qdrant Edge p50 {row['qdrant-edge']['p50_ms']:.2f} ms -> {row['edge_speedup_p50']:.0f}x",
            flush=True,
        )
    return rows


def run_edge_scale(data, queries, sizes: list[int], root: Path) -> list[dict]:
    """Qdrant Edge filled size by size: build time, peak memory, disk and the hybrid query's latency."""
    rows: list[dict] = []
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
        rows.append(row)
        print(
            f"edge {size:>9,}: build {elapsed:.0f} s, peak RSS {row['peak_rss_mb']:.0f} MB, "
            f"disk {row['disk_mb']:.0f} MB, hybrid p50 {row['p50_ms']:.2f} ms, p95 {row['p95_ms']:.2f} ms",
            flush=True,
        )
    index.close()
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="index sizes to report, ascending")
    parser.add_argument(
        "--peer-sizes",
        default="5000,20000",
        help="sizes at which qdrant-client local mode is measured against Qdrant Edge ('' for none)",
    )
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--peer-queries", type=int, default=30, help="queries per size for the local-mode peer")
    parser.add_argument("--dir", help="where to build the indexes (default: a temporary folder, removed after)")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument(
        "--open",
        metavar="PATH",
        help="measure an index this script built earlier (kept with --dir): latency, disk, "
        "and recall@10 of the HNSW hybrid top 10 against exact search",
    )
    parser.add_argument("--recall-queries", type=int, default=50)
    parser.add_argument(
        "--generator",
        choices=sorted(GENERATORS),
        default="fitted",
        help="sparse vectors fitted to SPLADE-tiny statistics, independent tokens (default) or clustered "
        "into topics; or the earlier Zipf law",
    )
    parser.add_argument(
        "--sparse-ann",
        choices=["seismic"],
        help="measure the sparse channel: the Seismic accelerator against exact search",
    )
    parser.add_argument(
        "--seismic",
        default="",
        metavar="NAME=VALUE,...",
        help="Seismic settings for --sparse-ann (indexers.seismic.SeismicSettings fields), e.g. "
        "'n_postings=1000,query_cut=5,build_threads=2'; default: the product's defaults",
    )
    parser.add_argument(
        "--sparse-only",
        action="store_true",
        help="with --sparse-ann: index the sparse vectors only (no dense HNSW to build; no hybrid rows)",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="with --sparse-ann: per-stage p50s of the accelerated query and whether its native calls "
        "overlap in threads (benchmarks/seismic_stages.py)",
    )
    parser.add_argument(
        "--max-anon-mb",
        type=float,
        default=20000,
        help="stop the run when the process's anonymous memory passes this (MB)",
    )
    parser.add_argument(
        "--memory-floor-mb",
        type=float,
        default=1000,
        help="stop the run when the machine's available memory falls below this (MB)",
    )
    parser.add_argument(
        "--peers",
        default="",
        help="peers for --sparse-ann, comma-separated: bmp (block-max pruning, PyPI), kannolo (sparse HNSW, PyPI)",
    )
    return parser


def main() -> None:
    args = build_parser().parse_args()
    if args.open:
        measure_existing(Path(args.open), GENERATORS[args.generator]().queries(args.queries), args.recall_queries)
        return
    sizes = sorted(int(s) for s in args.sizes.split(",") if s)
    peer_sizes = sorted(int(s) for s in args.peer_sizes.split(",") if s)

    data = GENERATORS[args.generator]()
    queries = data.queries(args.queries)
    root = Path(args.dir or tempfile.mkdtemp(prefix="hs-scale-"))
    results: dict = {"edge": [], "peer": [], "generator": args.generator}
    if args.sparse_ann:
        global WATCH
        WATCH = MemoryWatch()
        peers = [p for p in args.peers.split(",") if p]
        try:
            with memory_guard(args.max_anon_mb, args.memory_floor_mb, None if args.dir else root):
                results["seismic"] = run_sparse_ann(args, data, queries, sizes, root, peers)
        finally:
            if not args.dir:
                shutil.rmtree(root, ignore_errors=True)
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=2))
        first = results["seismic"][0]
        print(f"seismic_sparse_speedup={first['speedup_k10']:.2f} recall_at_10={first['recall_at_10']:.3f}")
        return
    try:
        with memory_guard(args.max_anon_mb, args.memory_floor_mb, None if args.dir else root):
            results["peer"] = run_peers(data, queries, peer_sizes, root, args.peer_queries)
            results["edge"] = run_edge_scale(data, queries, sizes, root)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    last = results["edge"][-1] if results["edge"] else None
    if last:
        print(
            f"scale_docs={last['size']} build_s={last['build_s']:.0f} peak_rss_mb={last['peak_rss_mb']:.0f} "
            f"disk_mb={last['disk_mb']:.0f} hybrid_p50_ms={last['p50_ms']:.2f} hybrid_p95_ms={last['p95_ms']:.2f}"
        )


if __name__ == "__main__":
    main()
