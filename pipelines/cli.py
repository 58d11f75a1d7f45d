"""The ``hybrid-search`` command line: a thin layer over the library and the pipelines."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hybrid_search.jsonout import dumps

DEMO_INDEX = ".hybrid-search/demo-index"
LOCATION_HELP = (
    "index location: a folder (Qdrant Edge, the default), qdrant-local:PATH, qdrant+http(s)://HOST:6333, "
    "opensearch+http(s)://HOST:9200/INDEX or elasticsearch+http(s)://HOST:9200/INDEX"
)
DATA_DIR = Path(__file__).resolve().parent / "data"


# --- helpers ------------------------------------------------------------------------------------
def add_credential_arguments(parser: argparse.ArgumentParser) -> None:
    from indexers.credentials import add_arguments

    add_arguments(parser)


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (a batch of 0 would index nothing and exit 0)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_device_argument(parser: Any, *, several: bool = False) -> None:
    from hybrid_search.device import add_argument

    add_argument(parser, several=several)


def _index_options(args: argparse.Namespace, location: str) -> dict[str, Any]:
    """Credentials for a server location, from the flags or the HYBRID_SEARCH_<ENGINE>_* variables."""
    from indexers import parse_location
    from indexers.credentials import from_arguments

    engine, target = parse_location(location)
    if not target.startswith(("http://", "https://")):
        return {}
    return {"credentials": from_arguments(engine, args, url=target)}


def format_hit(hit: Any, *, tokens: int = 8, width: int = 100, rrf_k: float | None = None) -> str:
    """A hit as a few lines of text: rank, id, scores, title/snippet and its token overlap.

    Corpus text (ids, titles, passages, tokens) goes through :func:`~pipelines.output.terminal_safe`: a
    document cannot clear, recolour or retitle the terminal it is printed on.
    """
    from pipelines.output import terminal_safe

    ranks = " ".join(f"{c}#{r}" for c, r in sorted(hit.channel_ranks.items()))
    head = f"{hit.rank:>2}. {terminal_safe(hit.id)}  score={hit.score:.4f}"
    if hit.rerank_score is not None:
        head += f"  rerank={hit.rerank_score:.3f}"
    if ranks:
        head += f"  [{ranks}]"
    lines = [head]
    if hit.fusion_terms:
        lines.append(f"    {format_fusion(hit, rrf_k)}")
    doc = hit.document
    if doc is not None:
        body = f"{doc.title} — {doc.text}" if doc.title else doc.text
        lines.append(terminal_safe(textwrap.shorten(body, width=width, placeholder=" …")).join(["    ", ""]))
    if hit.explanation:
        total = sum(r.contribution for r in hit.explanation)
        cells = [
            f"{terminal_safe(r.token)}{'*' if r.expansion else ''} {r.query_weight:.2f}×{r.doc_weight:.2f}"
            f"={r.contribution:.2f}"
            for r in hit.explanation[:tokens]
        ]
        more = len(hit.explanation) - tokens
        lines.append(f"    overlap (sparse={total:.2f}): " + ", ".join(cells) + (f", +{more} more" if more > 0 else ""))
    return "\n".join(lines)


def format_fusion(hit: Any, rrf_k: float | None = None) -> str:
    """A hit's fused score as the sum of its channels' terms, e.g. ``sparse #2 (12.31): 1/(60+2) = 0.0161 + …``."""
    from hybrid_search.fusion import describe_terms

    total = hit.fused_score if hit.fused_score is not None else sum(t.term for t in hit.fusion_terms)
    return f"fusion: {describe_terms(hit.fusion_terms, rrf_k)} = {total:.4f}"


