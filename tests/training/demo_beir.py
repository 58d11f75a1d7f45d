"""A tiny BEIR folder from the shipped demo corpus, for the training tests that need ``train``/``test`` splits."""

from __future__ import annotations

import json
from pathlib import Path

from tests.paths import DEMO_CORPUS

QRELS_HEADER = "query-id\tcorpus-id\tscore\n"


def write_demo_beir(root: Path, n_train: int, n_test: int, *, test_header: bool = True) -> Path:
    """Demo passages (cut to 40 words) in BEIR layout under ``root``: each passage's title is its query, the first
    ``n_train`` queries form ``train`` and the next ``n_test`` ``test``. ``test_header=False`` writes the test qrels
    without BEIR's header row (readers accept both)."""
    docs = [json.loads(line) for line in DEMO_CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    corpus = [{"_id": d["_id"], "title": d["title"], "text": " ".join(d["text"].split()[:40])} for d in docs]
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus), encoding="utf-8")
    queries = [{"_id": f"q{i}", "text": d["title"]} for i, d in enumerate(docs[: n_train + n_test])]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries), encoding="utf-8")
    for name, ids, header in (
        ("train", range(n_train), True),
        ("test", range(n_train, n_train + n_test), test_header),
    ):
        qrels = "".join(f"q{i}\t{docs[i]['_id']}\t1\n" for i in ids)
        (root / "qrels" / f"{name}.tsv").write_text((QRELS_HEADER if header else "") + qrels, encoding="utf-8")
    return root
