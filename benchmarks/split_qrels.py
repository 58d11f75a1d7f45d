"""Split one qrels file of a BEIR folder by query into two, for choosing a recipe without its test split.

``finetune`` holds out training *rows* for its validation loss; a held-out query's other judged passages can still
sit in training, which flatters the score. This writes a BEIR folder whose ``qrels/`` has two disjoint halves of
one split, by query id (``sha256(id) % every == 0`` goes to the held-out half, so a query always lands on the same
side), with the corpus and queries linked (or copied where links are not allowed):

    python benchmarks/split_qrels.py ../shared/data/scifact --split train --out /tmp/scifact-val
    hybrid-search finetune ... --train /tmp/scifact-val --train-split trainA --eval /tmp/scifact-val --eval-split trainB
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
from pathlib import Path

from hybrid_search.trec import read_trec_qrels


def held_out(query_id: str, every: int) -> bool:
    """Whether ``query_id`` goes to the held-out half: a stable hash, so the split never depends on file order."""
    return int(hashlib.sha256(query_id.encode("utf-8")).hexdigest(), 16) % every == 0


def split_qrels(
    qrels: dict[str, dict[str, int]], every: int
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, int]]]:
    """``(kept, held_out)``: the judged queries divided by :func:`held_out`, each with all its judgements."""
    kept: dict[str, dict[str, int]] = {}
    held: dict[str, dict[str, int]] = {}
    for query_id, judged in qrels.items():
        (held if held_out(query_id, every) else kept)[query_id] = judged
    return kept, held


def write_beir_qrels(qrels: dict[str, dict[str, int]], path: Path) -> None:
    """BEIR's qrels TSV: a header row, then ``query-id corpus-id score`` rows."""
    rows = [f"{q}\t{d}\t{grade}" for q, judged in qrels.items() for d, grade in judged.items()]
    path.write_text("\n".join(["query-id\tcorpus-id\tscore", *rows]) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", type=Path, help="a BEIR folder")
    parser.add_argument("--split", default="train", help="the qrels split to divide (default train)")
    parser.add_argument("--every", type=int, default=5, help="one query in EVERY is held out (default 5)")
    parser.add_argument("--out", type=Path, required=True, help="the new BEIR folder")
    args = parser.parse_args(argv)
    source = args.dataset / "qrels" / f"{args.split}.tsv"
    if not source.is_file():
        parser.error(f"no qrels file {source}")
    if args.every < 2:
        parser.error("--every must be at least 2")
    kept, held = split_qrels(read_trec_qrels(source), args.every)
    (args.out / "qrels").mkdir(parents=True, exist_ok=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        target = args.out / name
        if not target.exists():
            try:
                target.symlink_to((args.dataset / name).resolve())
            except OSError:
                shutil.copyfile(args.dataset / name, target)
    write_beir_qrels(kept, args.out / "qrels" / f"{args.split}A.tsv")
    write_beir_qrels(held, args.out / "qrels" / f"{args.split}B.tsv")
    print(f"{args.out}: {args.split}A {len(kept)} queries, {args.split}B {len(held)} queries")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
