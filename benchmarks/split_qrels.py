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


def held_out(query_id: str, every: int) -> bool:
    """Whether ``query_id`` goes to the held-out half: a stable hash, so the split never depends on file order."""
    return int(hashlib.sha256(query_id.encode("utf-8")).hexdigest(), 16) % every == 0


def split_lines(lines: list[str], every: int) -> tuple[list[str], list[str], str | None]:
    """``(kept, held_out, header)`` qrels lines; the header row, if any, is kept for both halves."""
    rows = [line for line in lines if line.strip()]
    header = rows[0] if rows and not rows[0].split("\t")[-1].strip().lstrip("-").isdigit() else None
    body = rows[1:] if header is not None else rows
    kept = [line for line in body if not held_out(line.split("\t")[0], every)]
    return kept, [line for line in body if held_out(line.split("\t")[0], every)], header


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
    kept, held, header = split_lines(source.read_text(encoding="utf-8").splitlines(), args.every)
    (args.out / "qrels").mkdir(parents=True, exist_ok=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        target = args.out / name
        if not target.exists():
            try:
                target.symlink_to((args.dataset / name).resolve())
            except OSError:
                shutil.copyfile(args.dataset / name, target)
    for suffix, lines in (("A", kept), ("B", held)):
        (args.out / "qrels" / f"{args.split}{suffix}.tsv").write_text(
            "\n".join(([header] if header else []) + lines) + "\n", encoding="utf-8"
        )
    queries = {name: len({line.split("\t")[0] for line in lines}) for name, lines in (("A", kept), ("B", held))}
    print(f"{args.out}: {args.split}A {queries['A']} queries, {args.split}B {queries['B']} queries")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
