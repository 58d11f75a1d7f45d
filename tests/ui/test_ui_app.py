"""The Streamlit UI driven by Streamlit's AppTest: every control and every empty or error state.

The app opens its index once per process (``st.cache_resource``) and Qdrant Edge lets one process hold an index,
so each state gets its own index folder.
"""

from __future__ import annotations

import json
import os
import re

import pytest

pytest.importorskip("streamlit", reason="the UI needs the [ui] extra: pip install 'hybrid-search[ui]'")

from streamlit.testing.v1 import AppTest  # noqa: E402

from hybrid_search.fusion import same_order  # noqa: E402
from hybrid_search.index import IndexMeta  # noqa: E402
from hybrid_search.rerank import DEFAULT_RERANKER  # noqa: E402
from hybrid_search.types import Document, ScoredId  # noqa: E402
from indexers import create_index, open_index  # noqa: E402
from pipelines.serve import RERANKERS_ENV  # noqa: E402
from tests.paths import REPO

# qdrant-client warns when it cannot ask an (unreachable) server for its version; that state is under test here.
pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version:UserWarning")

APP = REPO / "ui" / "app.py"
QUERY = "what causes hypertension and high blood pressure"
HIT_LINE = re.compile(r"^\*\*#(\d+)\*\* · `([^`]+)` · (.*)$")


def _build(location: str, docs, sparse, dense, *, sparse_meta=None, dense_meta=None) -> str:
    meta = IndexMeta(engine="", sparse=sparse_meta, dense=dense_meta)
    index = create_index(location, meta)
    index.upsert(docs, sparse if sparse_meta else None, dense if dense_meta else None)
    index.close()
    return location


def _with_metadata(docs):
    return [Document(d.id, d.text, d.title, {"kind": "ab"[i % 2], "year": 2019 + i % 2}) for i, d in enumerate(docs)]


@pytest.fixture(scope="module")
def ui_index(tmp_path_factory, demo_vectors, splade, minilm) -> str:
    """The shipped demo corpus (80 real passages, SPLADE-tiny + MiniLM) with two metadata fields of its own."""
    docs, svecs, dvecs = demo_vectors
    location = str(tmp_path_factory.mktemp("ui") / "index")
    return _build(
        location, _with_metadata(docs), svecs, dvecs, sparse_meta=splade.settings(), dense_meta=minilm.settings()
    )


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory) -> str:
    """An (untrained) cross-encoder saved to a local folder: enough to exercise the rerank path offline."""
    import torch
    from sentence_transformers import CrossEncoder

    from hybrid_search.models import resolve

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("ce") / "tiny-ce"
    CrossEncoder(resolve("splade-tiny").path, num_labels=1, device="cpu").save(str(folder))
    return str(folder)


def app(monkeypatch, location: str) -> AppTest:
    monkeypatch.setenv("HYBRID_SEARCH_INDEX", location)
    return AppTest.from_file(str(APP), default_timeout=180)


def texts(at: AppTest) -> list[str]:
    """Every piece of text on the page (markdown, alerts, HTML, captions), for 'no traceback' checks."""
    out = []
    for kind in ("markdown", "caption", "info", "warning", "error", "success", "html", "title"):
        out += [str(e.value) for e in getattr(at, kind)]
    return out


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not any("Traceback" in t for t in texts(at))


def hits(at: AppTest) -> list[tuple[str, str]]:
    """``[(id, badges)]`` of the result cards, in order."""
    found = [HIT_LINE.match(m.value) for m in at.markdown]
    return [(m.group(2), m.group(3)) for m in found if m]


def search(at: AppTest, query: str = QUERY) -> AppTest:
    at.text_input(key="query").input(query).run()
    assert_clean(at)
    return at


# --- the happy path ------------------------------------------------------------------------------
def test_sidebar_shows_the_index_facts_and_an_empty_query_asks_for_one(monkeypatch, ui_index):
    at = app(monkeypatch, ui_index).run()
    assert_clean(at)
    facts = " ".join(m.value for m in at.sidebar.markdown)
    assert "qdrant-edge" in facts and "**Documents:** 80" in facts
    assert "splade-tiny" in facts and "minilm" in facts and "`kind`, `year`" in facts
    assert "Type a query" in at.info[0].value and not hits(at)
    at.text_input(key="query").input("   ").run()
    assert_clean(at)
    assert "Type a query" in at.info[0].value and not hits(at)


