"""``hybrid-search bench``: BM25 / sparse / dense / hybrid tables on a retrieval dataset, in one command.

The benchmark loads a dataset (a BEIR folder, a NanoBEIR name such as ``nano-msmarco``, a Hub id, or a
local copy of a Hub dataset), encodes the corpus once (cached, see :mod:`pipelines.embedding_cache`),
builds a real index from the vectors, and runs every judged query through the real
:meth:`~hybrid_search.retrieval.HybridSearcher.search` for each row: BM25, sparse, dense, hybrid fusions
(RRF by default; DBSF and weighted RRF on request), each of them + reranker when one is given.

Per row it reports nDCG@10, MRR@10, MAP and R@100 (computed by ir_measures), p50/p95 query latency
(encoding + search + fusion + rerank), the index storage the row reads, and the average active
dimensions of queries and documents. Rows that differ significantly (paired randomisation test,
p < 0.05, per-query nDCG@10) from the best single channel are marked.

Outputs under ``--out``: ``results.md``, ``results.json``, ``results.csv``, ``runs/<row>.trec`` and
``chart.png``; the markdown table also goes to stdout.

Example:
    >>> from pipelines.bench import run_benchmark
    >>> result = run_benchmark("../shared/data/msmarco-dl19-5k", sparse="splade-tiny", dense="minilm",
    ...                        rel_threshold=2, out="bench-out")  # doctest: +SKIP
    >>> result.row("hybrid RRF (sparse+dense)").metrics["nDCG@10"]  # doctest: +SKIP
    0.8230
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_search.constants import DEFAULT_RRF_K, FUSION_METHODS
from hybrid_search.encoders import DenseEncoder, SparseEncoder, tokenize
from hybrid_search.encoders.dense import BACKENDS as DENSE_BACKENDS
from hybrid_search.evaluation import (
    RetrievalDataset,
    evaluate,
    evaluate_per_query,
    load_dataset,
    measures,
    paired_significance,
    write_trec_run,
)
from hybrid_search.index import IndexMeta
from hybrid_search.options import SearchOptions
from hybrid_search.options import parse_weights as parse_channel_weights
from hybrid_search.rerank import Reranker
from hybrid_search.types import Document, Hit, SparseVector

logger = logging.getLogger(__name__)

BACKENDS = ("qdrant-edge", "qdrant-local")
CHANNEL_ORDER = ("sparse", "dense", "bm25")
SIGNIFICANCE_LEVEL = 0.05
DEFAULT_OUT = ".hybrid-search/bench"
#: Relative tolerance under which two scores count as tied: the engine sums RRF terms in float32,
#: Python in float64, so the "same" score differs in the last bits between the two fusion paths.
TIE_TOLERANCE = 1e-6
_INDEX_SIDECAR = "index.bench.json"
_FUSION_LABEL = {"rrf": "RRF", "dbsf": "DBSF", "convex": "convex", "zscore": "z-score"}


# --------------------------------------------------------------------------- rows


@dataclass(frozen=True)
class RowSpec:
    """One system of the table: its channels, how they are fused, and whether it reranks.

    Attributes:
        channels: one channel (``sparse``, ``dense``, ``bm25``) or several to fuse.
        fusion: ``rrf``, ``dbsf`` or ``convex`` for several channels; ``None`` for one.
        weights: per-channel fusion weights (weighted RRF); ``None`` for equal weights.
        rerank: rerank the candidates with the cross-encoder.
    """

    channels: tuple[str, ...]
    fusion: str | None = None
    weights: tuple[tuple[str, float], ...] | None = None
    rerank: bool = False

    @property
    def hybrid(self) -> bool:
        return len(self.channels) > 1

    @property
    def name(self) -> str:
        if not self.hybrid:
            base = "BM25" if self.channels[0] == "bm25" else self.channels[0]
        elif self.weights:
            spec = ",".join(f"{c}={w:g}" for c, w in self.weights)
            base = f"hybrid weighted {_FUSION_LABEL[self.fusion or 'rrf']} ({spec})"
        else:
            base = f"hybrid {_FUSION_LABEL[self.fusion or 'rrf']} ({'+'.join(self.channels)})"
        return f"{base} + reranker" if self.rerank else base

    @property
    def tag(self) -> str:
        """The row's name as a TREC run tag and file name: no spaces, no parentheses."""
        return re.sub(r"[^A-Za-z0-9+=.,_-]+", "_", self.name.lower().replace(" + ", "+")).strip("_")

    def base(self) -> RowSpec:
        """The same row without the reranker."""
        return RowSpec(self.channels, self.fusion, self.weights, False)


