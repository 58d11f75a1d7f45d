"""Seismic's recall/latency curve over its settings, on which ``SeismicSettings``' defaults were chosen.

    python benchmarks/bench_seismic_settings.py --data fitted --size 100000
    python benchmarks/bench_seismic_settings.py --data msmarco      # the 5k passages, DL19 queries
    python benchmarks/bench_seismic_settings.py --bare --size 100000 --builds 'n_postings=500;n_postings=1000'

For each build setting in ``--builds`` (``;``-separated ``name=value,...`` lists; ``""`` = the defaults)
the accelerator is built by the product (``indexers.seismic.build``) over a Qdrant Edge index, then every
``query_cut`` × ``heap_factor`` pair is timed: the p50 of the accelerated sparse channel (top 10, vectors
given, candidates re-scored exactly) and recall@10 against Qdrant Edge's exact top 10. ``msmarco`` uses
the real SPLADE-tiny vectors from the benchmark's embedding cache (``bench`` or
``fit_sparse_stats.py`` fills it) and the 50 DL19 queries; SciFact is never used here.

``--bare`` times Seismic's own call on the vectors, without the engine, the token
mapping or the exact re-scoring, against exact top 10 / top 100 computed with SciPy; it builds with two
threads and sweeps ``query_cut`` × ``heap_factor`` for both k (the hybrid's sparse leg asks for 100). It
is how the build settings were compared: a build through the engine costs a Qdrant Edge fill each time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_scale import GENERATORS, Fitted, fill, new_index, pct, sparse_latencies_ms

from indexers.seismic import _stdout_to_stderr

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _msmarco(root: Path):
    import numpy as np

    from hybrid_search.dataset import load_beir
    from hybrid_search.encoders import SparseEncoder
    from hybrid_search.index import IndexMeta
    from indexers import create_index
    from pipelines.embedding_cache import EmbeddingCache

    data = load_beir(DATA / "msmarco-dl19-5k")
    splade = SparseEncoder.load("splade-tiny")
    docs = list(data.corpus.values())
    vectors, _ = EmbeddingCache().sparse(splade, docs, data.fingerprint())
    index = create_index(str(root / "ms"), IndexMeta(engine="", sparse=splade.settings()))
    for s in range(0, len(docs), 1000):
        index.upsert(docs[s : s + 1000], vectors[s : s + 1000], None)
    queries = [(q, np.zeros(1)) for q in splade.encode_query([data.queries[q] for q in data.queries])]
    return index, root / "ms", queries


def _generated(generator, size: int, n_queries: int):
    """A generator's first ``size`` sparse document vectors and its first ``n_queries`` sparse query vectors."""
    data = generator()
    vectors = [v for s in range(0, size, 1000) for v in data.batch(s, min(1000, size - s))[1]]
    return vectors, [q for q, _ in data.queries(n_queries)]


def _bare_data(size: int, n_queries: int, generator=Fitted):
    """A generator's first ``size`` documents and its first ``n_queries`` queries, as :func:`_bare_arrays`."""
    return _bare_arrays(*_generated(generator, size, n_queries))


def _bare_arrays(vectors, query_vectors):
    """Documents as CSR over the tokens that occur (Seismic's components), the queries in the same
    components (tokens no document has dropped), and the exact top 10 / top 100 computed with SciPy."""
    import numpy as np
    import scipy.sparse as sp

    size = len(vectors)
    indptr = np.concatenate(([0], np.cumsum([v.nnz for v in vectors])))
    indices = np.concatenate([v.indices for v in vectors])
    vocab = np.unique(indices)
    comps = np.searchsorted(vocab, indices).astype(np.int64)
    values = np.concatenate([v.values for v in vectors]).astype(np.float32)
    queries = []
    for q in query_vectors:
        pos = np.minimum(np.searchsorted(vocab, q.indices), len(vocab) - 1)
        known = vocab[pos] == q.indices
        queries.append((pos[known], q.values[known].astype(np.float32)))
    matrix = sp.csr_matrix((values.astype(np.float64), comps, indptr), shape=(size, len(vocab)))
    qmatrix = sp.csr_matrix(
        (
            np.concatenate([v for _, v in queries]).astype(np.float64),
            np.concatenate([c for c, _ in queries]),
            np.concatenate(([0], np.cumsum([len(c) for c, _ in queries]))),
        ),
        shape=(len(queries), len(vocab)),
    )
    scores = (qmatrix @ matrix.T).toarray()
    exact = {k: [set(np.argsort(-row, kind="stable")[:k].tolist()) for row in scores] for k in (10, 100)}
    return (comps, values, indptr, len(vocab)), queries, exact