def test_hybrid_results_show_highlights_expansion_scores_why_compare_and_latency(monkeypatch, ui_index):
    at = search(app(monkeypatch, ui_index).run())
    found = hits(at)
    assert len(found) == 10
    assert all("fused 0.0" in b and ("sparse #" in b or "dense #" in b) for _, b in found)
    # Each card shows its fused score as the sum of its channels' RRF terms, and who fused.
    terms = [c.value for c in at.caption if c.value.startswith("fused ")]
    assert len(terms) == 10 and all("1/(60+" in t for t in terms)
    for line, (_, badges) in zip(terms, found):
        total = float(re.match(r"fused (\d\.\d{4}) = ", line).group(1))
        parts = [float(x) for x in re.findall(r"\) = (\d\.\d{4})", line)]
        assert total == pytest.approx(sum(parts), abs=2e-4) and f"fused {total:.4f}" in badges
    assert any("fused by the engine" in m.value for m in at.markdown)
    assert any("Fusion settings from default" in c.value for c in at.caption)
    markup = " ".join(h.value for h in at.html)
    # Matched query tokens are marked in the text; WordPiece pieces inside their word.
    assert re.search(r'<mark class="hs-match"[^>]*>blood</mark>', markup, re.IGNORECASE)
    assert '<span class="hs-word"><mark class="hs-match hs-piece"' in markup
    # Expansion tokens are shown apart, and the query's own vector with its expansion.
    assert "Matched through expansion (not in the text):" in markup
    assert 'class="hs-label">Query vector:' in markup and 'class="hs-chip hs-exp"' in markup
    # One "why" panel per hit, with a bar chart whose contributions add up to the sparse score.
    why = [e for e in at.expander if e.label.startswith("Why #")]
    assert len(why) == 10 and all(len(e.get("vega_lite_chart")) == 1 for e in why)
    sums = [m.value for m in at.markdown if m.value.startswith("**Σ contributions")]
    assert len(sums) == 10
    for line in sums:
        numbers = re.findall(r"\d+\.\d{4}", line)
        assert len(numbers) >= 2 and numbers[0] == numbers[1] or "not in the sparse channel" in line
    table = at.dataframe[0].value
    assert list(table.columns) == ["token", "query weight", "doc weight", "contribution", "expansion"]
    assert (table["contribution"] - table["query weight"] * table["doc weight"]).abs().max() < 1e-4
    # The compare view and the latency view.
    assert [t.label for t in at.tabs] == ["Results", "Compare rankings", "Query vector", "Latency"]
    moved = next(d.value for d in at.dataframe if "fusion moved" in d.value.columns)
    assert {"Sparse", "Dense", "Hybrid (fused)"} <= set(moved.columns)
    assert list(moved["id"][:10]) == [i for i, _ in found]
    assert "<h4>Sparse</h4>" in markup and "<h4>Hybrid (fused)</h4>" in markup
    stages = {m.label for m in at.metric}
    assert {"encode sparse", "encode dense", "sparse search", "dense search", "fusion", "explain", "total"} <= stages
    assert "encode" in stages  # the encoders' parent stage: the total counts it, not its parts
    assert len(at.tabs[2].get("vega_lite_chart")) == 1  # the query vector as a chart, and as a table:
    query_table = next(d.value for d in at.dataframe if list(d.value.columns) == ["token", "weight", "expansion"])
    assert "blood" in set(query_table["token"]) and query_table["expansion"].any()


def test_the_why_toggle_hides_the_panels_but_keeps_the_highlights(monkeypatch, ui_index):
    at = search(app(monkeypatch, ui_index).run())
    at.toggle(key="explain").set_value(False).run()
    assert_clean(at)
    assert not [e for e in at.expander if e.label.startswith("Why #")]
    assert len(at.get("vega_lite_chart")) == 1  # only the query vector's chart is left
    assert len(hits(at)) == 10 and "hs-match" in " ".join(h.value for h in at.html)
    at.toggle(key="explain").set_value(True).run()
    assert len([e for e in at.expander if e.label.startswith("Why #")]) == 10


@pytest.mark.parametrize("mode", ["sparse", "dense", "bm25"])
def test_single_channel_modes(monkeypatch, ui_index, mode):
    at = search(app(monkeypatch, ui_index).run())
    at.segmented_control(key="mode").set_value(mode).run()
    assert_clean(at)
    found = hits(at)
    assert len(found) == 10
    for rank, (_, badges) in enumerate(found, start=1):
        assert f"{mode} #{rank}" in badges and "fused" not in badges
    assert not at.multiselect  # the fusion controls belong to hybrid mode
    assert any("single-channel search" in c.value for c in at.caption)
    # The explanation works in every mode: the query still has a sparse vector.
    assert len([e for e in at.expander if e.label.startswith("Why #")]) == 10