def parse_hybrid(spec: str | Sequence[str] | Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
    """Parse ``"sparse+dense,sparse+dense+bm25"`` into channel tuples in canonical order.

    Example:
        >>> parse_hybrid("dense+sparse,bm25+dense+sparse")
        [('sparse', 'dense'), ('sparse', 'dense', 'bm25')]
    """
    items: list[Any] = [s for s in spec.split(",")] if isinstance(spec, str) else list(spec)
    combos: list[tuple[str, ...]] = []
    for item in items:
        parts = [p.strip() for p in item.split("+")] if isinstance(item, str) else [str(p).strip() for p in item]
        parts = [p for p in parts if p]
        if not parts:
            continue
        unknown = [p for p in parts if p not in CHANNEL_ORDER]
        if unknown:
            raise ValueError(
                f"unknown channel(s) {', '.join(unknown)} in --hybrid {item!r}; channels: sparse, dense, bm25"
            )
        if len(set(parts)) != len(parts) or len(parts) < 2:
            raise ValueError(f"--hybrid {item!r}: name two or three different channels, e.g. sparse+dense")
        combo = tuple(c for c in CHANNEL_ORDER if c in parts)
        if combo not in combos:
            combos.append(combo)
    return combos


def parse_weights(spec: str | Mapping[str, float]) -> dict[str, float]:
    """Parse ``"sparse=2,dense=1"`` into ``{"sparse": 2.0, "dense": 1.0}``.

    Example:
        >>> parse_weights("sparse=2, dense=0.5")
        {'sparse': 2.0, 'dense': 0.5}
    """
    out = parse_channel_weights(spec) or {}
    unknown = sorted(set(out) - set(CHANNEL_ORDER))
    if unknown or len(out) < 2:
        raise ValueError(f"weighted RRF needs weights for two or three of sparse, dense, bm25; got {spec!r}")
    if any(w < 0 for w in out.values()):
        raise ValueError("fusion weights must be non-negative")
    return out


def plan_rows(
    available: Sequence[str],
    *,
    hybrid: Sequence[tuple[str, ...]] | None = None,
    fusions: Sequence[str] = ("rrf",),
    weighted: Sequence[Mapping[str, float]] = (),
    bm25: bool = True,
    rerank: bool = False,
) -> list[RowSpec]:
    """The rows of a benchmark, in table order: single channels, fusions, then the reranked copies.

    Args:
        available: channels the models provide (``sparse``/``dense``; ``bm25`` is always possible).
        hybrid: channel combinations to fuse; ``None`` means sparse+dense when both exist.
        fusions: fusion methods, one row per combination and method.
        weighted: weight maps, one weighted-RRF row each over the channels they name.
        bm25: include the BM25 row.
        rerank: add a ``+ reranker`` copy of every row.

    Example:
        >>> [r.name for r in plan_rows(["sparse", "dense"], rerank=False)]
        ['BM25', 'sparse', 'dense', 'hybrid RRF (sparse+dense)']
    """
    have = set(available) | {"bm25"}
    # BM25 first: the classic baseline leads the table, as in BEIR-style reports.
    singles = [c for c in ("bm25", "sparse", "dense") if c in have and (c != "bm25" or bm25)]
    if hybrid is None:
        hybrid = [("sparse", "dense")] if {"sparse", "dense"} <= have else []
    for method in fusions:
        if method not in FUSION_METHODS:
            raise ValueError(f"unknown fusion {method!r}; choose from {', '.join(FUSION_METHODS)}")
    rows = [RowSpec((c,)) for c in singles]
    for combo in hybrid:
        missing = [c for c in combo if c not in have]
        if missing:
            raise ValueError(
                f"--hybrid {'+'.join(combo)} needs a {' and a '.join(missing)} model; pass --{missing[0]} MODEL"
            )
        rows += [RowSpec(tuple(combo), method) for method in fusions]
    for weights in weighted:
        combo = tuple(c for c in CHANNEL_ORDER if c in weights)
        missing = [c for c in combo if c not in have]
        if missing:
            raise ValueError(f"weighted RRF over {'+'.join(combo)} needs a {' and a '.join(missing)} model")
        rows.append(RowSpec(combo, "rrf", tuple((c, float(weights[c])) for c in combo)))
    if not rows:
        raise ValueError("nothing to benchmark: give a sparse or dense model, or keep the BM25 row")
    return rows + ([RowSpec(r.channels, r.fusion, r.weights, True) for r in rows] if rerank else [])


# --------------------------------------------------------------------------- pure helpers


def canonical_order(hits: Sequence[Hit], *, tol: float = TIE_TOLERANCE) -> list[str]:
    """The hits' order with ties made deterministic, so that every fusion path gives the same run.

    Hits whose scores agree within a relative ``tol`` form a tie group (reranked hits and the
    fused tail behind them are never grouped together), and a tie group is ordered by document id,
    descending: the order in which trec_eval, and so ir_measures, breaks ties.

    Example:
        >>> from hybrid_search.types import Hit
        >>> canonical_order([Hit("a", None, 0.5, 1), Hit("c", None, 0.5, 2), Hit("b", None, 0.4, 3)])
        ['c', 'a', 'b']
    """
    groups: list[list[Hit]] = []
    for hit in hits:
        if groups:
            prev = groups[-1][-1]
            same_segment = (prev.rerank_score is None) == (hit.rerank_score is None)
            scale = max(abs(prev.score), abs(hit.score), 1e-12)
            if same_segment and abs(prev.score - hit.score) <= tol * scale:
                groups[-1].append(hit)
                continue
        groups.append([hit])
    return [h.id for group in groups for h in sorted(group, key=lambda h: h.id, reverse=True)]


def rank_scores(ids: Sequence[str]) -> dict[str, float]:
    """Strictly decreasing scores ``n, n-1, ...`` that make a run file reproduce ``ids``' order exactly.

    Reranked rows mix cross-encoder scores (head) with fused scores (tail), which are not comparable;
    rank-based scores keep the evaluated order for every row alike.
    """
    n = len(ids)
    return {doc_id: float(n - i) for i, doc_id in enumerate(ids)}


def latency_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50, p95 and mean of per-query latencies in milliseconds."""
    if not len(samples_ms):
        return {"p50_ms": float("nan"), "p95_ms": float("nan"), "mean_ms": float("nan")}
    arr = np.asarray(samples_ms, dtype=np.float64)
    p50, p95 = np.percentile(arr, [50, 95])
    return {"p50_ms": float(p50), "p95_ms": float(p95), "mean_ms": float(arr.mean())}


def disk_usage(path: str | os.PathLike[str]) -> dict[str, int]:
    """Bytes allocated on disk under ``path``, split by what they store.

    Qdrant preallocates its memory-mapped files as sparse files, so the apparent size (hundreds of MB
    for a tiny index) says nothing; allocated blocks do. Keys: ``total``, ``sparse``, ``dense``
    (vector storage and indexes of those named vectors), ``payload`` (stored texts) and ``other``
    (write-ahead log, id trackers, configuration).
    """
    out = {"total": 0, "sparse": 0, "dense": 0, "payload": 0, "other": 0}
    for root, _, files in os.walk(path):
        parts = Path(root).relative_to(path).parts
        kind = "other"
        for part in parts:
            if part.endswith("-sparse") or part == "seismic":  # the accelerator serves the sparse channel
                kind = "sparse"
            elif part.endswith("-dense"):
                kind = "dense"
            elif part.startswith("payload"):
                kind = "payload"
        for name in files:
            try:
                st = os.stat(os.path.join(root, name))
            except OSError:
                continue
            size = st.st_blocks * 512 if hasattr(st, "st_blocks") else st.st_size
            out["total"] += size
            out[kind] += size
    return out


# --------------------------------------------------------------------------- results


@dataclass
class RowResult:
    """One row of the table.

    Attributes:
        metrics: ``{short name: value}`` with short names ``nDCG@10``, ``MRR@10``, ``MAP``, ``R@100``
            (see :attr:`BenchResult.measures` for their ir_measures names); values in ``[0, 1]``.
        per_query: per-query nDCG@10 over the judged queries.
        fused_by: who fused, as the searches recorded it (``SearchResult.fused_by``): ``engine``, ``client``,
            ``engine+client`` when some queries fused elsewhere, or ``None`` for a single channel.
        stages_ms: median milliseconds per stage of the search (``encode_sparse``, ``search_dense``,
            ``fusion``, ``rerank``...), as ``HybridSearcher`` times them.
        p_value: paired randomisation test of per-query nDCG@10 against the best single channel.
    """

    spec: RowSpec
    metrics: dict[str, float]
    latency: dict[str, float]
    per_query: dict[str, float]
    fused_by: str | None
    avg_active_dims_query: float
    avg_active_dims_doc: float
    index_bytes: int | None
    stages_ms: dict[str, float] = field(default_factory=dict)
    run_file: str | None = None
    p_value: float | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def significant(self) -> bool:
        return self.p_value is not None and self.p_value < SIGNIFICANCE_LEVEL


@dataclass
class BenchResult:
    """Everything one benchmark run measured; :meth:`to_dict` is what ``results.json`` holds."""

    dataset: dict[str, Any]
    rel_threshold: int
    measures: dict[str, str]
    rows: list[RowResult]
    baseline: str | None
    settings: dict[str, Any]
    index: dict[str, Any]
    cache: dict[str, bool]
    timings_s: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, Any] = field(default_factory=dict)

    def row(self, name: str) -> RowResult:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no row {name!r}; rows: {', '.join(r.name for r in self.rows)}")

    def row_dict(self, row: RowResult) -> dict[str, Any]:
        """One row, flat, with metric keys as ir_measures prints them (``nDCG@10``, ``RR(rel=2)@10``...)."""
        spec = row.spec
        return {
            "name": row.name,
            "tag": spec.tag,
            "channels": list(spec.channels),
            "fusion": spec.fusion,
            "weights": dict(spec.weights) if spec.weights else None,
            "reranked": spec.rerank,
            "fused_by": row.fused_by,
            **{self.measures[k]: v for k, v in row.metrics.items()},
            **row.latency,
            "stages_ms": row.stages_ms,
            "avg_active_dims_query": row.avg_active_dims_query,
            "avg_active_dims_doc": row.avg_active_dims_doc,
            "index_bytes": row.index_bytes,
            "p_value": row.p_value,
            "significant": row.significant,
            "run_file": row.run_file,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "rel_threshold": self.rel_threshold,
            "measures": self.measures,
            "baseline": self.baseline,
            "significance": f"paired randomisation test on per-query nDCG@10 against {self.baseline}, "
            f"p < {SIGNIFICANCE_LEVEL}",
            "rows": [self.row_dict(r) for r in self.rows],
            "settings": self.settings,
            "index": self.index,
            "cache": self.cache,
            "timings_s": self.timings_s,
            "outputs": self.outputs,
        }

    def markdown(self) -> str:
        """The table with a header that names the dataset, the measures and the relevance threshold."""
        return format_markdown(self)


def _fmt(value: float | None, digits: int = 2, scale: float = 1.0) -> str:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return "–"
    return f"{value * scale:.{digits}f}"


def _mb(size: int | None) -> str:
    return "–" if size is None else f"{size / 2**20:.1f}"


def format_markdown(result: BenchResult) -> str:
    """Render a :class:`BenchResult` as a markdown table with its header lines (a pure function)."""
    t = result.rel_threshold
    names = result.measures
    ds, st = result.dataset, result.settings
    lines = [
        f"**{ds['name']}**: {ds['documents']:,} documents, {ds['evaluated_queries']} judged queries; "
        f"relevance threshold {t} (grade ≥ {t} counts as relevant).",
        "",
        "Metrics ×100 from ir_measures: " + ", ".join(f"{k} = {v}" for k, v in names.items())
        + " (nDCG uses the graded judgements).",
        f"Retrieval: {result.index['backend']}, {'exact' if st['exact'] else 'approximate'} search, "
        f"top {st['prefetch_k']} per channel, RRF k={st['rrf_k']:g} (ranks from 1); "
        + (f"every ranking cut to {st['top_k']} hits." if st["top_k"] else
           "fusions are evaluated over their whole candidate list.")
        + (f" Reranker: {st['reranker']} on the top {st['rerank_top_n']}." if st["reranker"] else ""),
        "Latency: per query through `HybridSearcher.search` (encoding + search + fusion + rerank; "
        "explain_hits=False; after one warm-up encoding of each query"
        + (f"; {st['query_threads']} torch thread{'s' if st['query_threads'] != 1 else ''}"
           if st.get("query_threads") else "")
        + ").",
        "",
        "| system | " + " | ".join(names) + " | p50 ms | p95 ms | q dims | d dims | index MB | fusion | p |",
        "|---|" + "---:|" * (len(names) + 5) + "---|---:|",
    ]
    for row in result.rows:
        marks = " †" if row.significant else ""
        metric_cells = [_fmt(row.metrics[k], 2, 100) + (marks if k == "nDCG@10" else "") for k in names]
        p = "baseline" if row.name == result.baseline else _fmt(row.p_value, 3)
        lines.append(
            f"| {row.name} | " + " | ".join(metric_cells)
            + f" | {_fmt(row.latency['p50_ms'], 1)} | {_fmt(row.latency['p95_ms'], 1)}"
            + f" | {_fmt(row.avg_active_dims_query, 1)} | {_fmt(row.avg_active_dims_doc, 1)}"
            + f" | {_mb(row.index_bytes)} | {row.fused_by or '–'} | {p} |"
        )
    total = result.index.get("bytes", {}).get("total") if result.index.get("bytes") else None
    lines += [
        "",
        f"† p < {SIGNIFICANCE_LEVEL} against the best single channel ({result.baseline}): paired randomisation "
        "test on per-query nDCG@10. dims: average active dimensions (BM25: distinct terms; hybrid: summed "
        "over channels). index MB: on-disk vector storage the row reads "
        f"(whole index: {_mb(total)} MB; BM25 is built in memory from the stored texts).",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- writing


def write_outputs(result: BenchResult, runs: Mapping[str, Mapping[str, Mapping[str, float]]], out: Path) -> None:
    """Write results.md/json/csv, one TREC run per row, and chart.png under ``out``; fills ``result.outputs``."""
    out.mkdir(parents=True, exist_ok=True)
    run_dir = out / "runs"
    for stale in run_dir.glob("*.trec"):  # rows of an earlier run with other options
        stale.unlink()
    for row in result.rows:
        path = run_dir / f"{row.spec.tag}.trec"
        write_trec_run(runs[row.name], path, tag=row.spec.tag)
        row.run_file = str(path.relative_to(out))
    result.outputs = {
        "markdown": str(out / "results.md"),
        "json": str(out / "results.json"),
        "csv": str(out / "results.csv"),
        "chart": str(out / "chart.png"),
        "runs": str(run_dir),
    }
    (out / "results.md").write_text(result.markdown() + "\n", encoding="utf-8")
    flat = [result.row_dict(r) for r in result.rows]
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(flat[0]))
        writer.writeheader()
        for row in flat:
            writer.writerow(
                {
                    k: "+".join(v) if k == "channels" else json.dumps(v) if isinstance(v, dict) else v
                    for k, v in row.items()
                }
            )
    plot_chart(result, out / "chart.png")
    (out / "results.json").write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")


def plot_chart(result: BenchResult, path: Path) -> None:
    """nDCG@10 per row next to its p50 latency, as a PNG."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError("the benchmark chart needs matplotlib: pip install matplotlib") from error
    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    names = [r.name for r in result.rows][::-1]
    ndcg = [r.metrics["nDCG@10"] * 100 for r in result.rows][::-1]
    p50 = [r.latency["p50_ms"] for r in result.rows][::-1]
    colours = ["#d62728" if r.significant else "#1f77b4" for r in result.rows][::-1]
    height = 1.2 + 0.45 * len(names)
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, height), sharey=True, gridspec_kw={"width_ratios": [3, 2]})
    y = np.arange(len(names))
    left.barh(y, ndcg, color=colours)
    left.set_yticks(y, names)
    left.set_xlabel("nDCG@10 (×100)")
    low = max(0.0, min(ndcg) - 10)
    left.set_xlim(low, max(ndcg) + 5)
    for yi, value in zip(y, ndcg):
        left.text(value + 0.3, yi, f"{value:.2f}", va="center", fontsize=8)
    right.barh(y, p50, color="#7f7f7f")
    right.set_xlabel("p50 latency per query (ms)")
    for yi, value in zip(y, p50):
        right.text(value, yi, f" {value:.1f}", va="center", fontsize=8)
    right.set_xlim(0, max(p50) * 1.25 if p50 and max(p50) > 0 else 1)
    fig.suptitle(
        f"{result.dataset['name']}: nDCG@10 and p50 latency ({result.index['backend']}; "
        f"red: p < {SIGNIFICANCE_LEVEL} vs {result.baseline})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --------------------------------------------------------------------------- the run


def _is_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("", "none"))


