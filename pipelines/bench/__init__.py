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

The package, by responsibility: :mod:`~pipelines.bench.config` (:class:`BenchConfig`, the options of a run),
:mod:`~pipelines.bench.rows` (the systems to run), :mod:`~pipelines.bench.cache` (what a rerun reuses: the
embedding cache and the index), :mod:`~pipelines.bench.measure` (queries, rankings, latency, storage),
:mod:`~pipelines.bench.report` (tables, results.json/csv, TREC runs, chart, significance),
:mod:`~pipelines.bench.run` (:func:`run_benchmark`, a few named steps) and :mod:`~pipelines.bench.cli`.
"""

from __future__ import annotations

from .cache import BACKENDS, CorpusVectors, _accelerate, _index_keys, build_index, open_store
from .cli import add_parser, cmd_bench, config_from_args
from .config import DEFAULT_OUT, BenchConfig, _is_none, _load_encoder
from .measure import (
    TIE_TOLERANCE,
    canonical_order,
    disk_usage,
    fused_by_label,
    latency_stats,
    rank_scores,
    search_options,
    time_row,
)
from .report import SIGNIFICANCE_LEVEL, BenchResult, RowResult, format_markdown, plot_chart, write_outputs
from .rows import CHANNEL_ORDER, RowSpec, parse_hybrid, parse_weights, plan_rows
from .run import run_benchmark

__all__ = [
    "BACKENDS",
    "CHANNEL_ORDER",
    "DEFAULT_OUT",
    "SIGNIFICANCE_LEVEL",
    "TIE_TOLERANCE",
    "BenchConfig",
    "BenchResult",
    "CorpusVectors",
    "RowResult",
    "RowSpec",
    "_accelerate",
    "_index_keys",
    "_is_none",
    "_load_encoder",
    "add_parser",
    "build_index",
    "cmd_bench",
    "config_from_args",
    "canonical_order",
    "disk_usage",
    "format_markdown",
    "fused_by_label",
    "latency_stats",
    "open_store",
    "parse_hybrid",
    "parse_weights",
    "plan_rows",
    "plot_chart",
    "rank_scores",
    "run_benchmark",
    "search_options",
    "time_row",
    "write_outputs",
]
