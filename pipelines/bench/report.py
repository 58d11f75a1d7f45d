"""What a benchmark reports: the result objects, the markdown table, results.json/csv, TREC runs and the chart.

Everything here reads a finished :class:`BenchResult`; nothing measures or searches.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybrid_search.jsonout import dumps, non_finite_as_null
from hybrid_search.trec import write_trec_run

from .rows import RowSpec

SIGNIFICANCE_LEVEL = 0.05


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
            "tuned": {"source": spec.source, "rrf_k": spec.rrf_k, "prefetch_k": spec.prefetch_k}
            if spec.source
            else None,
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
        """The result as plain JSON values; a figure that could not be measured (the latency of a row with
        no timed queries is NaN) is ``None``, so ``results.json`` and ``--json`` stay valid JSON."""
        return non_finite_as_null(
            {
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
        )

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
        "Metrics ×100 from ir_measures: "
        + ", ".join(f"{k} = {v}" for k, v in names.items())
        + " (nDCG uses the graded judgements).",
        f"Retrieval: {result.index['backend']}, {'exact' if st['exact'] else 'approximate'} search, "
        f"top {st['prefetch_k']} per channel, RRF k={st['rrf_k']:g} (ranks from 1); "
        + (
            f"every ranking cut to {st['top_k']} hits."
            if st["top_k"]
            else "fusions are evaluated over their whole candidate list."
        )
        + (f" Reranker: {st['reranker']} on the top {st['rerank_top_n']}." if st["reranker"] else ""),
        "Latency: per query through `HybridSearcher.search` (encoding + search + fusion + rerank; "
        "explain_hits=False; after one warm-up encoding of each query"
        + (
            f"; {st['query_threads']} torch thread{'s' if st['query_threads'] != 1 else ''}"
            if st.get("query_threads")
            else ""
        )
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
            f"| {row.name} | "
            + " | ".join(metric_cells)
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
    (out / "results.json").write_text(dumps(result.to_dict()), encoding="utf-8")


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
