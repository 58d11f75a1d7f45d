"""The hybrid-search UI: search an index and see why each document matched.

Run it with ``hybrid-search ui --index PATH|URL`` (or ``streamlit run ui/app.py -- --index PATH``; the location
can also come from ``$HYBRID_SEARCH_INDEX``). It is a thin layer: searching is
:meth:`hybrid_search.retrieval.HybridSearcher.search`, the settings are :class:`ui.settings.SearchSettings`,
errors are :func:`ui.problems.describe_error`, highlighting is :mod:`hybrid_search.highlight`, and the
compare view is :mod:`hybrid_search.compare`. This file only lays those out.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from typing import Any

import pandas as pd
import streamlit as st

from hybrid_search.compare import movements, stages
from hybrid_search.constants import DEFAULT_K, FUSION_METHODS
from hybrid_search.explain import explained_score
from hybrid_search.highlight import match_spans, query_expansion
from hybrid_search.models import query_models
from hybrid_search.options import SearchOptions, parse_filter_boxes
from indexers.credentials import redact
from pipelines.serve import app_arguments
from ui import render, why_not_panel
from ui.problems import Problem, describe_error, problem_of
from ui.settings import SearchSettings, available_modes, default_channels, model_facts

logger = logging.getLogger("hybrid_search.ui")

MODE_LABELS = {"hybrid": "Hybrid", "sparse": "Sparse", "dense": "Dense", "bm25": "BM25"}
FUSION_LABELS = {
    "rrf": "RRF (reciprocal rank)",
    "dbsf": "DBSF (distribution-based)",
    "convex": "Convex (min-max)",
    "zscore": "Z-score (convex)",
}
CHART_COLORS = ["#eab308", "#8b5cf6"]  # in the text, through expansion: the highlight and chip colours
CONTRIBUTION_COLUMNS = {
    "token": st.column_config.TextColumn(width="small"),
    "query weight": st.column_config.NumberColumn("query", format="%.2f", width="small"),
    "doc weight": st.column_config.NumberColumn("doc", format="%.2f", width="small"),
    "contribution": st.column_config.NumberColumn("q × d", format="%.3f", width="small"),
    "expansion": st.column_config.CheckboxColumn(
        "exp.", width="small", help="matched through expansion: not in the text"
    ),
}


# --- cached resources: one index and one copy of each model per server ----------------------------
@st.cache_resource(show_spinner="Opening the index…")
def open_index_cached(location: str) -> Any:
    from indexers import open_index

    return open_index(location)


@st.cache_resource(show_spinner="Loading the sparse model…")
def load_sparse(name: str, max_active_dims: int | None) -> Any:
    from hybrid_search.encoders import SparseEncoder

    encoder = SparseEncoder.load(name, max_active_dims=max_active_dims)
    encoder.encode_query(["warm up"])  # the first encode is slow: pay it here, not in the first query's latency
    return encoder


@st.cache_resource(show_spinner="Loading the dense model…")
def load_dense(name: str) -> Any:
    from hybrid_search.encoders import DenseEncoder

    encoder = DenseEncoder.load(name)
    encoder.encode_query(["warm up"])
    return encoder


@st.cache_resource(show_spinner="Loading the cross-encoder…")
def load_reranker(name: str) -> Any:
    from hybrid_search.rerank import Reranker

    return Reranker.load(name)


@st.cache_resource
def models_lock() -> threading.Lock:
    """Sessions take turns with the shared models and index (a query holds this for milliseconds).

    A Hugging Face tokenizer re-configures its padding and truncation on every call, so two sessions
    tokenising with one model at once could get each other's settings.
    """
    return threading.Lock()


# --- page pieces -----------------------------------------------------------------------------------
def report(error: BaseException, location: str, doing: str) -> Problem:
    """Describe a failure for the page; an unexpected one also goes to the server log, traceback and all."""
    problem = describe_error(error, location)
    if problem.kind == "error":  # the traceback as text, with any password in it masked
        trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        logger.warning("%s failed\n%s", doing, redact(trace))
    return problem


def show_problem(problem: Problem) -> None:
    text = f"**{render.md_escape(problem.title)}**\n\n{render.md_escape(problem.message)}"
    if problem.hint:
        text += f"\n\n{problem.hint}"
    if problem.kind in ("no_index", "empty_query"):
        st.info(text, icon=":material/info:")
    else:
        st.error(text, icon=":material/error:")


def sidebar_facts(index: Any, location: str) -> None:
    meta = index.meta
    st.sidebar.markdown("### Index")
    try:
        count = f"{index.count():,}"
    except Exception as error:  # noqa: BLE001 - a fact that cannot be read is shown, not raised
        count = f"unknown ({type(error).__name__})"
    lines = [
        f"- **Location:** {render.code_span(redact(location))}",
        f"- **Engine:** {render.md_escape(meta.engine)}",
        f"- **Documents:** {count}",
    ]
    lines += [f"- **{channel.capitalize()} model:** {render.md_escape(text)}" for channel, text in model_facts(meta)]
    fields = ", ".join(render.code_span(f) for f in meta.metadata_fields) or "none"
    lines.append(f"- **Metadata fields:** {fields}")
    st.sidebar.markdown("\n".join(lines))


def sidebar_settings(meta: Any, rerankers: list[str]) -> tuple[SearchSettings, bool]:
    """The search controls; returns the settings and whether to show the "why" panels."""
    st.sidebar.markdown("### Search settings")
    settings = SearchSettings(mode=mode_control(meta))
    if settings.mode == "hybrid":
        fusion_controls(settings, meta)
    settings.k = st.sidebar.slider("Results (top-k)", 1, 50, DEFAULT_K, key="top_k")
    settings.filters = filter_controls(meta)
    rerank_controls(settings, rerankers)
    st.sidebar.markdown("### Display")
    explain = st.sidebar.toggle("Why panels (token contributions)", value=True, key="explain")
    return settings, explain


def mode_control(meta: Any) -> str:
    modes = available_modes(meta)
    mode = st.sidebar.segmented_control(
        "Mode", modes, default="hybrid", format_func=MODE_LABELS.get, key="mode", required=True
    )
    return mode or "hybrid"


def fusion_controls(settings: SearchSettings, meta: Any) -> None:
    """Channels, fusion method, RRF k and weights, starting from the index's defaults (its tuned fusion, if any)."""
    side = st.sidebar
    base = SearchOptions.for_index(meta)
    channels = side.multiselect(
        "Fuse channels", meta.channels, default=default_channels(meta), format_func=MODE_LABELS.get, key="channels"
    )
    settings.channels = channels or None
    settings.fusion = side.selectbox(
        "Fusion", FUSION_METHODS, index=FUSION_METHODS.index(base.fusion), format_func=FUSION_LABELS.get, key="fusion"
    )
    settings.rrf_k = side.number_input(
        "RRF k",
        min_value=0,
        max_value=1000,
        value=int(base.rrf_k),
        step=1,
        key="rrf_k",
        disabled=settings.fusion != "rrf",
        help="score = Σ weight / (k + rank), ranks from 1",
    )
    for channel in settings.channels or default_channels(meta):
        default = float((base.weights or {}).get(channel, 1.0))
        label = f"{MODE_LABELS[channel]} weight"
        settings.weights[channel] = side.slider(label, 0.0, 3.0, default, 0.1, key=f"weight_{channel}")
    side.caption(f"Fusion defaults: {render.md_escape(base.fusion_source)}")