def test_three_channel_hybrid_fusion_methods_k_and_weights(monkeypatch, ui_index):
    at = search(app(monkeypatch, ui_index).run())
    at.multiselect(key="channels").set_value(["sparse", "dense", "bm25"]).run()
    assert_clean(at)
    assert any("bm25 #" in badges for _, badges in hits(at))
    assert "BM25" in next(d.value for d in at.dataframe if "fusion moved" in d.value.columns).columns
    assert at.slider(key="weight_bm25").value == 1.0

    at.multiselect(key="channels").set_value(["sparse", "dense"]).run()
    # RRF with k=1: the top document's fused score is far above the k=60 scale.
    at.number_input(key="rrf_k").set_value(1).run()
    assert_clean(at)
    top = float(re.search(r"fused (\d\.\d+)", hits(at)[0][1]).group(1))
    assert top > 0.3 and any("RRF k=1 ·" in m.value for m in at.markdown)
    at.number_input(key="rrf_k").set_value(60).run()

    # Weight 0 on dense: the fused order is the sparse order.
    at.slider(key="weight_dense").set_value(0.0).run()
    assert_clean(at)
    assert [re.search(r"sparse #(\d+)", b).group(1) for _, b in hits(at)] == [str(i) for i in range(1, 11)]
    at.slider(key="weight_dense").set_value(1.0).run()

    for fusion in ("dbsf", "convex"):
        at.selectbox(key="fusion").set_value(fusion).run()
        assert_clean(at)
        assert len(hits(at)) == 10 and any(f"· {fusion.upper()} ·" in m.value for m in at.markdown)
        assert at.number_input(key="rrf_k").disabled  # k is RRF's


def test_top_k_and_metadata_filters(monkeypatch, ui_index):
    at = search(app(monkeypatch, ui_index).run())
    at.slider(key="top_k").set_value(4).run()
    assert_clean(at)
    assert len(hits(at)) == 4
    at.text_input(key="filter_kind").input("a").run()
    assert_clean(at)
    assert hits(at) and all("kind: a" in badges for _, badges in hits(at))
    at.text_input(key="filter_kind").input("a, b").run()  # any of
    at.text_input(key="filter_year").input("2020").run()  # numbers are numbers
    assert_clean(at)
    assert hits(at) and all("year: 2020" in badges for _, badges in hits(at))
    at.text_input(key="filter_kind").input("no-such-kind").run()
    assert_clean(at)
    assert not hits(at) and any("No documents matched" in i.value for i in at.info)


def test_reranker_offline_message_then_a_local_cross_encoder(monkeypatch, ui_index, tiny_cross_encoder):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv(RERANKERS_ENV, os.pathsep.join([DEFAULT_RERANKER, tiny_cross_encoder]))  # the operator's
    at = search(app(monkeypatch, ui_index).run())
    assert at.selectbox(key="rerank_model").disabled
    assert at.selectbox(key="rerank_model").options == [DEFAULT_RERANKER, tiny_cross_encoder]
    at.toggle(key="rerank").set_value(True).run()
    assert_clean(at)
    warning = at.warning[0].value
    assert "Reranking is off" in warning and "offline" in warning and "cross-encoder/ms-marco" in warning
    assert len(hits(at)) == 10 and not any("rerank" in b for _, b in hits(at))

    at.selectbox(key="rerank_model").select(tiny_cross_encoder).run()
    at.number_input(key="rerank_top_n").set_value(20).run()
    assert_clean(at)
    assert not at.warning
    found = hits(at)
    scores = [float(re.search(r"rerank (-?\d+\.\d+)", b).group(1)) for _, b in found]
    assert len(scores) == 10 and scores == sorted(scores, reverse=True)
    assert any("· reranked ·" in m.value for m in at.markdown)
    moved = next(d.value for d in at.dataframe if "rerank moved" in d.value.columns)
    assert "Reranked" in moved.columns and "<h4>Reranked</h4>" in " ".join(h.value for h in at.html)
    assert "rerank" in {m.label for m in at.metric}


def test_the_page_loads_only_the_rerankers_the_operator_allowed(monkeypatch, ui_index, tiny_cross_encoder):
    monkeypatch.delenv(RERANKERS_ENV, raising=False)
    at = search(app(monkeypatch, ui_index).run())
    # No --allow-reranker: the default only, in a list (the page once had a text box that loaded any folder or
    # Hub id a visitor typed, for good, on the server).
    assert at.selectbox(key="rerank_model").options == [DEFAULT_RERANKER]
    assert "rerank_model" not in {t.key for t in at.text_input}
    monkeypatch.setenv(RERANKERS_ENV, tiny_cross_encoder)
    at.run()
    assert at.selectbox(key="rerank_model").options == [tiny_cross_encoder]


