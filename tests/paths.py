"""Where the tests find the repository and the data beside it: decided here once, for every test and benchmark.

``../shared`` (beside the checkout) holds the benchmark data and the engines' API specifications, which the
repository must not copy. ``HYBRID_SEARCH_SHARED`` points elsewhere (a folder holding ``data/`` and
``specs/``); pointing it at a folder that does not exist tests the suite as a plain clone sees it. The tests
that need only some real passages read the demo corpus the repository ships (:data:`DEMO_DATA`) instead.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_ENV = "HYBRID_SEARCH_SHARED"
SHARED = Path(os.environ.get(SHARED_ENV) or REPO.parent / "shared")
#: 5,000 MS MARCO passages with the TREC DL19 queries and graded judgements (BEIR layout).
MSMARCO = SHARED / "data" / "msmarco-dl19-5k"
#: OpenSearch's and Elasticsearch's API specifications.
SPECS = SHARED / "specs"
#: The demo corpus the repository ships (80 passages on 8 topics, with `topic` and `year` fields) and its
#: queries: real text on every checkout.
DEMO_DATA = REPO / "pipelines" / "data"
DEMO_CORPUS = DEMO_DATA / "demo_corpus.jsonl"


def missing(path: Path, what: str) -> str:
    """The skip reason for data that is not there, naming where it was looked for and how to point elsewhere."""
    return (
        f"{what}: not found at {path} (expected in ../shared beside the checkout; {SHARED_ENV}=PATH reads it elsewhere)"
    )