def format_timings(result: Any) -> str:
    """Stages in milliseconds, the encoders' parts inside ``encode``, and the total measured once."""
    from hybrid_search.retrieval import TIMING_PARENTS

    parts = []
    for stage, ms in result.timings_ms.items():
        if stage in TIMING_PARENTS and TIMING_PARENTS[stage] in result.timings_ms:
            continue
        children = [
            f"{c.split('_', 1)[1]}={v:.1f}" for c, v in result.timings_ms.items() if TIMING_PARENTS.get(c) == stage
        ]
        parts.append(f"{stage}={ms:.1f}ms" + (f" ({', '.join(children)})" if children else ""))
    return "  ".join(parts + [f"total={result.total_ms:.1f}ms"])


def print_result(result: Any, *, tokens: int = 8) -> None:
    from pipelines.output import terminal_safe

    how = f"mode={result.mode}"
    if result.fused_by:
        options = result.options or {}
        method = options.get("fusion", "rrf")
        how += f"  fusion={method}" + (f" k={options.get('rrf_k', 60):g}" if method == "rrf" else "")
        how += f" by the {result.fused_by}, settings from {result.fusion_source}"
    print(f'query: "{terminal_safe(result.query)}"  {how}')
    if result.query_tokens:
        shown = ", ".join(f"{terminal_safe(t)} {w:.2f}" for t, w in result.query_tokens[:12])
        print(f"  query expands to: {shown}")
    if not result.hits:
        print("  no hits")
    for hit in result.hits:
        print(format_hit(hit, tokens=tokens, rrf_k=(result.options or {}).get("rrf_k")))
    print(f"  timings: {format_timings(result)}")
    print("  (* = expansion token: matched through the model's expansion, not in the document text)")


# --- commands -----------------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    from hybrid_search import models

    if args.action == "pull":
        for name in args.names or ["splade-tiny", "minilm"]:
            path = models.pull(name, force=args.force)
            print(f"{name}: {path}")
        return 0
    for row in models.list_models():
        print(f"{row['name']:<12} {row['kind']:<6} {row['available']:<32} {row['description']}")
    print("Any sentence-transformers model folder or Hugging Face Hub id also works (the Hub needs the network).")
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from pipelines.indexing import index_corpus
    from pipelines.workers import ScaleOptions, Shard

    scale = ScaleOptions(
        device=args.device, workers=args.workers, shard=Shard.parse(args.shard) if args.shard else None
    )

    reader_options = {
        k: v
        for k, v in {
            "id_field": args.id_field,
            "text_field": args.text_field,
            "title_field": args.title_field,
            "strict": args.strict,
            "format": args.format,
        }.items()
        if v not in (None, False)
    }
    from hybrid_search.encoders import SparseEncoder

    sparse = None
    if args.sparse != "none":
        sparse = SparseEncoder.load(args.sparse, max_active_dims=args.max_active_dims, device=scale.main_device())
    report = index_corpus(
        args.corpus,
        args.index,
        sparse=sparse,
        dense=None if args.dense == "none" else args.dense,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        prune=args.prune,
        index_options=_index_options(args, args.index),
        sparse_ann=None if args.sparse_ann in (None, "none") else args.sparse_ann,
        scale=scale,
        **reader_options,
    )
    if args.json:
        print(dumps({**report.to_dict(), "shard": args.shard}))
    else:
        from pipelines.output import terminal_safe

        print((f"shard {scale.shard}: " if scale.shard else "") + terminal_safe(report.summary()))
        if report.corpus.get("summary"):
            print(f"corpus: {terminal_safe(report.corpus['summary'])}")
        for problem in report.corpus.get("problems", []):  # they quote the corpus: its ids and bad bytes
            print(f"  skipped or repaired: {terminal_safe(problem)}")
        if report.corpus.get("problems_omitted"):
            print(f"  ... and {report.corpus['problems_omitted']} more")
    return 0