def filter_controls(meta: Any) -> dict[str, Any] | None:
    """One text box per metadata field; the core parses them (:func:`hybrid_search.options.parse_filter_boxes`)."""
    with st.sidebar.expander("Metadata filters", expanded=bool(meta.metadata_fields)):
        if not meta.metadata_fields:
            st.caption("This index has no metadata fields to filter on.")
            return None
        values = {
            f: st.text_input(render.md_escape(f), key=f"filter_{f}", placeholder="any; a, b = any of")
            for f in meta.metadata_fields
        }  # a label is Markdown, and a field name comes from the corpus
        return parse_filter_boxes(values)


def rerank_controls(settings: SearchSettings, rerankers: list[str]) -> None:
    side = st.sidebar
    side.markdown("### Reranking")
    settings.rerank = side.toggle("Rerank with a cross-encoder", key="rerank")
    # Only the operator's choices (`hybrid-search ui --allow-reranker`): the page cannot name a model to load.
    settings.rerank_model = side.selectbox(
        "Cross-encoder",
        rerankers,
        key="rerank_model",
        disabled=not settings.rerank,
        help="the cross-encoders this server allows (`--allow-reranker`)",
    )
    settings.rerank_top_n = side.number_input(
        "Rerank the top N", 1, 500, 50, key="rerank_top_n", disabled=not settings.rerank
    )


