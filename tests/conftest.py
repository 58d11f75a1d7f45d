"""Shared fixtures: the real small models (loaded once), the demo corpus the repository ships (``demo_*``: every
checkout has it) and a slice of the benchmark data in ../shared (``msmarco_dir``, ``small_*``, ``queries``: skipped
with the reason when it is absent)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.paths import DEMO_DATA, MSMARCO, missing

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SMALL_N = 300


def _require_data() -> Path:
    if not (MSMARCO / "corpus.jsonl").exists():
        pytest.skip(missing(MSMARCO, "benchmark data"))
    return MSMARCO


@pytest.fixture(scope="session")
def msmarco_dir() -> Path:
    """The 5k-passage MS MARCO / TREC DL19 folder (BEIR layout)."""
    return _require_data()


@pytest.fixture(scope="session")
def small_docs(msmarco_dir: Path):
    """The first judged-relevant passages plus the head of the corpus: SMALL_N real documents."""
    from hybrid_search.dataset import load_beir

    data = load_beir(msmarco_dir)
    relevant = [d for q in data.judged_queries for d, g in data.qrels[q].items() if g >= 2 and d in data.corpus]
    ids = list(dict.fromkeys(relevant[: SMALL_N // 2] + list(data.corpus)[:SMALL_N]))[:SMALL_N]
    return [data.corpus[i] for i in ids]


@pytest.fixture(scope="session")
def queries(msmarco_dir: Path) -> dict[str, str]:
    from hybrid_search.dataset import load_beir

    return load_beir(msmarco_dir).queries


@pytest.fixture(scope="session")
def demo_docs():
    """The shipped demo corpus, read as the CLI reads it (ids, titles, texts, metadata)."""
    from hybrid_search.corpus import CorpusReader

    return list(CorpusReader(DEMO_DATA / "demo_corpus.jsonl"))


@pytest.fixture(scope="session")
def demo_queries() -> dict[str, str]:
    """The demo's example queries, ``{"demo-q1": text, ...}``."""
    lines = [q.strip() for q in (DEMO_DATA / "demo_queries.txt").read_text().splitlines() if q.strip()]
    return {f"demo-q{i}": q for i, q in enumerate(lines, start=1)}


@pytest.fixture(scope="session")
def demo_vectors(demo_docs, splade, minilm):
    """The demo corpus encoded once for the whole session: (docs, sparse vectors, dense matrix)."""
    texts = [d.full_text for d in demo_docs]
    return demo_docs, splade.encode_document(texts), minilm.encode_document(texts)


@pytest.fixture(scope="session")
def small_corpus_file(small_docs, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "small.jsonl"
    with path.open("w") as f:
        for d in small_docs:
            f.write(json.dumps({"_id": d.id, "title": d.title, "text": d.text}) + "\n")
    return path


@pytest.fixture(scope="session")
def splade():
    from hybrid_search.encoders import SparseEncoder

    return SparseEncoder.load("splade-tiny")


@pytest.fixture(scope="session")
def minilm():
    from hybrid_search.encoders import DenseEncoder

    return DenseEncoder.load("minilm")


@pytest.fixture(scope="session")
def small_vectors(small_docs, splade, minilm):
    """The small corpus encoded once for the whole session: (docs, sparse vectors, dense matrix)."""
    texts = [d.full_text for d in small_docs]
    return small_docs, splade.encode_document(texts), minilm.encode_document(texts)


@pytest.fixture
def make_index(tmp_path, demo_vectors, splade, minilm):
    """Build an index of the shipped demo corpus on an engine: ``make_index("qdrant-edge")`` or ``("qdrant")``."""
    from hybrid_search.index import IndexMeta
    from indexers import create_index

    opened = []

    def build(engine: str = "qdrant-edge", *, exact: bool = True):
        docs, svecs, dvecs = demo_vectors
        meta = IndexMeta(engine="", sparse=splade.settings(), dense=minilm.settings())
        location = str(tmp_path / "edge") if engine == "qdrant-edge" else ":memory:"
        index = create_index(location, meta, exact=exact)
        index.upsert(docs, svecs, dvecs)
        opened.append(index)
        return index

    yield build
    for index in opened:
        index.close()
