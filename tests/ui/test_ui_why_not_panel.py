"""The UI's "why not this document?" panel (ui/why_not_panel.py): its formatting helpers on their own, and the
panel in the running app (Streamlit's AppTest) against ``why_not`` on a twin index: a document in the top k,
one beyond the prefetch depth, and an id the index does not hold."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("streamlit", reason="the UI needs the [ui] extra: pip install 'hybrid-search[ui]'")

from streamlit.testing.v1 import AppTest  # noqa: E402

from hybrid_search.options import SearchOptions  # noqa: E402
from hybrid_search.types import TokenContribution  # noqa: E402
from hybrid_search.why_not import ChannelStanding, WhyNot, why_not_for  # noqa: E402
from pipelines.cli import DATA_DIR  # noqa: E402
from ui import why_not_panel  # noqa: E402

APP = Path(__file__).resolve().parents[2] / "ui" / "app.py"
QUERY = "what is the mercury planet made of"


def _report(**changes) -> WhyNot:
    base = {
        "query": QUERY,
        "doc_id": "demo-045",
        "k": 3,
        "setting": {"method": "rrf", "rrf_k": 60.0, "weights": None, "channels": ["sparse", "dense"], "prefetch_k": 5},
        "channels": {
            "sparse": ChannelStanding(12.5, 20, True, False),
            "dense": ChannelStanding(0.41, 4, True, True),
            "bm25": ChannelStanding(0.0, 81, False, False),
        },
        "in_top_k": False,
        "fused_rank": None,
        "fused_score": None,
        "fused_score_if_prefetched": 0.0289,
        "kth_score": 0.0315,
        "top_k": [("a", 0.033), ("b", 0.032), ("c", 0.0315)],
        "matched_tokens": [TokenContribution("mercury", 1, 1.5, 2.0, 3.0, False)],
        "missing_tokens": [("planet", 1.2)],
        "matched_words": ["mercury"],
        "missing_words": ["planet"],
        "enters_at_prefetch_k": 20,
        "enters_at_weight": {"sparse": None, "dense": 2.0},
    }
    return WhyNot(**{**base, **changes})


def test_the_helpers_show_ranks_scores_the_score_to_beat_tokens_and_the_remedy():
    report = _report()
    rows = why_not_panel.channel_rows(report)
    assert [(r["channel"], r["rank"], r["fused"]) for r in rows] == [
        ("sparse", 20, True),
        ("dense", 4, True),
        ("bm25", 81, False),
    ]
    assert "beyond the prefetch" in rows[0]["where"] and "not returned" in rows[2]["where"]
    verdict = why_not_panel.verdict_markdown(report)
    assert "not in the top 3" in verdict and "0.031500" in verdict and "0.028900" in verdict
    remedies = " ".join(why_not_panel.remedy_lines(report))
    assert "prefetch depth **20**" in remedies and "dense weight **2**" in remedies and "No sparse weight" in remedies
    tokens = why_not_panel.token_markdown(report)
    assert "`mercury` 3.00" in tokens and "lacks:** `planet` 1.20" in tokens
    inside = _report(in_top_k=True, fused_rank=2, fused_score=0.032)
    assert "is #2 of the top 3" in why_not_panel.verdict_markdown(inside) and not why_not_panel.remedy_lines(inside)
    # An id is shown as code, never as Markdown.
    assert "`**x**`" in why_not_panel.unknown_id_message("**x**")


@pytest.fixture(scope="module")
def twin_indexes(tmp_path_factory, splade, minilm) -> tuple[str, str]:
    """Two copies of the demo index: the app holds one (Qdrant Edge lets one holder open a folder), the
    test explains with the other."""
    from pipelines.indexing import index_corpus

    out = []
    for name in ("app", "twin"):
        location = str(tmp_path_factory.mktemp(f"why-not-ui-{name}") / "index")
        index_corpus(str(DATA_DIR / "demo_corpus.jsonl"), location, sparse=splade, dense=minilm, progress=False)
        out.append(location)
    return out[0], out[1]


def _explain(location: str, doc_id: str, splade, minilm) -> WhyNot:
    from hybrid_search.retrieval import HybridSearcher
    from indexers import open_index

    index = open_index(location)
    try:
        return why_not_for(HybridSearcher(index, sparse=splade, dense=minilm), QUERY, doc_id, SearchOptions())
    finally:
        index.close()


def _panel_text(at: AppTest) -> str:
    return " ".join(str(e.value) for kind in ("markdown", "caption", "warning") for e in getattr(at, kind))


def test_the_panel_in_the_app_explains_a_hit_a_miss_and_refuses_an_unknown_id(
    monkeypatch, twin_indexes, splade, minilm
):
    app_index, twin = twin_indexes
    monkeypatch.setenv("HYBRID_SEARCH_INDEX", app_index)
    at = AppTest.from_file(str(APP), default_timeout=180).run()
    at.text_input(key="query").input(QUERY).run()
    assert not at.exception
    assert "Enter a document id" in _panel_text(at)

    hit = _explain(twin, "demo-002", splade, minilm)
    at.text_input(key=why_not_panel.KEY).input("demo-002").run()
    assert not at.exception
    assert why_not_panel.verdict_markdown(hit) in _panel_text(at)

    # A document far down: its exact ranks per channel, the score to beat, and the table of channels.
    far = next(
        f"demo-{i:03d}" for i in range(80, 0, -1) if not _explain(twin, f"demo-{i:03d}", splade, minilm).in_top_k
    )
    report = _explain(twin, far, splade, minilm)
    at.text_input(key=why_not_panel.KEY).input(far).run()
    assert not at.exception
    text = _panel_text(at)
    assert why_not_panel.verdict_markdown(report) in text and f"#{report.k} hit scored" in text
    table = at.dataframe[-1].value
    assert table["rank"].tolist() == [s.rank for s in report.channels.values()]
    assert "settings from default" in text

    at.text_input(key=why_not_panel.KEY).input("no-such-doc").run()
    assert not at.exception
    assert "No document with id `no-such-doc` in this index" in at.warning[-1].value