def hit_card(hit: Any, tokenizer: Any, explain: bool, rrf_k: float | None = None) -> None:
    doc = hit.document
    rows = hit.explanation or []
    in_text = {r.token_id for r in rows if not r.expansion}
    weights = {r.token_id: r.contribution for r in rows}
    title = doc.title if doc else ""
    text = doc.text if doc else "(the document is no longer stored)"

    def marked(value: str) -> str:
        if tokenizer is None or not in_text:
            return render.esc(value)
        return render.highlight(value, match_spans(value, tokenizer, in_text), weights)

    with st.container(border=True, key=render.hit_key(hit.rank)):
        st.markdown(render.hit_line(hit))
        if hit.fusion_terms:
            st.caption(render.fusion_terms_markdown(hit, rrf_k))
        if title:
            st.html(f'<div class="hs-title">{marked(title)}</div>')
        st.html(f'<div class="hs-text">{marked(text)}</div>')
        expansion = render.expansion_html(rows)
        if expansion:
            st.html(expansion)
        if explain and hit.explanation is not None:  # None: the index has no sparse channel to explain
            why_panel(hit, rows)


def why_panel(hit: Any, rows: list[Any]) -> None:
    """The sparse score taken apart: each shared token's query weight × document weight, as a chart and a table."""
    total = explained_score(rows)
    label = f"Why #{hit.rank}? Sparse score {total:.2f} = Σ query weight × document weight"
    with st.expander(label, key=render.why_key(hit.rank)):
        if not rows:
            st.caption("The query and this document share no sparse tokens: its sparse score is 0.")
            return
        shown = rows[: render.WHY_CHART_TOKENS]
        left, right = st.columns([3, 2])
        token_chart(
            left,
            [(r.token, r.contribution, r.expansion) for r in shown],
            "in text",
            "contribution = query weight × document weight",
            height=max(180, 26 * len(shown) + 70),
        )
        left.markdown(render.sparse_equation(rows, hit.channel_scores.get("sparse"), len(shown)))
        right.dataframe(
            pd.DataFrame(render.contribution_rows(rows)),
            hide_index=True,
            height=min(26 * len(shown) + 70, 36 * (len(rows) + 1)),
            column_config=CONTRIBUTION_COLUMNS,
        )


def token_chart(column: Any, tokens: list[tuple[str, float, bool]], own: str, y_label: str, height: int) -> None:
    """Horizontal bars of ``(token, value, expansion)``: tokens in the text (``own``) and expansion tokens apart."""
    chart = pd.DataFrame(
        {
            "token": [token for token, _, _ in tokens],
            own: [value if not expansion else 0.0 for _, value, expansion in tokens],
            "expansion": [value if expansion else 0.0 for _, value, expansion in tokens],
        }
    )
    column.bar_chart(
        chart,
        x="token",
        y=[own, "expansion"],
        color=CHART_COLORS,
        horizontal=True,
        sort=False,
        x_label="token",
        y_label=y_label,
        height=height,
    )