# --- states without results ----------------------------------------------------------------------
def test_no_index_yet_says_how_to_build_one(monkeypatch, tmp_path):
    at = app(monkeypatch, str(tmp_path / "nothing-here")).run()
    assert_clean(at)
    message = at.info[0].value
    assert "No index yet" in message and f"hybrid-search index CORPUS --index {tmp_path / 'nothing-here'}" in message
    assert "make demo" in message and not at.text_input


def test_unreachable_backend(monkeypatch):
    from pipelines.serve import free_port

    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    at = app(monkeypatch, url).run()
    assert_clean(at)
    assert "backend is unreachable" in at.error[0].value and "127.0.0.1" in at.error[0].value


def test_model_not_available_offline(monkeypatch, tmp_path, demo_vectors, minilm):
    docs, svecs, dvecs = demo_vectors
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub_model = {"name": "naver/splade-v3", "architecture": "splade", "dimension": 30522, "similarity": "dot"}
    location = _build(
        str(tmp_path / "idx"), docs[:5], svecs[:5], dvecs[:5], sparse_meta=hub_model, dense_meta=minilm.settings()
    )
    at = app(monkeypatch, location).run()
    assert_clean(at)
    error = at.error[0].value
    assert "not available offline" in error and "naver/splade-v3" in error and "models pull" in error
    assert at.sidebar.markdown  # the index facts are still shown


def test_model_mismatch(monkeypatch, tmp_path, demo_vectors, splade, minilm):
    docs, svecs, dvecs = demo_vectors
    other = dict(splade.settings(), dimension=999)  # built by a model with another vocabulary
    location = _build(
        str(tmp_path / "idx"), docs[:5], svecs[:5], dvecs[:5], sparse_meta=other, dense_meta=minilm.settings()
    )
    at = app(monkeypatch, location).run()
    assert_clean(at)
    assert "built with other models" in at.error[0].value and "dimension" in at.error[0].value


def test_index_held_by_another_process(monkeypatch, tmp_path, demo_vectors, splade, minilm):
    docs, svecs, dvecs = demo_vectors
    location = _build(
        str(tmp_path / "idx"),
        docs[:5],
        svecs[:5],
        dvecs[:5],
        sparse_meta=splade.settings(),
        dense_meta=minilm.settings(),
    )
    with open_index(location):  # Qdrant Edge: one holder at a time
        at = app(monkeypatch, location).run()
    assert_clean(at)
    assert "open in another process" in at.error[0].value and "Another process holds the index" in at.error[0].value


def test_an_unexpected_failure_is_a_message_not_a_traceback(monkeypatch, tmp_path):
    location = tmp_path / "broken"
    location.mkdir()
    (location / "hybrid_search.json").write_text("{not json")  # a damaged index
    at = app(monkeypatch, str(location)).run()
    assert_clean(at)
    assert at.error and "Expecting property name" in at.error[0].value


# --- the UI shows what the CLI prints ------------------------------------------------------------
def test_hybrid_top10_matches_the_cli_json(monkeypatch, capsys, tmp_path, demo_vectors, splade, minilm):
    from pipelines.cli import main

    docs, svecs, dvecs = demo_vectors
    location = _build(
        str(tmp_path / "idx"),
        _with_metadata(docs),
        svecs,
        dvecs,
        sparse_meta=splade.settings(),
        dense_meta=minilm.settings(),
    )
    queries = [QUERY, "what is the daily life of thai people"]
    expected = {}
    for query in queries:  # the CLI first: it must release the index before the app holds it
        assert main(["search", query, "--index", location, "--json"]) == 0
        expected[query] = json.loads(capsys.readouterr().out)["hits"]
    at = app(monkeypatch, location).run()
    for query in queries:
        search(at, query)
        shown = [doc_id for doc_id, _ in hits(at)]
        cli = [ScoredId(h["id"], h["score"]) for h in expected[query]]
        score = {h.id: h.score for h in cli}
        assert len(shown) == 10 and set(shown) <= set(score), (shown, cli)
        # Equal fused scores are an engine tie; their order is the engine's, so ties compare as sets.
        assert same_order(cli, [ScoredId(i, score[i]) for i in shown], k=10), (shown, [h.id for h in cli])
        shown_scores = [re.search(r"fused (\d\.\d{4})", b).group(1) for _, b in hits(at)]
        assert shown_scores == [f"{score[i]:.4f}" for i in shown]


def test_every_fusion_method_has_a_label_in_the_ui():
    """A method added to the core shows up in the UI's selectbox with a name (a missing label broke it)."""
    from hybrid_search.constants import FUSION_METHODS
    from ui.app import FUSION_LABELS

    assert set(FUSION_METHODS) <= set(FUSION_LABELS)