def _bare(args) -> list[dict]:
    """``--bare``: Seismic's own call over build × query settings, recall against SciPy's exact top k."""

    import numpy as np
    import seismic

    (comps, values, indptr, dim), queries, exact = _bare_data(args.size, args.queries, GENERATORS[args.data])
    names = seismic.get_seismic_string()
    qs = [(np.array([str(c) for c in cs], dtype=names), v) for cs, v in queries]
    rows = []
    for spec in args.builds.split(";"):
        given = {k: (float(v) if "." in v else int(v)) for k, v in (kv.split("=") for kv in spec.split(",") if kv)}
        dataset = seismic.SeismicDataset(dim=dim)
        dataset.add_documents_by_id([str(r) for r in range(args.size)], comps, values, indptr)
        with _stdout_to_stderr():  # Seismic prints its build progress on stdout
            start = time.perf_counter()
            index = seismic.SeismicIndex.build_from_dataset(dataset, num_threads=2, **given)
            build_s = time.perf_counter() - start
        del dataset
        for k in (10, 100):
            for qc in (int(x) for x in args.query_cuts.split(",")):
                for hf in (float(x) for x in args.heap_factors.split(",")):
                    times, recall = [], []
                    for (c, v), want in zip(qs, exact[k]):
                        t = time.perf_counter()
                        got = index.search("q", c, v, k, qc, hf)
                        times.append((time.perf_counter() - t) * 1e3)
                        recall.append(len({int(r[2]) for r in got} & want) / k)
                    row = {"build": given, "build_s": build_s, "k": k, "query_cut": qc, "heap_factor": hf}
                    row.update(p50_ms=pct(times, 50), p95_ms=pct(times, 95), recall=statistics.fmean(recall))
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def pair_lift(csc, queries, cut: int = 8) -> float:
    """Topical co-occurrence as Seismic meets it: for each query, over the pairs of its ``cut`` heaviest
    tokens, the documents holding both against the number expected if tokens were independent
    (``N |A ∩ B| / (|A| |B|)``), averaged per query; the median over queries. 1 = independent."""
    import numpy as np

    n, binary, lifts = csc.shape[0], (csc > 0).astype(np.float64).tocsc(), []
    for comps, values in queries:
        top = comps[np.argsort(-values, kind="stable")[:cut]]
        cols = binary[:, top]
        both = (cols.T @ cols).toarray()
        df = np.diag(both)
        pairs = [(a, b) for a in range(len(top)) for b in range(a + 1, len(top)) if df[a] and df[b]]
        if pairs:
            lifts.append(np.mean([n * both[a, b] / (df[a] * df[b]) for a, b in pairs]))
    return float(np.median(lifts))


