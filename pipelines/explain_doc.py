"""``hybrid-search explain "QUERY" --doc ID``: why a document is, or is not, in the top k.

A thin layer over :func:`hybrid_search.why_not.why_not`: the document's exact score and rank in each channel
(beyond the prefetch depth too), its fused score, the k-th hit's score it had to beat, the query tokens it
matches and lacks, and the prefetch depth or channel weight at which it would have made the page. The
fusion is the index's learned one (``hybrid-search tune --index``) unless flags say otherwise.
"""

from __future__ import annotations

import argparse
from typing import Any

from hybrid_search.fusion import FUSION_METHODS
from hybrid_search.jsonout import dumps


def format_report(report: Any, *, tokens: int = 8) -> str:
    """The report as text."""
    setting = report.setting
    how = (
        f"{setting['method']} over {'+'.join(setting['channels'])}"
        if len(setting["channels"]) > 1
        else f"{setting['channels'][0]} alone"
    )
    lines = [
        f'query: "{report.query}"  doc: {report.doc_id}  fusion: {how}, prefetch {setting["prefetch_k"]}, k={report.k}'
    ]
    for channel, s in report.channels.items():
        where = (
            "in the prefetch" if s.in_prefetch else ("beyond the prefetch" if s.returned else "not returned (score 0)")
        )
        lines.append(f"  {channel:<6} rank {s.rank:>6}  score {s.score:.4f}  ({where})")
    if report.in_top_k:
        lines.append(f"  fused: rank {report.fused_rank}, score {report.fused_score:.6f}: in the top {report.k}")
    else:
        fused = f"rank {report.fused_rank}, score {report.fused_score:.6f}" if report.fused_rank else "not a candidate"
        had = f"{report.fused_score_if_prefetched:.6f}" if report.fused_score_if_prefetched is not None else "–"
        kth = f"{report.kth_score:.6f}" if report.kth_score is not None else "– (fewer than k candidates)"
        lines.append(
            f"  fused: {fused}; with every channel searched down to it: {had}; the #{report.k} hit scored {kth}"
        )
        depth = report.enters_at_prefetch_k
        lines.append(
            f"  enters the top {report.k} at prefetch depth: {depth if depth else 'none of its channel ranks'}"
        )
        for channel, weight in report.enters_at_weight.items():
            lines.append(
                f"  enters with {channel} weight: {weight:g}"
                if weight is not None
                else f"  no {channel} weight up to ×128 lifts it (or it is no candidate there)"
            )
    if report.matched_tokens:
        cells = [f"{r.token}{'*' if r.expansion else ''} {r.contribution:.2f}" for r in report.matched_tokens[:tokens]]
        lines.append(f"  matched sparse tokens: {', '.join(cells)}")
    if report.missing_tokens:
        lines.append("  query tokens it lacks: " + ", ".join(f"{t} {w:.2f}" for t, w in report.missing_tokens[:tokens]))
    lines.append(
        f"  query words in its text: {', '.join(report.matched_words) or '–'}; "
        f"missing: {', '.join(report.missing_words) or '–'}"
    )
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines)


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hybrid-search explain`` on the CLI's subparsers."""
    from pipelines.cli import DEMO_INDEX, LOCATION_HELP, add_credential_arguments

    p = subparsers.add_parser(
        "explain",
        help="why is (or isn't) a document in the top k: its rank and score per channel and fused",
        description="Explain one document for one query: its exact rank and score in each channel (even beyond "
        "the prefetch depth), its fused score against the k-th hit's, the query tokens it matches and lacks, and "
        "the prefetch depth or weight that would have put it in the top k.",
    )
    p.add_argument("query")
    p.add_argument("--doc", required=True, metavar="ID", help="the document's corpus id")
    p.add_argument("--index", default=DEMO_INDEX, help=LOCATION_HELP)
    p.add_argument("-k", "--k", type=int, default=10, help="the page size it did or did not make (default 10)")
    p.add_argument("--fusion", choices=FUSION_METHODS, help="fusion method (default: the index's tuned one, else rrf)")
    p.add_argument("--rrf-k", type=float, help="RRF constant (default: the index's, else 60)")
    p.add_argument("--weight", action="append", metavar="CHANNEL=W", help="per-channel fusion weight, repeatable")
    p.add_argument(
        "--channels",
        help="channels fused, e.g. sparse,dense,bm25, or one alone (default: the index's, else what search fuses)",
    )
    p.add_argument("--prefetch-k", type=int, help="candidates per channel (default: the index's, else 100)")
    p.add_argument("--tokens", type=int, default=8, help="tokens to show (default 8)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    add_credential_arguments(p)
    p.set_defaults(func=cmd_explain)
    return p


def explain_options(meta: Any, args: argparse.Namespace) -> Any:
    """The :class:`~hybrid_search.options.SearchOptions` ``explain`` explains: the index's defaults (its tuned
    fusion, if any) with the flags given on top, read the way ``search`` reads them. Channels named with
    ``--channels`` are what is searched: one alone, or several fused."""
    from hybrid_search.options import SearchOptions, parse_channels

    channels = parse_channels(args.channels)
    mode = None if channels is None else ("hybrid" if len(channels) > 1 else channels[0])
    given = {
        "mode": mode,
        "channels": channels if mode == "hybrid" else None,
        "fusion": args.fusion,
        "rrf_k": args.rrf_k,
        "weights": args.weight,
        "prefetch_k": args.prefetch_k,
        "k": args.k,
    }
    return SearchOptions.for_index(meta, **given)


def cmd_explain(args: argparse.Namespace) -> int:
    from hybrid_search.why_not import why_not_for
    from pipelines.cli import _index_options, build_searcher

    if not args.query.strip():
        raise ValueError("the query is empty; type some words to explain")
    if args.k <= 0:
        raise ValueError("k must be positive")
    searcher = build_searcher(args.index, None, None, None, index_options=_index_options(args, args.index))
    try:
        options = explain_options(searcher.index.meta, args)
        report = why_not_for(searcher, args.query, args.doc, options)
    finally:
        searcher.index.close()
    if args.json:
        print(dumps({**report.to_dict(), "fusion_source": options.fusion_source}))
    else:
        print(format_report(report, tokens=args.tokens))
        print(f"  fusion settings from {options.fusion_source}")
    return 0
