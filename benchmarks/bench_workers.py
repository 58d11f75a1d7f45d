"""Indexing throughput with N encoding worker processes against one, measured in the same run.

    nice -n 10 python benchmarks/bench_workers.py [--docs 400] [--dense minilm|none] [--workers 1,2] [--rounds 2]

Indexes the first ``--docs`` MS MARCO passages of ``../shared/data/msmarco-dl19-5k`` into a fresh Qdrant Edge
folder with ``pipelines.indexing.index_corpus`` (the code behind ``hybrid-search index --workers N``), once
per worker count and round, alternating the order (1, 2, 2, 1, ...) so that a drift in the machine's load
does not favour one side. Each run reports documents/s over the whole ``index_documents`` call (the worker
processes' start and model loading included, as a user sees it) and the load average when it started: on a
shared machine, more processes also win a larger share of contended cores, so read the ratio with it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CORPUS = ROOT.parent / "shared" / "data" / "msmarco-dl19-5k" / "corpus.jsonl"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=400)
    parser.add_argument("--sparse", default="splade-tiny")
    parser.add_argument("--dense", default="minilm")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    from pipelines.indexing import index_corpus
    from pipelines.workers import ScaleOptions, cpu_cores

    work = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    corpus = work / "corpus.jsonl"
    with CORPUS.open(encoding="utf-8") as src, corpus.open("w", encoding="utf-8") as out:
        for _, line in zip(range(args.docs), src):
            out.write(line)
    counts = [int(w) for w in args.workers.split(",")]
    order = [w for r in range(args.rounds) for w in (counts if r % 2 == 0 else counts[::-1])]
    print(
        f"docs={args.docs} sparse={args.sparse} dense={args.dense} batch={args.batch_size} cores={cpu_cores()}",
        flush=True,
    )
    results: dict[int, list[float]] = {w: [] for w in counts}
    try:
        for run, workers in enumerate(order):
            location = work / f"index-{run}"
            load = os.getloadavg()[0]
            report = index_corpus(
                corpus,
                str(location),
                sparse=args.sparse,
                dense=None if args.dense == "none" else args.dense,
                batch_size=args.batch_size,
                progress=False,
                scale=ScaleOptions(device="cpu", workers=workers),
            )
            results[workers].append(report.docs_per_second)
            print(
                json.dumps(
                    {
                        "workers": workers,
                        "docs_per_s": round(report.docs_per_second, 2),
                        "seconds": round(report.seconds, 1),
                        "load_average_1m": round(load, 1),
                    }
                ),
                flush=True,
            )
            shutil.rmtree(location, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(results[counts[0]])
    for workers in counts:
        median = statistics.median(results[workers])
        print(
            f"workers={workers}: median {median:.1f} docs/s over {len(results[workers])} runs "
            f"({', '.join(f'{v:.1f}' for v in results[workers])}); {median / base:.2f}x workers={counts[0]}"
        )


if __name__ == "__main__":
    main()