def _compare(args) -> list[dict]:
    """``--compare``: the real SPLADE-tiny vectors (the 10,183 documents and 852 train-side queries that
    ``fit_sparse_stats.py`` fits) against each generator's first 10,183 documents and 852 queries: the
    bare Seismic call at the product's defaults, exact top 10 by SciPy (term at a time over the query's
    columns) and by Qdrant Edge, recall@10 and the pair lift of the query's heaviest tokens."""

    import numpy as np
    import seismic
    from fit_sparse_stats import real_vectors

    from hybrid_search.types import Document
    from indexers.seismic import SeismicSettings

    settings = dataclasses.replace(SeismicSettings(), build_threads=2)
    docs, real_queries, _ = real_vectors()
    docs, real_queries = docs[: args.size], real_queries[: args.queries or len(real_queries)]
    sources = {"real": (docs, real_queries)}
    for name, generator in sorted(GENERATORS.items()):
        sources[name] = _generated(generator, len(docs), len(real_queries))
    names = seismic.get_seismic_string()
    rows = []
    for name, (vectors, query_vectors) in sources.items():
        (comps, values, indptr, dim), queries, exact = _bare_arrays(vectors, query_vectors)
        import scipy.sparse as sp

        csc = sp.csr_matrix((values, comps, indptr), shape=(len(vectors), dim)).tocsc()
        dataset = seismic.SeismicDataset(dim=dim)
        dataset.add_documents_by_id([str(r) for r in range(len(vectors))], comps, values, indptr)
        with _stdout_to_stderr():  # Seismic prints its build progress on stdout
            index = seismic.SeismicIndex.build_from_dataset(
                dataset,
                n_postings=settings.postings(len(vectors)),
                centroid_fraction=settings.centroid_fraction,
                summary_energy=settings.summary_energy,
                max_fraction=settings.max_fraction,
                num_threads=settings.build_threads,
            )
        qs = [(np.array([str(c) for c in cs], dtype=names), v) for cs, v in queries]
        row: dict = {"data": name, "documents": len(vectors), "queries": len(queries)}
        for hf in (settings.heap_factor, 1.0):
            for _ in range(2):  # the second pass is timed
                times, recall = [], []
                for (c, v), want in zip(qs, exact[10]):
                    t = time.perf_counter()
                    got = index.search("q", c, v, 10, settings.query_cut, hf)
                    times.append((time.perf_counter() - t) * 1e3)
                    recall.append(len({int(r[2]) for r in got} & want) / 10)
            row[f"seismic_hf{hf}_p50_ms"], row[f"recall_hf{hf}"] = pct(times, 50), statistics.fmean(recall)
        for _ in range(2):
            scipy_times = []
            for c, v in queries:
                t = time.perf_counter()
                scores = csc[:, c] @ v
                np.argpartition(-scores, 10)[:10]
                scipy_times.append((time.perf_counter() - t) * 1e3)
        row["scipy_exact_p50_ms"] = pct(scipy_times, 50)
        with tempfile.TemporaryDirectory(prefix="hs-compare-") as root:
            engine = new_index(str(Path(root) / "ix"), dense=False)
            for s in range(0, len(vectors), 1000):
                chunk = vectors[s : s + 1000]
                engine.upsert([Document(f"d{s + i}", "") for i in range(len(chunk))], chunk, None)
            engine.optimize()
            edge_times, _ = sparse_latencies_ms(engine.search_sparse, [(q, None) for q in query_vectors], 10)
            engine.close()
        row["edge_exact_p50_ms"] = pct(edge_times, 50)
        row["lift"] = pair_lift(csc, queries, settings.query_cut)
        rows.append(row)
        print(
            f"{name:>9}: seismic bare p50 {row[f'seismic_hf{settings.heap_factor}_p50_ms']:.3f} ms "
            f"(recall@10 {row[f'recall_hf{settings.heap_factor}']:.3f}; heap_factor 1.0: "
            f"{row['seismic_hf1.0_p50_ms']:.3f} ms, {row['recall_hf1.0']:.3f}), exact p50 SciPy "
            f"{row['scipy_exact_p50_ms']:.3f} / Qdrant Edge {row['edge_exact_p50_ms']:.3f} ms -> "
            f"{row['edge_exact_p50_ms'] / row[f'seismic_hf{settings.heap_factor}_p50_ms']:.2f}x, "
            f"pair lift {row['lift']:.2f}",
            flush=True,
        )
    return rows