def compare_view(result: Any, index: Any, depth: int) -> None:
    stage_lists = stages(result)
    moves = movements(stage_lists, depth)
    titles = {h.id: (h.document.title or h.document.text[:80]) for h in result.hits if h.document}
    missing = [m.id for m in moves if m.id not in titles]
    if missing:
        titles.update({d.id: d.title or d.text[:80] for d in index.get(missing)})
    if len(stage_lists) == 1:
        st.caption(
            "A single-channel search has one ranking. Switch the mode to Hybrid to compare the sparse, dense "
            "and fused rankings side by side."
        )
    else:
        st.caption(
            "Each column is one stage's top results. In a channel, → #n is where fusion put the document; "
            "in the fused column, the arrow is how far fusion moved it from its best channel rank; in the "
            "reranked column, how far the reranker moved it from its fused rank."
        )
    st.html(render.side_by_side_html(stage_lists, moves, titles, depth))
    st.dataframe(pd.DataFrame(render.movement_rows(moves, list(stage_lists), titles)), hide_index=True)


def latency_view(timings: dict[str, float], total_ms: float) -> None:
    rows = render.timing_tree(timings, total_ms)
    st.caption(
        "Milliseconds per stage of this query, measured in the pipeline. A stage inside another (the two "
        "encoders run at once, inside encode) is shown after it and not counted twice in the total."
    )
    columns = st.columns(min(len(rows), 5) or 1)
    for i, (label, ms, parent) in enumerate(rows):
        columns[i % len(columns)].metric(label, render.format_ms(ms), help=f"part of {parent}" if parent else None)


def query_vector_view(tokens: list[Any]) -> None:
    if not tokens:
        st.caption("No sparse model: the query has no sparse vector.")
        return
    st.caption(
        "The query's sparse vector, decoded: the vocabulary tokens the model weighs, by weight. "
        "Violet tokens are expansion: the model added them, the query text does not contain them."
    )
    height = max(180, 24 * len(tokens) + 70)
    left, right = st.columns([3, 2])
    token_chart(left, [(t.token, t.weight, t.expansion) for t in tokens], "in the query", "weight", height)
    right.dataframe(
        pd.DataFrame([{"token": t.token, "weight": t.weight, "expansion": t.expansion} for t in tokens]),
        hide_index=True,
        height=height,
        column_config={"weight": st.column_config.NumberColumn(format="%.3f")},
    )


# --- the page --------------------------------------------------------------------------------------
def main() -> None:
    page_header()
    args = app_arguments(sys.argv[1:])
    index = open_index_or_explain(args.index)
    if index is None:
        return
    sidebar_facts(index, args.index)
    settings, explain = sidebar_settings(index.meta, args.allow_reranker)
    query = st.text_input(
        "Query",
        key="query",
        placeholder="Ask something, e.g. what is the capital of france",
        label_visibility="collapsed",
    )
    searcher = searcher_or_explain(index, args)
    if searcher is None:
        return
    if not query or not query.strip():
        show_problem(EMPTY_QUERY)
        return
    settings.rerank = use_reranker(searcher, settings, args.allow_reranker, args.index)
    with models_lock():
        show_results(searcher, query, settings, explain, args.index)


EMPTY_QUERY = problem_of(
    "empty_query", "Type a query above and press Enter: the results show which tokens matched and why."
)


def page_header() -> None:
    st.set_page_config(page_title="hybrid-search", page_icon="🔎", layout="wide")
    st.html(render.CSS)
    st.title(":material/manage_search: hybrid-search")
    st.caption("Sparse + dense hybrid search with fusion, reranking and decoded token overlaps.")


def open_index_or_explain(location: str) -> Any:
    """The index, opened once per server; ``None`` when it cannot be, with the reason on the page."""
    try:
        return open_index_cached(location)
    except Exception as error:  # noqa: BLE001 - every failure becomes a message, never a traceback
        st.sidebar.markdown(f"### Index\n- **Location:** {render.code_span(redact(location))}\n- not loaded")
        show_problem(report(error, location, "opening the index"))
        return None