def build_searcher(
    index_location: str,
    sparse: str | None,
    dense: str | None,
    rerank: str | None,
    *,
    exact: bool = False,
    index_options: dict[str, Any] | None = None,
    device: str | None = None,
):
    from hybrid_search.device import resolve_device
    from hybrid_search.encoders import DenseEncoder, SparseEncoder
    from hybrid_search.rerank import Reranker
    from hybrid_search.retrieval import HybridSearcher
    from indexers import open_index

    device = resolve_device(device)  # a bad --device is refused before the index is opened
    index = open_index(index_location, exact=exact, **(index_options or {}))
    from hybrid_search.models import query_models

    sparse_name, dense_name, cap = query_models(index.meta, sparse, dense)
    return HybridSearcher(
        index,
        sparse=SparseEncoder.load(sparse_name, max_active_dims=cap, device=device) if sparse_name else None,
        dense=DenseEncoder.load(dense_name, device=device) if dense_name else None,
        reranker=Reranker.load(rerank, device=device) if rerank else None,
    )


def given_search_options(args: argparse.Namespace) -> dict[str, Any]:
    """The search settings the user gave as flags (unset ones are left out, so the index's defaults apply)."""
    from hybrid_search.options import parse_channels, parse_filters, parse_weights

    given = {
        "k": args.k,
        "mode": args.mode,
        "fusion": args.fusion,
        "rrf_k": args.rrf_k,
        "weights": parse_weights(args.weight),
        "filters": parse_filters(args.filter),
        "prefetch_k": args.prefetch_k,
        "channels": parse_channels(args.channels),
        "engine_fusion": False if args.client_fusion else None,
    }
    return {name: value for name, value in given.items() if value is not None}