def _engine_sweep(args, index, queries) -> list[dict]:
    """Each build in ``--builds`` through the product, then every query_cut × heap_factor: the p50 of the
    accelerated sparse channel and recall@10 against the engine's exact top 10."""
    from indexers.seismic import SeismicAcceleratedIndex, SeismicSettings, build

    exact = [[h.id for h in index.search_sparse(q, 10)] for q, _ in queries]
    rows = []
    for spec in args.builds.split(";"):
        given = dict(kv.split("=") for kv in spec.split(",") if kv)
        settings = SeismicSettings.from_dict(given)
        report = build(index, settings, progress=False)
        accelerated = SeismicAcceleratedIndex.open(index)
        acc = accelerated.accelerator
        for qc in (int(x) for x in args.query_cuts.split(",")):
            for hf in (float(x) for x in args.heap_factors.split(",")):
                acc.settings = dataclasses.replace(settings, query_cut=qc, heap_factor=hf)
                accelerated.search_sparse_uncached(queries[0][0], 10)
                times, recall = [], []
                for (q, _), want in zip(queries, exact):
                    t = time.perf_counter()
                    got = accelerated.search_sparse_uncached(q, 10)
                    times.append((time.perf_counter() - t) * 1e3)
                    recall.append(len({h.id for h in got} & set(want)) / max(1, len(want)))
                row = {
                    "build": given,
                    "n_postings": report.n_postings,
                    "build_s": report.seconds,
                    "query_cut": qc,
                    "heap_factor": hf,
                    "p50_ms": pct(times, 50),
                    "p95_ms": pct(times, 95),
                    "recall_at_10": statistics.fmean(recall),
                }
                rows.append(row)
                print(
                    f"{args.data} build={given or 'defaults'} (n_postings {report.n_postings}, {report.seconds:.0f}s) "
                    f"query_cut={qc:<3} heap_factor={hf:.1f}: p50 {row['p50_ms']:.3f} ms, p95 {row['p95_ms']:.3f} ms, "
                    f"recall@10 {row['recall_at_10']:.3f}",
                    flush=True,
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=[*sorted(GENERATORS), "msmarco"], default="fitted")
    parser.add_argument("--size", type=int, default=100000)
    parser.add_argument("--queries", type=int, help="default 200; with --compare all 852 real ones")
    parser.add_argument(
        "--builds", default="", help="';'-separated build settings, e.g. 'n_postings=2000;n_postings=8000'"
    )
    parser.add_argument("--query-cuts", default="5,10,15,20,30")
    parser.add_argument("--heap-factors", default="0.6,0.7,0.8,0.9,1.0")
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--bare", action="store_true", help="Seismic's own call on a generator's vectors, no engine")
    parser.add_argument(
        "--compare", action="store_true", help="real vectors against each generator at the real size (10,183)"
    )
    args = parser.parse_args()
    if args.compare:
        rows = _compare(args)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
        return
    args.queries = args.queries or 200
    if args.bare:
        rows = _bare(args)
        if args.json:
            Path(args.json).write_text(json.dumps(rows, indent=2))
        return

    root = Path(tempfile.mkdtemp(prefix="hs-seismic-"))
    if args.data == "msmarco":
        index, path, queries = _msmarco(root)
    else:
        data = GENERATORS[args.data]()
        queries = data.queries(args.queries)
        path = root / "ix"
        index = new_index(str(path))
        fill(index, data, 0, args.size, f"{args.data} {args.size:,}")
        index.optimize()
    rows = _engine_sweep(args, index, queries)
    exact_times = []
    for q, _ in queries:
        t = time.perf_counter()
        index.search_sparse(q, 10)
        exact_times.append((time.perf_counter() - t) * 1e3)
    print(
        f"{args.data}: Qdrant Edge exact sparse top 10 p50 {pct(exact_times, 50):.3f} ms over {index.count():,} documents"
    )
    index.close()
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