def searcher_or_explain(index: Any, args: Any) -> Any:
    """A searcher with the index's query models (or ``--sparse``/``--dense``); ``None``, explained, if one fails."""
    from hybrid_search.retrieval import HybridSearcher

    sparse_name, dense_name, cap = query_models(index.meta, args.sparse, args.dense)
    try:
        sparse = load_sparse(sparse_name, cap) if sparse_name else None
        dense = load_dense(dense_name) if dense_name else None
        return HybridSearcher(index, sparse=sparse, dense=dense)
    except Exception as error:  # noqa: BLE001
        show_problem(report(error, args.index, "loading the models"))
        return None


def use_reranker(searcher: Any, settings: SearchSettings, allowed: list[str], location: str) -> bool:
    """Give the searcher the chosen cross-encoder; whether reranking stays on (a warning says why not)."""
    if not settings.rerank:
        return False
    if settings.rerank_model not in allowed:  # e.g. set through the agent API
        st.warning(
            f"**Reranking is off:** {render.code_span(settings.rerank_model)} is not a cross-encoder this "
            "server allows (`hybrid-search ui --allow-reranker`).",
            icon=":material/warning:",
        )
        return False
    try:
        searcher.reranker = load_reranker(settings.rerank_model)
    except Exception as error:  # noqa: BLE001
        problem = report(error, location, "loading the cross-encoder")
        st.warning(
            f"**Reranking is off: {render.md_escape(problem.title.lower())}.** "
            f"{render.md_escape(problem.message)}\n\nThe results below are not reranked. To rerank "
            "offline, start the UI with `--allow-reranker FOLDER` (a local cross-encoder).",
            icon=":material/warning:",
        )
        return False
    return True


def show_results(searcher: Any, query: str, settings: SearchSettings, explain: bool, location: str) -> None:
    try:
        options = settings.to_options(searcher.index.meta)
        result = searcher.search(query, options)
    except Exception as error:  # noqa: BLE001
        show_problem(report(error, location, "the search"))
        return
    st.markdown(
        f"**{len(result.hits)} results** · {result_summary(result, options)} · {render.format_ms(result.total_ms)}"
    )
    sparse = searcher.sparse
    own = sparse.tokenizer.tokenize(query) if sparse is not None and sparse.has_vocabulary else []
    tokens = query_expansion(result.query_tokens, own)
    chips = render.query_tokens_html(tokens)
    if chips:
        st.html(chips)
    if not result.hits:
        st.info("No documents matched. Loosen the filters or try other words.", icon=":material/search_off:")
        return
    tokenizer = sparse.tokenizer if sparse is not None and sparse.has_vocabulary else None
    results_tab, compare_tab, query_tab, latency_tab = st.tabs(
        ["Results", "Compare rankings", "Query vector", "Latency"]
    )
    with results_tab:
        if result.fused_by:
            st.caption(
                f"Fusion settings from {render.md_escape(result.fusion_source)}; each card's fused score is the "
                "sum of its channels' terms."
            )
        for hit in result.hits:
            hit_card(hit, tokenizer, explain, options.rrf_k if options.fusion == "rrf" else None)
    with compare_tab:
        compare_view(result, searcher.index, depth=settings.k)
    with query_tab:
        query_vector_view(tokens)
    with latency_tab:
        latency_view(result.timings_ms, result.total_ms)
    why_not_panel.show(searcher, query, options)


def result_summary(result: Any, options: SearchOptions) -> str:
    """How the results were made: the mode, the fusion and who ran it, and whether they were reranked."""
    how = MODE_LABELS[options.mode]
    if result.fused_by:
        how += f" · {options.fusion.upper()}" + (f" k={options.rrf_k:g}" if options.fusion == "rrf" else "")
        how += f" · fused by the {result.fused_by}"
    if any(h.rerank_score is not None for h in result.hits):
        how += " · reranked"
    return how


main()
