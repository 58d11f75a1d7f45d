"""``tune``'s numpy nDCG@10 kernel against ir_measures on a whole grid: same values, and how much faster.

    python benchmarks/tune_kernel.py --rankings .hybrid-search/tune/scifact --dataset ../shared/data/scifact

Reads the channel rankings a ``tune`` run cached (``rankings-*.npz`` under its ``--out``), builds the
candidate table of the ``--split`` queries, and scores every setting of the grid twice: with
:class:`~hybrid_search.tuning.NdcgKernel` (what ``tune`` uses for the grid) and with ir_measures through
:class:`~hybrid_search.tuning.NdcgScorer` (what it used before). The last line is
``settings=N queries=Q max_abs_diff=D kernel_s=K ir_measures_s=I speedup=X``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from hybrid_search.dataset import load_dataset
from hybrid_search.tuning import CandidateTable, NdcgScorer, candidate_space, fused_top, score_settings
from pipelines.tune import read_rankings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rankings", type=Path, required=True, help="the tune's --out folder")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", default="train")
    args = parser.parse_args()

    (path,) = args.rankings.glob("rankings-*.npz")
    rankings = read_rankings(path).as_rankings()
    data = load_dataset(args.dataset, split=args.split)
    qids = [q for q in data.judged_queries if data.queries.get(q, "").strip()]
    qrels = {q: data.qrels[q] for q in qids}
    settings = candidate_space(list(rankings))

    table = CandidateTable.build(rankings, qids)
    start = time.perf_counter()
    kernel = score_settings(table, settings, qrels)
    kernel_s = time.perf_counter() - start

    table = CandidateTable.build(rankings, qids)
    scorer = NdcgScorer(qrels)
    start = time.perf_counter()
    exact = np.stack([scorer(table.qids, fused_top(table, s)) for s in settings])
    exact_s = time.perf_counter() - start

    diff = float(np.abs(kernel - exact).max())
    print(
        f"settings={len(settings)} queries={len(qids)} max_abs_diff={diff:.3g} "
        f"kernel_s={kernel_s:.2f} ir_measures_s={exact_s:.2f} speedup={exact_s / kernel_s:.1f}"
    )


if __name__ == "__main__":
    main()
