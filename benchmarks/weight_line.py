"""Judge points on the straight line between a fine-tuned sparse model and the model it started from.

A fine-tune moves the weights from its start θ₀ to θ₁. Scoring ``θ₀ + λ (θ₁ − θ₀)`` for a few ``λ`` shows
whether training stopped short of the best point along its own change (the score still rises past ``λ`` = 1),
at it, or past it, and whether averaging with the start (``λ`` = 0.5, WiSE-FT) helps, at the cost of a few
evaluations and no training. The start is rebuilt as the run built it (an inference-free start's query
weights are the training corpus's IDF, not a file), and each point is judged on the run's own evaluation
split, so judge on a validation split (``benchmarks/split_qrels.py``), never on the split you report:

    hybrid-search finetune --arch inference-free --base splade-tiny --teacher hybrid \\
        --train DIR --train-split trainA --eval DIR --eval-split trainB --out runs/ft/val
    python benchmarks/weight_line.py runs/ft/val --lambdas 0.5 2

It prints a Markdown table (``λ``, nDCG@10, R@100, document active dimensions, the paired p-value against
the fine-tuned model) whose ``λ`` = 0 and 1 rows are the run's own before/after figures; ``--json`` prints
the same as JSON. ``--lambdas 0 1`` re-judges the two ends, a check that the start was rebuilt exactly.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hybrid_search.metrics import paired_significance
from hybrid_search.training import FinetuneConfig, SparseEvalResult, rebuild_start, weights_on_line
from hybrid_search.training.build import MLM_ARCHS
from hybrid_search.training.finetune import REPORT_FILE


def _row(lam: float, result: dict[str, Any], after: dict[str, Any], source: str) -> dict[str, Any]:
    per_query = result["extra"]["per_query_ndcg10"]
    return {
        "lambda": lam,
        "nDCG@10": result["metrics"]["nDCG@10"],
        "R@100": result["metrics"].get("R@100"),
        "document_active_dims": result["document_active_dims"],
        "p_vs_finetuned": None if lam == 1 else paired_significance(after["extra"]["per_query_ndcg10"], per_query),
        "source": source,
    }


def weight_line(run: Path, lambdas: list[float], *, cache: bool = True, progress: bool = True) -> dict[str, Any]:
    """The run's before/after rows and one judged row per ``lambdas`` value, sorted by ``λ``."""
    from sentence_transformers import SparseEncoder

    from hybrid_search.training.finetune import evaluate_model

    report = json.loads((run / REPORT_FILE).read_text(encoding="utf-8"))
    cfg = FinetuneConfig.from_dict(report["config"])
    if cfg.arch not in MLM_ARCHS or not cfg.eval:
        raise SystemExit(f"error: {run}: needs a splade or inference-free run with an evaluation split")
    start, eval_set = rebuild_start(cfg)
    end = SparseEncoder(str(run), device="cpu")
    start_weights, end_weights = start.state_dict(), {k: v.clone() for k, v in end.state_dict().items()}
    embedding_cache = None
    if cache:
        from pipelines.embedding_cache import EmbeddingCache

        embedding_cache = EmbeddingCache(progress=progress)
    after = report["after"]
    rows = {0.0: _row(0.0, report["before"], after, "run"), 1.0: _row(1.0, after, after, "run")}
    for lam in lambdas:
        end.load_state_dict(weights_on_line(start_weights, end_weights, lam))
        result = evaluate_model(
            end,
            eval_set,
            name=f"{run.name}-line",
            rel_threshold=cfg.rel_threshold,
            progress=progress,
            cache=embedding_cache,
        )
        rows[float(lam)] = _row(float(lam), result.to_dict(), after, "judged")
    return {
        "run": str(run),
        "eval": f"{cfg.eval} ({cfg.eval_split})",
        "queries": SparseEvalResult.from_dict(after).queries,
        "rows": [rows[k] for k in sorted(rows)],
    }


def _table(result: dict[str, Any]) -> str:
    lines = [
        f"{result['run']} on {result['eval']}, {result['queries']} queries",
        "",
        "| λ | nDCG@10 | R@100 | document dims | p vs λ = 1 | |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for row in result["rows"]:
        p = "–" if row["p_vs_finetuned"] is None else f"{row['p_vs_finetuned']:.3f}"
        lines.append(
            f"| {row['lambda']:g} | {100 * row['nDCG@10']:.2f} | {100 * (row['R@100'] or 0):.2f} "
            f"| {row['document_active_dims']:.0f} | {p} | {row['source']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a `hybrid-search finetune --out` folder (splade or inference-free)")
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.5, 2.0], help="points to judge (0.5 2)")
    parser.add_argument("--no-cache", action="store_true", help="encode the corpus at every point afresh")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a Markdown table")
    args = parser.parse_args(argv)
    if not (args.run / REPORT_FILE).is_file():
        parser.error(f"{args.run} has no {REPORT_FILE}: pass a `hybrid-search finetune --out` folder")
    result = weight_line(args.run, args.lambdas, cache=not args.no_cache, progress=not args.json)
    print(json.dumps(result, indent=2) if args.json else _table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
