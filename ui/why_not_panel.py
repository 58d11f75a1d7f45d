"""The UI's "why not this document?" panel: what ``hybrid-search explain QUERY --doc ID`` shows, for the
query on the page and the settings in the sidebar.

The explanation is :func:`hybrid_search.why_not.why_not_for` (the same call as ``explain --doc``): the
document's exact rank and score in each channel, even beyond the prefetch depth, the fused score it had or
would have had, the score of the k-th hit it had to beat, the query tokens it matches and lacks, and the
prefetch depth or channel weight at which it would have entered the top k. The functions above :func:`show`
only format a report, so they are tested without Streamlit.
"""

from __future__ import annotations

from typing import Any

from pipelines.markdown import code_span, md_escape

KEY = "why_not_doc"
WHERE = {
    "prefetch": "in the prefetch (a fusion candidate)",
    "beyond": "beyond the prefetch depth",
    "absent": "not returned (shares no term with the query)",
}


def channel_rows(report: Any) -> list[dict[str, Any]]:
    """One row per channel: the document's exact rank and score there, and whether fusion saw it."""
    rows = []
    for channel, s in report.channels.items():
        where = "prefetch" if s.in_prefetch else ("beyond" if s.returned else "absent")
        fused = channel in report.setting["channels"]
        rows.append(
            {
                "channel": channel,
                "rank": s.rank,
                "score": s.score,
                "where": WHERE[where],
                "fused": fused,
            }
        )
    return rows


def verdict_markdown(report: Any) -> str:
    """The headline: in the top k or not, its fused score, and the k-th hit's score it had to beat."""
    doc, k = code_span(report.doc_id), report.k
    if report.in_top_k:
        return f"**{doc} is #{report.fused_rank} of the top {k}**: fused score {report.fused_score:.6f}."
    if report.fused_rank:
        had = f"fused #{report.fused_rank} with score {report.fused_score:.6f}"
    else:
        had = "not a fusion candidate (no channel passed it on within the prefetch depth)"
    kth = f"{report.kth_score:.6f}" if report.kth_score is not None else "– (fewer than k candidates)"
    line = f"**{doc} is not in the top {k}**: {had}; the #{k} hit scored **{kth}**."
    if report.fused_score_if_prefetched is not None and not report.fused_rank:
        line += f" Had every channel passed it on, it would have scored {report.fused_score_if_prefetched:.6f}."
    return line


def remedy_lines(report: Any) -> list[str]:
    """What would have put it in the top k: a deeper prefetch, or more weight on one channel."""
    if report.in_top_k:
        return []
    depth = report.enters_at_prefetch_k
    lines = [
        f"Enters the top {report.k} at prefetch depth **{depth}**."
        if depth
        else f"No prefetch depth among its channel ranks lifts it into the top {report.k}."
    ]
    for channel, weight in report.enters_at_weight.items():
        lines.append(
            f"Enters with {md_escape(channel)} weight **{weight:g}** (the others unchanged)."
            if weight is not None
            else f"No {md_escape(channel)} weight up to ×128 lifts it (or it is no candidate there)."
        )
    return lines


def token_markdown(report: Any, limit: int = 12) -> str:
    """The sparse tokens it matches (with their contributions) and the query tokens it lacks, and the
    query words in and missing from its text."""
    lines = []
    if report.matched_tokens:
        cells = [
            f"{code_span(r.token)}{'*' if r.expansion else ''} {r.contribution:.2f}"
            for r in report.matched_tokens[:limit]
        ]
        lines.append("**Matched sparse tokens:** " + ", ".join(cells))
    if report.missing_tokens:
        lines.append(
            "**Query tokens it lacks:** "
            + ", ".join(f"{code_span(t)} {w:.2f}" for t, w in report.missing_tokens[:limit])
        )
    words_in = ", ".join(code_span(w) for w in report.matched_words) or "–"
    words_out = ", ".join(code_span(w) for w in report.missing_words) or "–"
    lines.append(f"**Query words in its text:** {words_in}; **missing:** {words_out}")
    return "\n\n".join(lines)


def setting_caption(report: Any, source: str) -> str:
    """Which fusion was explained, and where its settings came from."""
    s = report.setting
    how = f"{s['method']} over {'+'.join(s['channels'])}" if len(s["channels"]) > 1 else f"{s['channels'][0]} alone"
    return f"Explained for {md_escape(how)}, prefetch {s['prefetch_k']}, k = {report.k}; settings from {md_escape(source)}."


def unknown_id_message(doc_id: str) -> str:
    return (
        f"**No document with id {code_span(doc_id)} in this index.** Ids are the corpus ids shown on each "
        "result card and in the compare view."
    )


def show(searcher: Any, query: str, options: Any) -> None:
    """The panel: a document id box under the results; the explanation of that id for this query."""
    import pandas as pd
    import streamlit as st

    from hybrid_search.why_not import DocumentNotFoundError, why_not_for

    with st.expander("Why not this document?", expanded=bool(st.session_state.get(KEY))):
        doc_id = st.text_input("Document id", key=KEY, placeholder="a corpus id, e.g. one you expected to see")
        if not doc_id or not doc_id.strip():
            st.caption("Enter a document id to see where it stands in each channel and what it needed.")
            return
        try:
            report = why_not_for(searcher, query, doc_id.strip(), options)
        except DocumentNotFoundError:
            st.warning(unknown_id_message(doc_id.strip()), icon=":material/help:")
            return
        except ValueError as error:
            st.warning(md_escape(str(error)), icon=":material/warning:")
            return
        st.markdown(verdict_markdown(report))
        st.dataframe(
            pd.DataFrame(channel_rows(report)),
            hide_index=True,
            column_config={"score": st.column_config.NumberColumn(format="%.4f")},
        )
        for line in remedy_lines(report):
            st.markdown(line)
        st.markdown(token_markdown(report))
        for note in report.notes:
            st.caption(md_escape(note))
        st.caption(setting_caption(report, options.fusion_source))
        if options.rerank and getattr(searcher, "reranker", None) is not None:
            st.caption("The ranks and scores here are before reranking: the cross-encoder is not explained.")