def cmd_search(args: argparse.Namespace) -> int:
    from hybrid_search.options import SearchOptions
    from hybrid_search.retrieval import EmptyQueryError

    if not args.query.strip():
        raise EmptyQueryError("the query is empty; type some words to search for")
    given = given_search_options(args)
    SearchOptions(**given)  # bad values stop here, before the models load
    searcher = build_searcher(
        args.index,
        args.sparse,
        args.dense,
        args.rerank,
        index_options=_index_options(args, args.index),
        device=args.device,
    )
    try:
        result = searcher.search(args.query, SearchOptions.for_index(searcher.index.meta, **given))
    finally:
        searcher.index.close()
    if args.json:
        print(dumps(result.to_dict()))
    else:
        print_result(result, tokens=args.tokens)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Build the demo index from the shipped corpus (once) and run the example queries."""
    from pipelines.indexing import index_corpus

    corpus = args.corpus or str(DATA_DIR / "demo_corpus.jsonl")
    report = index_corpus(corpus, args.index, progress=not args.no_progress)
    print(report.summary())
    queries = args.queries or [q.strip() for q in (DATA_DIR / "demo_queries.txt").read_text().splitlines() if q.strip()]
    searcher = build_searcher(args.index, None, None, None)
    try:
        for query in queries:
            print()
            print_result(searcher.search(query, k=args.k, mode="hybrid"), tokens=6)
    finally:
        searcher.index.close()
    print(f'\nIndex: {args.index}. Try: hybrid-search search "your query" --index {args.index}')
    return 0


# --- parser -------------------------------------------------------------------------------------
def _add_search_args(p: argparse.ArgumentParser) -> None:
    from hybrid_search import constants as c

    # Fusion flags default to None: unset, the index's learned fusion (hybrid-search tune) or the defaults apply.
    p.add_argument("--index", default=DEMO_INDEX, help=LOCATION_HELP)
    p.add_argument("--mode", choices=c.MODES, help=f"what to search (default {c.DEFAULT_MODE})")
    p.add_argument("-k", "--k", type=int, help=f"hits to return (default {c.DEFAULT_K})")
    p.add_argument(
        "--fusion",
        choices=c.FUSION_METHODS,
        help=f"fusion method (default: the index's tuned one, else {c.DEFAULT_FUSION})",
    )
    p.add_argument("--rrf-k", type=float, help=f"RRF constant; ranks start at 1 (default {c.DEFAULT_RRF_K})")
    p.add_argument("--weight", action="append", metavar="CHANNEL=W", help="per-channel fusion weight, repeatable")
    p.add_argument(
        "--channels",
        help="channels a hybrid search fuses, e.g. sparse,dense,bm25 (default sparse,dense; "
        "on an index with one vector channel, it and bm25)",
    )
    p.add_argument(
        "--prefetch-k", type=int, help=f"candidates per channel before fusion (default {c.DEFAULT_PREFETCH_K})"
    )
    p.add_argument("--filter", action="append", metavar="FIELD=VALUE", help="metadata equality filter, repeatable")
    p.add_argument("--client-fusion", action="store_true", help="fuse in Python instead of in the engine")
    p.add_argument("--sparse", help="sparse model (default: the one the index was built with)")
    p.add_argument("--dense", help="dense model (default: the one the index was built with)")
    p.add_argument("--rerank", metavar="MODEL", help="rerank the top 50 with this cross-encoder (folder or Hub id)")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line; given ``argv``, only the command it runs is registered from its module.

    A command module imports what its command needs (``bench`` and ``finetune`` reach torch, seconds to
    import), so registering them all would make every command pay for all; ``--help``, a typo or no
    command registers every one, so the listing and argparse's "invalid choice" message stay whole.
    """
    parser = argparse.ArgumentParser(
        prog="hybrid-search",
        description="Hybrid sparse + dense search with fusion, reranking and token-level explanations.",
        epilog="Run 'hybrid-search COMMAND --help' for each command's options.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_add_index_command, _add_search_command, _add_models_command, _add_demo_command):
        add(sub)
    # Commands that live in their own modules register themselves.
    import importlib

    for module in _command_modules(argv, declared=sub.choices):
        importlib.import_module(module).add_parser(sub)
    return parser


def _command_modules(argv: Sequence[str] | None, declared: Any) -> list[str]:
    """The command modules to register for ``argv``: none for a command already ``declared``, the one its
    command lives in, else all of them."""
    words = [a for a in (sys.argv[1:] if argv is None else argv) if a not in ("-v", "--verbose")]
    if words and not words[0].startswith("-"):
        if words[0] in declared:
            return []
        if words[0] in _COMMAND_MODULES:
            return [_COMMAND_MODULES[words[0]]]
    return list(_COMMAND_MODULES.values())


def _add_index_command(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "index",
        help="index a corpus (JSONL, CSV, Parquet, BEIR folder, hf:dataset)",
        description="Encode a corpus and upsert it into an index. Reruns skip stored documents. "
        "Scale out with --workers (processes on this machine, one per --device) and "
        "--shard (one part of the corpus per machine, all into one server index).",
    )
    p.add_argument("corpus", help="JSONL/CSV/TSV/Parquet file, BEIR folder, or hf:owner/name")
    p.add_argument("--index", required=True, help=LOCATION_HELP)
    p.add_argument("--sparse", default="splade-tiny", help="sparse model, or 'none' (default splade-tiny)")
    p.add_argument("--dense", default="minilm", help="dense model, or 'none' (default minilm)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="documents encoded together (default 64)")
    p.add_argument(
        "--prune",
        action="store_true",
        help="afterwards delete the stored documents the corpus no longer has (listed in the report)",
    )
    p.add_argument("--max-active-dims", type=int, help="keep at most N non-zero dimensions per sparse vector")
    p.add_argument(
        "--sparse-ann",
        choices=["seismic", "none"],
        help="build an approximate sparse accelerator beside the index (seismic); search, bench "
        "and ui use it from the index's metadata, and later runs keep it fresh (see 'optimize')",
    )
    p.add_argument("--format", help="force the corpus format (jsonl, csv, tsv, parquet, beir, hf)")
    p.add_argument("--id-field"), p.add_argument("--text-field"), p.add_argument("--title-field")
    p.add_argument("--strict", action="store_true", help="stop at the first bad record instead of skipping it")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_scale_out_arguments(p)
    add_credential_arguments(p)
    p.set_defaults(func=cmd_index)


def _add_scale_out_arguments(p: argparse.ArgumentParser) -> None:
    scale = p.add_argument_group("devices and scale-out")
    add_device_argument(scale, several=True)
    scale.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="encoding processes (default: one per --device listed, i.e. 1); this process stays "
        "the single writer, in corpus order, so reruns stay idempotent and resumable",
    )
    scale.add_argument(
        "--shard",
        metavar="I/N",
        help="index only shard I of N (0 <= I < N) by a stable hash of the document id: run one "
        "per machine against the same server --index; each shard resumes on its own",
    )


def _add_search_command(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "search",
        help="search an index and show hits with their token overlaps",
        description="Search an index. Hits show per-channel ranks and the decoded sparse token overlap.",
    )
    p.add_argument("query")
    _add_search_args(p)
    p.add_argument("--tokens", type=int, default=8, help="overlap tokens to show per hit (default 8)")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    add_device_argument(p)
    add_credential_arguments(p)
    p.set_defaults(func=cmd_search)


def _add_models_command(subparsers: Any) -> None:
    p = subparsers.add_parser("models", help="list or pull the built-in offline models")
    p.add_argument("action", choices=["list", "pull"])
    p.add_argument("names", nargs="*", help="models to pull (default: all built-ins)")
    p.add_argument("--force", action="store_true", help="download again even if cached")
    p.set_defaults(func=cmd_models)


def _add_demo_command(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "demo",
        help="index the shipped demo corpus and run example searches",
        description="Build the demo index (once) and run example hybrid searches with token overlaps.",
    )
    p.add_argument("--index", default=DEMO_INDEX)
    p.add_argument("--corpus", help="use this corpus instead of the shipped demo corpus")
    p.add_argument("--queries", nargs="*", help="queries to run instead of the shipped examples")
    p.add_argument("-k", "--k", type=int, default=3)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_demo)