def _load_encoder(kind: str, value: Any, **options: Any) -> Any:
    """None for 'none', a loaded encoder for a name (``options`` go to its ``load``), else ``value`` itself."""
    if _is_none(value):
        return None
    if isinstance(value, str):
        return SparseEncoder.load(value, **options) if kind == "sparse" else DenseEncoder.load(value, **options)
    return value


def _index_keys(sparse: Any, dense: Any) -> dict[str, str | None]:
    from pipelines.embedding_cache import cache_key, encoder_fingerprint

    return {
        "sparse": cache_key(encoder_fingerprint("sparse", sparse)) if sparse else None,
        "dense": cache_key(encoder_fingerprint("dense", dense)) if dense else None,
    }


def build_index(
    backend: str,
    out: Path,
    docs: Sequence[Document],
    sparse: Any,
    dense: Any,
    sparse_vectors: Sequence[SparseVector] | None,
    dense_matrix: np.ndarray | None,
    *,
    corpus_fingerprint: str,
    batch_size: int = 256,
    progress: bool = True,
) -> tuple[Any, bool]:
    """Open the benchmark's index, reusing the one under ``out`` when it holds the same vectors.

    Qdrant Edge lives in ``out/index`` (exact search) next to a sidecar that records the corpus and
    model keys it was built from; ``qdrant-local`` is qdrant-client's in-memory engine, built each run.

    Returns:
        ``(index, reused)``.
    """
    from tqdm.auto import tqdm

    from indexers import create_index, open_index
    from indexers.qdrant_edge import META_FILE

    if backend not in BACKENDS:
        raise ValueError(f"unknown index backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    meta = IndexMeta(engine="", sparse=sparse.settings() if sparse else None, dense=dense.settings() if dense else None)
    expected = {"corpus": corpus_fingerprint, "documents": len(docs), **_index_keys(sparse, dense)}
    if backend == "qdrant-local":
        index = create_index(":memory:", meta, exact=True)
    else:
        folder, sidecar = out / "index", out / _INDEX_SIDECAR
        if folder.exists():
            try:
                recorded = json.loads(sidecar.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                recorded = None
            if recorded == expected:
                index = open_index(str(folder), exact=True, sparse_ann=False)
                if index.count() == len(docs):
                    return index, True
                index.close()
            if not (folder / META_FILE).exists():
                raise FileExistsError(f"{folder} exists and is not a hybrid-search index; pass another --out")
            logger.info("rebuilding %s: it was built from other vectors", folder)
            sidecar.unlink(missing_ok=True)
            shutil.rmtree(folder)
        out.mkdir(parents=True, exist_ok=True)
        index = create_index(str(folder), meta, exact=True)
    with tqdm(total=len(docs), desc="indexing", unit="doc", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(docs), batch_size):
            stop = start + batch_size
            index.upsert(
                docs[start:stop],
                sparse_vectors[start:stop] if sparse_vectors is not None else None,
                dense_matrix[start:stop] if dense_matrix is not None else None,
            )
            bar.update(len(docs[start:stop]))
    if backend == "qdrant-edge":
        index.flush()
        (out / _INDEX_SIDECAR).write_text(json.dumps(expected, indent=2), encoding="utf-8")
    return index, False


def run_benchmark(
    dataset: str | os.PathLike[str] | RetrievalDataset,
    *,
    sparse: str | SparseEncoder | None = "splade-tiny",
    dense: str | DenseEncoder | None = "minilm",
    reranker: str | Reranker | None = None,
    hybrid: str | Sequence[str] | Sequence[Sequence[str]] | None = None,
    fusions: Sequence[str] = ("rrf",),
    weighted: Sequence[str | Mapping[str, float]] = (),
    bm25: bool = True,
    index_backend: str = "qdrant-edge",
    out: str | os.PathLike[str] | None = None,
    rel_threshold: int = 1,
    client_fusion: bool = False,
    top_k: int | None = None,
    prefetch_k: int = 100,
    rrf_k: float = DEFAULT_RRF_K,
    rerank_top_n: int = 100,
    split: str = "test",
    max_queries: int | None = None,
    cache: bool | str | os.PathLike[str] | Any = True,
    significance_resamples: int = 10000,
    query_threads: int | None = 1,
    sparse_ann: str | None = None,
    progress: bool = True,
) -> BenchResult:
    """Benchmark BM25, sparse, dense and hybrid retrieval (optionally reranked) on one dataset.

    Args:
        dataset: a BEIR folder, a NanoBEIR name (``nano-msmarco``), a Hub id, a local copy of a Hub
            dataset, or a loaded :class:`~hybrid_search.evaluation.RetrievalDataset`.
        sparse, dense: model names or loaded encoders; ``None`` (or ``"none"``) leaves a channel out.
        reranker: a cross-encoder name/folder or a :class:`~hybrid_search.rerank.Reranker`; adds a
            ``+ reranker`` copy of every row.
        hybrid: channel combinations to fuse, e.g. ``"sparse+dense,sparse+dense+bm25"`` (default
            sparse+dense when both models are given).
        fusions: fusion methods for the hybrid combinations (``rrf``, ``dbsf``, ``convex``).
        weighted: weighted-RRF rows, e.g. ``["sparse=2,dense=1"]``.
        bm25: include the BM25 row.
        index_backend: ``qdrant-edge`` (an exact-search index folder under ``out``) or ``qdrant-local``
            (qdrant-client in memory).
        out: output folder (default ``.hybrid-search/bench/<dataset>``).
        rel_threshold: minimum grade that counts as relevant for MRR, MAP and recall.
        client_fusion: fuse in Python instead of in the engine; gives the same numbers.
        top_k: cut every row's ranking to this many hits before evaluation. ``None`` (default)
            evaluates everything retrieved: a single channel's top ``prefetch_k`` and a fusion's
            whole candidate list (up to ``prefetch_k`` × channels), as the reference figures do.
        prefetch_k: hits retrieved per channel (for a fusion: candidates per channel before fusing).
        rrf_k: the RRF constant (ranks start at 1).
        rerank_top_n: candidates the cross-encoder rescores.
        split: qrels split of a BEIR folder.
        max_queries: evaluate only the first N judged queries (quick runs).
        cache: ``True`` for the default embedding cache, a folder, an
            :class:`~pipelines.embedding_cache.EmbeddingCache`, or ``False`` to always encode.
        significance_resamples: resamples of the randomisation test.
        query_threads: torch threads while queries are timed (``None``: leave torch's setting). One
            thread measures per-query latency the way a server handling concurrent requests sees it,
            and keeps it stable on a busy machine: with two threads on two shared cores, SPLADE-tiny
            query encoding here swung between 8 and 240 ms.
        sparse_ann: ``"seismic"``: the sparse channel (alone and in every fusion) is served by a Seismic
            accelerator built beside the benchmark's index (``indexers/seismic.py``) instead of exact search.
        progress: progress bars on stderr.

    Returns:
        The :class:`BenchResult`; its outputs are written under ``out``.

    Raises:
        DatasetError: the dataset cannot be loaded (offline, a NanoBEIR name says to pass a BEIR folder).
        ValueError: inconsistent options, e.g. a hybrid combination without its model.
    """
    from hybrid_search.retrieval import HybridSearcher
    from pipelines.embedding_cache import EmbeddingCache

    clock: dict[str, float] = {}
    start = t0 = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        clock[name] = clock.get(name, 0.0) + now - t0
        t0 = now

    if index_backend not in BACKENDS:
        raise ValueError(f"unknown index backend {index_backend!r}; choose one of {', '.join(BACKENDS)}")
    if (top_k is not None and top_k < 1) or prefetch_k < 1 or rerank_top_n < 1:
        raise ValueError("top_k, prefetch_k and rerank_top_n must be positive")
    # Options are checked before anything slow: a typo should not cost a corpus encoding.
    combos = parse_hybrid(hybrid) if hybrid is not None else None
    weight_maps = [parse_weights(w) for w in weighted]
    available = [c for c, model in (("sparse", sparse), ("dense", dense)) if not _is_none(model)]
    if not available:
        raise ValueError("the benchmark index needs a sparse or a dense model (--sparse / --dense)")
    specs = plan_rows(
        available, hybrid=combos, fusions=fusions, weighted=weight_maps, bm25=bm25, rerank=reranker is not None
    )
    data = dataset if isinstance(dataset, RetrievalDataset) else load_dataset(dataset, split=split)
    lap("load_dataset")
    sparse_enc, dense_enc = _load_encoder("sparse", sparse), _load_encoder("dense", dense)
    rerank_model = Reranker.load(reranker) if isinstance(reranker, str) else reranker
    lap("load_models")

    qids = [q for q in data.judged_queries if data.queries.get(q, "").strip()]
    if max_queries is not None:
        qids = qids[:max_queries]
    if not qids:
        raise ValueError(f"dataset {data.name} has no judged query with text")
    judged = data.judged_queries if max_queries is None else qids
    qrels = {q: data.qrels[q] for q in judged}
    docs = list(data.corpus.values())
    fingerprint = data.fingerprint()
    out_dir = Path(out) if out is not None else Path(DEFAULT_OUT) / re.sub(r"[^A-Za-z0-9._-]+", "_", data.name)

    if isinstance(cache, EmbeddingCache):
        store = cache
    else:
        root = None if isinstance(cache, bool) else cache
        store = EmbeddingCache(root, progress=progress, enabled=bool(cache))
    cache_hits: dict[str, bool] = {}
    sparse_vectors = dense_matrix = None
    if sparse_enc is not None:
        sparse_vectors, cache_hits["sparse"] = store.sparse(sparse_enc, docs, fingerprint)
    if dense_enc is not None:
        dense_matrix, cache_hits["dense"] = store.dense(dense_enc, docs, fingerprint)
    lap("encode_corpus")

    index, reused = build_index(
        index_backend, out_dir, docs, sparse_enc, dense_enc, sparse_vectors, dense_matrix,
        corpus_fingerprint=fingerprint, progress=progress,
    )
    if sparse_ann:
        index = _accelerate(index, sparse_ann, reused, progress)
    lap("build_index")
    import torch

    torch_threads = torch.get_num_threads()
    if query_threads:
        torch.set_num_threads(query_threads)
    try:
        sizes = disk_usage(index.path) if index_backend == "qdrant-edge" else None
        searcher = HybridSearcher(index, sparse=sparse_enc, dense=dense_enc, reranker=rerank_model)
        texts = [data.queries[q] for q in qids]
        dims = _warm_up_and_count_dims(texts, docs, sparse_enc, sparse_vectors, dense_enc)
        queries = dict(zip(qids, texts))
        timed = {
            spec.name: time_row(
                searcher, queries,
                search_options(spec, prefetch_k=prefetch_k, rrf_k=rrf_k, rerank_top_n=rerank_top_n,
                               client_fusion=client_fusion),
                top_k=top_k, desc=spec.name, progress=progress,
            )
            for spec in specs
        }
        lap("queries")
    finally:
        torch.set_num_threads(torch_threads)
        index.close()

    names = measures(rel_threshold)
    rows = []
    for spec in specs:
        run, times, stages, fused_by = timed[spec.name]
        channel_bytes = None
        if sizes is not None:
            vector_channels = [c for c in spec.channels if c != "bm25"]
            channel_bytes = sum(sizes[c] for c in vector_channels) if vector_channels else None
        rows.append(
            RowResult(
                spec=spec,
                metrics=evaluate(run, qrels, rel_threshold),
                latency=latency_stats(times),
                per_query=evaluate_per_query(run, qrels, rel_threshold)["nDCG@10"],
                fused_by=fused_by,
                avg_active_dims_query=sum(dims[c][0] for c in spec.channels),
                avg_active_dims_doc=sum(dims[c][1] for c in spec.channels),
                index_bytes=channel_bytes,
                stages_ms=stages,
            )
        )
    singles = [r for r in rows if not r.spec.hybrid and not r.spec.rerank]
    baseline = max(singles, key=lambda r: r.metrics["nDCG@10"]) if singles else None
    for row in rows:
        if baseline is not None and row is not baseline:
            row.p_value = paired_significance(row.per_query, baseline.per_query, n_resamples=significance_resamples)
    lap("evaluate")

    result = BenchResult(
        dataset={
            "name": data.name,
            "spec": str(dataset) if not isinstance(dataset, RetrievalDataset) else data.name,
            "fingerprint": fingerprint,
            "documents": len(docs),
            "queries": len(data.queries),
            "evaluated_queries": len(qrels),
            "run_queries": len(qids),
        },
        rel_threshold=rel_threshold,
        measures={short: str(measure) for short, measure in names.items()},
        rows=rows,
        baseline=baseline.name if baseline else None,
        settings={
            "sparse": sparse_enc.settings() if sparse_enc else None,
            "dense": dense_enc.settings() if dense_enc else None,
            "sparse_max_seq_length": sparse_enc.max_seq_length if sparse_enc else None,
            "dense_max_seq_length": dense_enc.max_seq_length if dense_enc else None,
            "reranker": rerank_model.name if rerank_model else None,
            "rerank_top_n": rerank_top_n if rerank_model else None,
            "top_k": top_k,
            "prefetch_k": prefetch_k,
            "rrf_k": rrf_k,
            "exact": not sparse_ann,
            "sparse_ann": (index.meta.sparse_ann or None) if sparse_ann else None,
            "client_fusion": client_fusion,
            "explain_hits": False,
            "query_threads": query_threads,
            "split": split,
        },
        index={
            "backend": index_backend,
            "location": str(index.location),
            "reused": reused,
            "bytes": sizes,
        },
        cache=cache_hits,
    )
    result.timings_s = {**{k: round(v, 3) for k, v in clock.items()}, "total": round(time.perf_counter() - start, 3)}
    write_outputs(result, {name: t[0] for name, t in timed.items()}, out_dir)
    return result


def _accelerate(index: Any, method: str, reused: bool, progress: bool) -> Any:
    """The benchmark's index with a sparse accelerator of the default settings: the one already beside
    it when the index was reused and has one, else a fresh build."""
    from indexers.seismic import SeismicSettings, accelerate, build

    recorded = index.meta.sparse_ann or {}
    defaults = SeismicSettings()
    if not (reused and recorded.get("method") == method and recorded.get("settings") == defaults.to_dict()):
        build(index, defaults, progress=progress)
    wrapped = accelerate(index)
    if wrapped.accelerator is None:  # recorded but unreadable (an interrupted run): build it again
        build(wrapped, defaults, progress=progress)
    return wrapped


def search_options(
    spec: RowSpec, *, prefetch_k: int, rrf_k: float, rerank_top_n: int, client_fusion: bool
) -> SearchOptions:
    """The :class:`SearchOptions` that run one row."""
    return SearchOptions(
        # Every candidate is fetched, so a tie group at a later cut is whole whichever path fused.
        k=prefetch_k * len(spec.channels),
        mode="hybrid" if spec.hybrid else spec.channels[0],
        channels=tuple(spec.channels) if spec.hybrid else None,
        fusion=spec.fusion or "rrf",
        rrf_k=rrf_k,
        weights=dict(spec.weights) if spec.weights else None,
        prefetch_k=prefetch_k,
        rerank=spec.rerank,
        rerank_top_n=rerank_top_n,
        # Token explanations are for people reading hits; timing them would penalise the sparse rows.
        explain=False,
        engine_fusion=not client_fusion,
        # Per-channel ranks are for display; with engine fusion the row is then one engine query.
        channel_ranks=False,
    )


def fused_by_label(labels: Sequence[str | None]) -> str | None:
    """A row's "fusion" column from what its searches recorded: ``engine``, ``client``, or both when a query
    fused elsewhere (an engine cannot prefetch a query whose sparse vector is empty).

    Example:
        >>> fused_by_label(["engine", "engine"]), fused_by_label([None]), fused_by_label(["engine", "client"])
        ('engine', None, 'engine+client')
    """
    found = [label for label in ("engine", "client") if label in labels]
    return "+".join(found) if found else None


def time_row(
    searcher: Any,
    queries: Mapping[str, str],
    options: SearchOptions,
    *,
    top_k: int | None = None,
    desc: str = "queries",
    progress: bool = True,
) -> tuple[dict[str, dict[str, float]], list[float], dict[str, float], str | None]:
    """Run every query through ``searcher.search(text, options)``, timing each call.

    Returns:
        ``(run, latencies in ms, median ms per search stage, who fused)``; the run holds rank scores of the
        canonical order (:func:`canonical_order`), cut to ``top_k`` when given; who fused is what the
        results recorded (:func:`fused_by_label`).
    """
    from tqdm.auto import tqdm

    # One untimed query first: lazy work (BM25 statistics, first reranker call) is not query latency.
    searcher.search(next(iter(queries.values())), options)
    run: dict[str, dict[str, float]] = {}
    times: list[float] = []
    stage_times: dict[str, list[float]] = {}
    fused_by: list[str | None] = []
    for qid, text in tqdm(list(queries.items()), desc=desc, unit="q", disable=not progress, dynamic_ncols=True,
                          leave=False):
        start = time.perf_counter()
        result = searcher.search(text, options)
        times.append((time.perf_counter() - start) * 1000)
        for stage, ms in result.timings_ms.items():
            stage_times.setdefault(stage, []).append(ms)
        fused_by.append(result.fused_by)
        run[qid] = rank_scores(canonical_order(result.hits)[:top_k])
    stages = {k: round(float(np.median(v)), 3) for k, v in stage_times.items()}
    return run, times, stages, fused_by_label(fused_by)


def _warm_up_and_count_dims(
    queries: Sequence[str],
    docs: Sequence[Document],
    sparse: SparseEncoder | None,
    sparse_vectors: Sequence[SparseVector] | None,
    dense: DenseEncoder | None,
) -> dict[str, tuple[float, float]]:
    """Encode each query once, as a search does, and return ``{channel: (avg active dims per query, per doc)}``.

    torch on CPU is slow the first time it meets an input length (about 250 ms for SPLADE-tiny here,
    against 6 ms warm), so timing a cold first pass would measure that, not the query path.
    BM25 counts distinct terms.
    """
    query_vectors = [sparse.encode_query([q])[0] for q in queries] if sparse is not None else []
    if dense is not None:
        for q in queries:
            dense.encode_query([q])
    dims = {
        "bm25": (
            float(np.mean([len(set(tokenize(q))) for q in queries])),
            float(np.mean([len(set(tokenize(d.full_text))) for d in docs])),
        )
    }
    if sparse is not None and sparse_vectors is not None:
        dims["sparse"] = (
            float(np.mean([v.nnz for v in query_vectors])),
            float(np.mean([v.nnz for v in sparse_vectors])),
        )
    if dense is not None:
        dims["dense"] = (float(dense.dimension), float(dense.dimension))
    return dims


# --------------------------------------------------------------------------- CLI


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hybrid-search bench`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark BM25 / sparse / dense / hybrid (+ reranker) on a retrieval dataset",
        description="Encode a dataset's corpus (cached), index it, run every judged query through each "
        "system and print a table of nDCG@10, MRR@10, MAP, R@100, latency and index size. "
        "Writes results.json, results.csv, TREC runs and chart.png under --out.",
    )
    p.add_argument("--dataset", required=True,
                   help="BEIR folder, NanoBEIR name (nano-msmarco, nano-nq, ...), Hub id owner/name, "
                   "or a local folder laid out like a Hub dataset")
    p.add_argument("--split", default="test", help="qrels split of a BEIR folder (default test)")
    p.add_argument("--sparse", default="splade-tiny", help="sparse model, or 'none' (default splade-tiny)")
    p.add_argument("--dense", default="minilm", help="dense model, or 'none' (default minilm)")
    p.add_argument("--dense-backend", default=None, choices=DENSE_BACKENDS,
                   help="dense inference: auto (ONNX Runtime float32 where it verifies, else PyTorch), torch, "
                   "onnx, or onnx-int8 (faster, not identical; default auto, or $HYBRID_SEARCH_DENSE_BACKEND)")
    p.add_argument("--reranker", metavar="MODEL", help="cross-encoder (folder or Hub id): adds '+ reranker' rows")
    p.add_argument("--rerank-top-n", type=int, default=100, help="candidates the reranker rescores (default 100)")
    p.add_argument("--hybrid", help="channel combinations to fuse, e.g. sparse+dense,sparse+dense+bm25 "
                   "(default sparse+dense)")
    p.add_argument("--fusion", default="rrf", help="fusion methods for the hybrid rows: rrf,dbsf,convex (default rrf)")
    p.add_argument("--weighted-rrf", action="append", default=[], metavar="CH=W,CH=W",
                   help="add a weighted-RRF row, e.g. sparse=2,dense=1 (repeatable)")
    p.add_argument("--no-bm25", action="store_true", help="leave out the BM25 row")
    p.add_argument("--index-backend", default="qdrant-edge", choices=BACKENDS,
                   help="qdrant-edge: exact-search index folder under --out (default); "
                   "qdrant-local: qdrant-client in memory")
    p.add_argument("--out", help=f"output folder (default {DEFAULT_OUT}/DATASET)")
    p.add_argument("--rel-threshold", type=int, default=1,
                   help="minimum grade counted relevant by MRR, MAP and recall (default 1; TREC DL uses 2)")
    p.add_argument("--client-fusion", action="store_true", help="fuse in Python instead of in the engine")
    p.add_argument("--top-k", type=int,
                   help="cut rankings to this many hits before evaluation (default: all retrieved, i.e. a "
                   "channel's top --prefetch-k and a fusion's whole candidate list)")
    p.add_argument("--prefetch-k", type=int, default=100,
                   help="hits retrieved per channel, also before fusion (default 100)")
    p.add_argument("--rrf-k", type=float, default=DEFAULT_RRF_K, help="RRF constant, ranks from 1 (default 60)")
    p.add_argument("--max-queries", type=int, help="evaluate only the first N judged queries")
    p.add_argument("--query-threads", type=int, default=1,
                   help="torch threads while queries are timed (default 1; 0 leaves torch's default)")
    p.add_argument("--no-cache", action="store_true", help="encode the corpus even if its embeddings are cached")
    p.add_argument("--cache-dir", help="embedding cache folder (default: the model cache's embeddings/ folder)")
    p.add_argument("--json", action="store_true", help="print results.json to stdout instead of the table")
    p.add_argument("--sparse-ann", choices=["seismic"],
                   help="serve the sparse channel from a Seismic accelerator built beside the index "
                   "(approximate candidates, exact scores) instead of exact search")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    from hybrid_search.device import add_argument as add_device_argument

    add_device_argument(p)
    p.set_defaults(func=cmd_bench)
    return p


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark from parsed CLI arguments and print the table (or JSON)."""
    import sys

    from hybrid_search.device import resolve_device

    device = resolve_device(args.device)
    result = run_benchmark(
        args.dataset,
        sparse=_load_encoder("sparse", args.sparse, device=device),
        dense=_load_encoder("dense", args.dense, backend=args.dense_backend, device=device),
        reranker=Reranker.load(args.reranker, device=device) if args.reranker else None,
        hybrid=args.hybrid,
        fusions=[f.strip() for f in args.fusion.split(",") if f.strip()],
        weighted=args.weighted_rrf,
        bm25=not args.no_bm25,
        index_backend=args.index_backend,
        out=args.out,
        rel_threshold=args.rel_threshold,
        client_fusion=args.client_fusion,
        top_k=args.top_k,
        prefetch_k=args.prefetch_k,
        rrf_k=args.rrf_k,
        rerank_top_n=args.rerank_top_n,
        split=args.split,
        max_queries=args.max_queries,
        query_threads=args.query_threads or None,
        cache=False if args.no_cache else (args.cache_dir or True),
        sparse_ann=args.sparse_ann,
        progress=not args.no_progress,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
    else:
        print(result.markdown())
    hits = ", ".join(f"{k} {'cached' if v else 'encoded'}" for k, v in result.cache.items())
    print(
        f"wrote {result.outputs['json']}, results.csv, results.md, chart.png and runs/ "
        f"({hits}; index {'reused' if result.index['reused'] else 'built'}; {result.timings_s['total']:.1f}s)",
        file=sys.stderr,
    )
    return 0


__all__ = [
    "BenchResult",
    "RowResult",
    "RowSpec",
    "add_parser",
    "canonical_order",
    "disk_usage",
    "format_markdown",
    "parse_hybrid",
    "parse_weights",
    "plan_rows",
    "rank_scores",
    "run_benchmark",
    "search_options",
    "time_row",
]
