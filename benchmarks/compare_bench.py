"""Compare the same rows of two ``hybrid-search bench`` outputs, with a paired randomisation test per row.

``bench`` tests every row against the best single channel of its own run. Whether a fine-tuned model beats
its base is a question across two runs: this script reads both runs' TREC files (``OUT/runs/*.trec``),
scores them per query with ir_measures against the same qrels, and tests each row present in both:

    hybrid-search bench --dataset ../shared/data/scifact --split test --sparse splade-tiny --out runs/base
    hybrid-search bench --dataset ../shared/data/scifact --split test --sparse runs/ft-splade --out runs/ft
    python benchmarks/compare_bench.py runs/base runs/ft --dataset ../shared/data/scifact --split test

It prints a Markdown table (row, nDCG@10 of A and B, the difference in points, p) and, with ``--json``, the
same as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hybrid_search.dataset import load_dataset
from hybrid_search.metrics import evaluate_per_query, paired_significance
from hybrid_search.trec import read_trec_run


def row_runs(folder: Path) -> dict[str, Path]:
    """``{row tag: TREC run file}`` of one bench output folder."""
    runs = folder / "runs"
    if not runs.is_dir():
        raise SystemExit(f"error: {folder} has no runs/ folder: pass a `hybrid-search bench --out` folder")
    return {p.stem: p for p in sorted(runs.glob("*.trec"))}


def compare(a: Path, b: Path, qrels: dict[str, dict[str, int]], rel_threshold: int = 1) -> list[dict[str, Any]]:
    """Per row tag present in both folders: nDCG@10 of A and B, B - A, and the paired test's p-value."""
    runs_a, runs_b = row_runs(a), row_runs(b)
    rows = []
    for tag in [t for t in runs_a if t in runs_b]:
        per_a = evaluate_per_query(read_trec_run(runs_a[tag]), qrels, rel_threshold=rel_threshold)["nDCG@10"]
        per_b = evaluate_per_query(read_trec_run(runs_b[tag]), qrels, rel_threshold=rel_threshold)["nDCG@10"]
        common = sorted(set(per_a) & set(per_b))
        mean_a = sum(per_a[q] for q in common) / len(common)
        mean_b = sum(per_b[q] for q in common) / len(common)
        rows.append(
            {
                "row": tag,
                "queries": len(common),
                "nDCG@10 A": mean_a,
                "nDCG@10 B": mean_b,
                "difference": mean_b - mean_a,
                "p_value": paired_significance(per_a, per_b),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("a", type=Path, help="bench output folder of system A (the baseline)")
    parser.add_argument("b", type=Path, help="bench output folder of system B")
    parser.add_argument("--dataset", required=True, help="the dataset both were run on")
    parser.add_argument("--split", default="test", help="its qrels split (default test)")
    parser.add_argument("--rel-threshold", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    qrels = load_dataset(args.dataset, split=args.split).qrels
    rows = compare(args.a, args.b, qrels, args.rel_threshold)
    if not rows:
        print(f"error: {args.a} and {args.b} have no row in common", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"A = {args.a}, B = {args.b}; nDCG@10 on {args.dataset} ({args.split}); paired randomisation test")
    print("\n| row | nDCG@10 A | nDCG@10 B | B - A (points) | p |\n|---|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['row']} | {r['nDCG@10 A'] * 100:.2f} | {r['nDCG@10 B'] * 100:.2f} | "
            f"{r['difference'] * 100:+.2f} | {r['p_value']:.4f} |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