#: Each command that lives in a module of its own, and that module (it registers it with ``add_parser``).
_COMMAND_MODULES = {
    "bench": "pipelines.bench",
    "ui": "pipelines.serve",
    "finetune": "pipelines.finetune",
    "delete": "pipelines.delete",
    "optimize": "pipelines.optimize",
    "tune": "pipelines.tune",
    "explain": "pipelines.explain_doc",
}


def _known_errors() -> tuple[type[BaseException], ...]:
    from hybrid_search.corpus import CorpusError
    from hybrid_search.device import DeviceError
    from hybrid_search.index import IndexStateError
    from hybrid_search.models import ModelNotAvailableError
    from pipelines.workers import WorkerError

    errors: list[type[BaseException]] = [
        CorpusError,
        DeviceError,
        IndexStateError,
        ModelNotAvailableError,
        ValueError,
        FileExistsError,
        WorkerError,
    ]
    try:
        from hybrid_search.dataset import DatasetError

        errors.append(DatasetError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


def _quiet_model_loading() -> None:
    # transformers draws a progress bar per model load; it buries the output people came for. Both it and
    # huggingface_hub read this variable when first imported (importing transformers here to call its switch
    # would cost every command seconds); a value the user set stays. Where it is imported already (a library
    # caller, the tests), its switch is free.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def main(argv: Sequence[str] | None = None) -> int:
    from pipelines.output import error_line, print_traceback, use_redacting_formatter

    parser = build_parser(argv)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    use_redacting_formatter()  # no log line (or logged traceback) carries a password
    # Third-party libraries are noisy at INFO; keep --verbose about this project.
    for noisy in ("httpx", "sentence_transformers", "transformers", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The engine clients log every retry with a traceback; the error we print says it once.
    for client in ("opensearch", "elasticsearch", "elastic_transport"):
        logging.getLogger(client).setLevel(logging.INFO if args.verbose else logging.CRITICAL)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_model_loading()
    try:
        return int(args.func(args) or 0)
    except _known_errors() as error:
        print(error_line(error), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - an unexpected one keeps its traceback, with passwords masked
        print_traceback(error, sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
