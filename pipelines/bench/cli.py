"""``hybrid-search bench`` on the command line: the parser, and the command that runs :func:`run_benchmark`."""

from __future__ import annotations

import argparse
from typing import Any

from hybrid_search.constants import DEFAULT_RRF_K
from hybrid_search.encoders.dense import BACKENDS as DENSE_BACKENDS
from hybrid_search.jsonout import dumps
from hybrid_search.rerank import Reranker

from .cache import BACKENDS
from .config import DEFAULT_OUT, BenchConfig, _load_encoder
from .run import run_benchmark


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hybrid-search bench`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "bench",
        help="benchmark BM25 / sparse / dense / hybrid (+ reranker) on a retrieval dataset",
        description="Encode a dataset's corpus (cached), index it, run every judged query through each "
        "system and print a table of nDCG@10, MRR@10, MAP, R@100, latency and index size. "
        "Writes results.json, results.csv, TREC runs and chart.png under --out.",
    )
    _dataset_arguments(p)
    _model_arguments(p)
    _row_arguments(p)
    _retrieval_arguments(p)
    _output_arguments(p)
    from hybrid_search.device import add_argument as add_device_argument

    add_device_argument(p)
    p.set_defaults(func=cmd_bench)
    return p


def _dataset_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        required=True,
        help="BEIR folder, NanoBEIR name (nano-msmarco, nano-nq, ...), Hub id owner/name, "
        "or a local folder laid out like a Hub dataset",
    )
    p.add_argument("--split", default="test", help="qrels split of a BEIR folder (default test)")
    p.add_argument(
        "--rel-threshold",
        type=int,
        default=1,
        help="minimum grade counted relevant by MRR, MAP and recall (default 1; TREC DL uses 2)",
    )
    p.add_argument("--max-queries", type=int, help="evaluate only the first N judged queries")


def _model_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--sparse", default="splade-tiny", help="sparse model, or 'none' (default splade-tiny)")
    p.add_argument("--dense", default="minilm", help="dense model, or 'none' (default minilm)")
    p.add_argument(
        "--dense-backend",
        default=None,
        choices=DENSE_BACKENDS,
        help="dense inference: auto (ONNX Runtime float32 where it verifies, else PyTorch), torch, "
        "onnx, or onnx-int8 (faster, not identical; default auto, or $HYBRID_SEARCH_DENSE_BACKEND)",
    )
    p.add_argument("--reranker", metavar="MODEL", help="cross-encoder (folder or Hub id): adds '+ reranker' rows")
    p.add_argument("--rerank-top-n", type=int, default=100, help="candidates the reranker rescores (default 100)")


def _row_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--hybrid", help="channel combinations to fuse, e.g. sparse+dense,sparse+dense+bm25 (default sparse+dense)"
    )
    p.add_argument(
        "--fusion",
        default="rrf",
        help="fusion methods for the hybrid rows: rrf,dbsf,convex,zscore, and 'tuned' for a row of the fusion "
        "`tune` chooses on --tune-split (default rrf; a tuned fusion the index carries always gets its row)",
    )
    p.add_argument(
        "--tune-split", default="train", help="qrels split --fusion tuned learns on (default train; not --split)"
    )
    p.add_argument(
        "--weighted-rrf",
        action="append",
        default=[],
        metavar="CH=W,CH=W",
        help="add a weighted-RRF row, e.g. sparse=2,dense=1 (repeatable)",
    )
    p.add_argument("--no-bm25", action="store_true", help="leave out the BM25 row")


def _retrieval_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--index-backend",
        default="qdrant-edge",
        choices=BACKENDS,
        help="qdrant-edge: exact-search index folder under --out (default); qdrant-local: qdrant-client in memory",
    )
    p.add_argument("--client-fusion", action="store_true", help="fuse in Python instead of in the engine")
    p.add_argument(
        "--top-k",
        type=int,
        help="cut rankings to this many hits before evaluation (default: all retrieved, i.e. a "
        "channel's top --prefetch-k and a fusion's whole candidate list)",
    )
    p.add_argument(
        "--prefetch-k", type=int, default=100, help="hits retrieved per channel, also before fusion (default 100)"
    )
    p.add_argument("--rrf-k", type=float, default=DEFAULT_RRF_K, help="RRF constant, ranks from 1 (default 60)")
    p.add_argument(
        "--query-threads",
        type=int,
        default=1,
        help="torch threads while queries are timed (default 1; 0 leaves torch's default)",
    )
    p.add_argument(
        "--sparse-ann",
        choices=["seismic"],
        help="serve the sparse channel from a Seismic accelerator built beside the index "
        "(approximate candidates, exact scores) instead of exact search",
    )


def _output_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", help=f"output folder (default {DEFAULT_OUT}/DATASET)")
    p.add_argument("--no-cache", action="store_true", help="encode the corpus even if its embeddings are cached")
    p.add_argument("--cache-dir", help="embedding cache folder (default: the model cache's embeddings/ folder)")
    p.add_argument("--json", action="store_true", help="print results.json to stdout instead of the table")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    """The :class:`BenchConfig` of parsed CLI arguments, with the models loaded on ``--device``."""
    from hybrid_search.device import resolve_device

    device = resolve_device(args.device)
    return BenchConfig(
        sparse=_load_encoder("sparse", args.sparse, device=device),
        dense=_load_encoder("dense", args.dense, backend=args.dense_backend, device=device),
        reranker=Reranker.load(args.reranker, device=device) if args.reranker else None,
        hybrid=args.hybrid,
        fusions=[f.strip() for f in args.fusion.split(",") if f.strip()],
        tune_split=args.tune_split,
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


def cmd_bench(args: argparse.Namespace) -> int:
    """Run the benchmark from parsed CLI arguments and print the table (or JSON)."""
    import sys

    result = run_benchmark(args.dataset, config_from_args(args))
    if args.json:
        print(dumps(result.to_dict()))
    else:
        print(result.markdown())
    hits = ", ".join(f"{k} {'cached' if v else 'encoded'}" for k, v in result.cache.items())
    print(
        f"wrote {result.outputs['json']}, results.csv, results.md, chart.png and runs/ "
        f"({hits}; index {'reused' if result.index['reused'] else 'built'}; {result.timings_s['total']:.1f}s)",
        file=sys.stderr,
    )
    return 0
