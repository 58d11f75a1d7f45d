"""Pure HTML and text formatting for the UI: no Streamlit, no models, so it is tested on its own.

Every piece of document text goes through :func:`html.escape` before it is wrapped in markup, and through
:func:`md_escape` or :func:`code_span` (from :mod:`pipelines.markdown`) before it goes into Markdown.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hybrid_search.compare import Movement
from hybrid_search.constants import TIMING_PARENTS
from hybrid_search.explain import explained_score
from hybrid_search.fusion import describe_terms
from hybrid_search.highlight import QueryToken, Span
from pipelines.markdown import code_span, hit_line_head, md_escape  # noqa: F401 - the page's Markdown escaping

STAGE_LABELS = {"sparse": "Sparse", "dense": "Dense", "bm25": "BM25", "fused": "Hybrid (fused)", "reranked": "Reranked"}
TIMING_LABELS = {
    "encode": "encode",
    "encode_sparse": "encode sparse",
    "encode_dense": "encode dense",
    "search_sparse": "sparse search",
    "search_dense": "dense search",
    "search_bm25": "BM25 search",
    "fusion": "fusion",
    "rerank": "rerank",
    "explain": "explain",
}

#: How many tokens a "why" panel's chart shows (its table shows them all).
WHY_CHART_TOKENS = 20

CSS = """
<style>
[data-testid="stMainBlockContainer"] { padding-top: 2.5rem; }
.hs-title { font-size: 1.05rem; font-weight: 600; line-height: 1.4; }
.hs-text { line-height: 1.55; color: #1f2937; }
mark.hs-match { background: rgba(250, 204, 21, var(--w, .55)); color: inherit; padding: 0 .08rem; border-radius: .2rem;
                box-shadow: inset 0 -2px 0 rgba(202, 138, 4, .55); }
.hs-word { text-decoration: underline dotted rgba(202, 138, 4, .9); text-underline-offset: 3px; }
mark.hs-piece { padding: 0; border-radius: 0; }
.hs-chips { display: flex; flex-wrap: wrap; gap: .3rem; align-items: center; margin: .2rem 0; font-size: .85rem; }
.hs-chips .hs-label { color: #6b7280; margin-right: .2rem; }
.hs-chip { display: inline-flex; gap: .3rem; align-items: baseline; padding: .05rem .5rem; border-radius: 999px;
           border: 1px solid #facc15; background: #fef9c3; }
.hs-chip.hs-exp { border-color: #a78bfa; background: #ede9fe; }
.hs-chip small { color: #6b7280; }
.hs-grid { display: grid; gap: .6rem; grid-template-columns: repeat(var(--cols), minmax(0, 1fr)); font-size: .85rem; }
.hs-col h4 { font-size: .95rem; margin: 0 0 .3rem 0; padding: 0; }
.hs-entry { padding: .25rem .4rem; margin-bottom: .25rem; border: 1px solid #e5e7eb; border-radius: .4rem;
            white-space: nowrap; overflow: hidden; text-overflow: ellipsis; }
.hs-entry code { font-size: .8rem; }
.hs-up { color: #15803d; font-weight: 600; }
.hs-down { color: #b91c1c; font-weight: 600; }
.hs-same { color: #6b7280; }
.hs-new { color: #7c3aed; font-weight: 600; }
</style>
"""


def esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def highlight(text: str, spans: Sequence[Span], weights: Mapping[int, float] | None = None) -> str:
    """``text`` as HTML with each span in a ``<mark class="hs-match">``.

    A token that covers part of its word (a ``##`` continuation, or the head of a split word) is marked as a
    piece, and its whole word gets a dotted underline: the reader sees which part of which word matched.
    ``weights`` (token id → contribution) set each mark's intensity.

    Example:
        >>> highlight("a <b> Paris", [Span(6, 11, "paris", 1, 6, 11)])
        'a &lt;b&gt; <mark class="hs-match" style="--w:0.85" title="paris">Paris</mark>'
    """
    spans = sorted(
        {(s.start, s.end): s for s in spans if 0 <= s.start < s.end <= len(text)}.values(), key=lambda s: s.start
    )
    top = max((abs(weights.get(s.token_id, 0.0)) for s in spans), default=0.0) if weights else 0.0
    out: list[str] = []
    pos = 0
    i = 0
    while i < len(spans):
        word_start, word_end = spans[i].word_start, spans[i].word_end
        group = [spans[i]]
        while i + 1 < len(spans) and (spans[i + 1].word_start, spans[i + 1].word_end) == (word_start, word_end):
            i += 1
            group.append(spans[i])
        i += 1
        piecewise = any(s.is_piece for s in group)
        start = word_start if piecewise else group[0].start
        if start < pos:  # overlapping spans from a fallback matcher: skip rather than garble the text
            continue
        out.append(esc(text[pos:start]))
        if piecewise:
            out.append('<span class="hs-word">')
            cursor = word_start
            for s in group:
                out.append(esc(text[cursor : s.start]))
                out.append(_mark(text[s.start : s.end], s, weights, top, piece=True))
                cursor = s.end
            out.append(esc(text[cursor:word_end]) + "</span>")
            pos = word_end
        else:
            s = group[0]
            out.append(_mark(text[s.start : s.end], s, weights, top, piece=False))
            pos = s.end
    out.append(esc(text[pos:]))
    return "".join(out)


def _mark(fragment: str, span: Span, weights: Mapping[int, float] | None, top: float, *, piece: bool) -> str:
    strength = 0.85
    tip = span.token
    if weights and top > 0 and span.token_id in weights:
        contribution = weights[span.token_id]
        strength = 0.25 + 0.6 * abs(contribution) / top
        tip = f"{span.token}: contributes {contribution:.2f} to the sparse score"
    css_class = "hs-match hs-piece" if piece else "hs-match"
    return f'<mark class="{css_class}" style="--w:{strength:.2f}" title="{esc(tip)}">{esc(fragment)}</mark>'


def chip(token: str, detail: str = "", *, expansion: bool = False, tip: str = "") -> str:
    css_class = "hs-chip hs-exp" if expansion else "hs-chip"
    title = f' title="{esc(tip)}"' if tip else ""
    small = f"<small>{esc(detail)}</small>" if detail else ""
    return f'<span class="{css_class}"{title}>{esc(token)}{small}</span>'


def query_tokens_html(tokens: Iterable[QueryToken], limit: int = 20) -> str:
    """The query's sparse vector as chips, by weight: its own tokens in yellow, expansion tokens in violet."""
    tokens = list(tokens)[:limit]
    if not tokens:
        return ""
    cells = [
        chip(
            t.token,
            f"{t.weight:.2f}",
            expansion=t.expansion,
            tip="added by the model's expansion" if t.expansion else "in the query text",
        )
        for t in tokens
    ]
    return '<div class="hs-chips"><span class="hs-label">Query vector:</span>' + "".join(cells) + "</div>"


def expansion_html(rows: Iterable[Any], limit: int = 12) -> str:
    """The expansion rows of an explanation: tokens that matched though the document text does not contain them."""
    rows = [r for r in rows if r.expansion][:limit]
    if not rows:
        return ""
    cells = [
        chip(
            r.token,
            f"{r.query_weight:.2f}×{r.doc_weight:.2f}",
            expansion=True,
            tip=f"not in the text; contributes {r.contribution:.2f}",
        )
        for r in rows
    ]
    return (
        '<div class="hs-chips"><span class="hs-label">Matched through expansion (not in the text):</span>'
        + "".join(cells)
        + "</div>"
    )


def hit_key(rank: int) -> str:
    """The result card's element key: Streamlit gives the card the CSS class ``st-key-hit-<rank>``, and the agent
    API's snapshot the key, so a browser test or a script finds the n-th card without reading its text.

    Example:
        >>> hit_key(3), why_key(3)
        ('hit-3', 'why-3')
    """
    return f"hit-{rank}"


def why_key(rank: int) -> str:
    """The key of the n-th card's "why" panel (an expander): its CSS class is ``st-key-why-<rank>``."""
    return f"why-{rank}"


def hit_line(hit: Any) -> str:
    """The card's header in Streamlit markdown: ``**#rank** · `id` ·`` score and metadata badges.

    Scripts read it back (:func:`pipelines.markdown.parse_hit_line`), so its start is fixed; the id is a code
    span whatever backticks it holds, so it cannot close its span and inject Markdown.

    Example:
        >>> from hybrid_search.types import Hit
        >>> hit_line(Hit("d1", None, 0.03, 1, channel_ranks={"sparse": 2}, fused_score=0.03))
        '**#1** · `d1` · :violet-badge[fused 0.0300] :gray-badge[sparse #2]'
    """
    parts = [hit_line_head(hit.rank, hit.id)]
    if hit.fused_score is not None:
        parts.append(f":violet-badge[fused {hit.fused_score:.4f}]")
    elif hit.rerank_score is None:
        parts.append(f":violet-badge[score {hit.score:.4f}]")
    for channel in ("sparse", "dense", "bm25"):
        if channel in hit.channel_ranks:
            parts.append(f":gray-badge[{channel} #{hit.channel_ranks[channel]}]")
    if hit.rerank_score is not None:
        parts.append(f":green-badge[rerank {hit.rerank_score:.3f}]")
    metadata = hit.document.metadata if hit.document is not None else {}
    parts += [f":blue-badge[{md_escape(k)}: {md_escape(v)}]" for k, v in sorted(metadata.items())]
    return " ".join(parts)


def sparse_equation(rows: Sequence[Any], sparse_score: float | None, shown: int = WHY_CHART_TOKENS) -> str:
    """The "why" panel's sum: the token contributions add up to the sparse channel's score (Markdown).

    Example:
        >>> from hybrid_search.types import TokenContribution as T
        >>> sparse_equation([T("paris", 1, 2.0, 1.5, 3.0, False), T("city", 2, 1.0, 0.5, 0.5, True)], 3.5, shown=1)
        "**Σ contributions = 3.5000** = the sparse channel's score 3.5000; the chart shows the top 1 of 2 tokens (the rest add 0.5000)"
    """
    equation = f"**Σ contributions = {explained_score(list(rows)):.4f}**"
    if sparse_score is not None:
        equation += f" = the sparse channel's score {sparse_score:.4f}"
    else:
        equation += " = the sparse dot product (this document was not in the sparse channel's candidates)"
    if len(rows) > shown:
        rest = sum(r.contribution for r in rows[shown:])
        equation += f"; the chart shows the top {shown} of {len(rows)} tokens (the rest add {rest:.4f})"
    return equation


def contribution_rows(rows: Iterable[Any]) -> list[dict[str, Any]]:
    """The "why" panel's table: one row per shared token."""
    return [
        {
            "token": r.token,
            "query weight": r.query_weight,
            "doc weight": r.doc_weight,
            "contribution": r.contribution,
            "expansion": r.expansion,
        }
        for r in rows
    ]


def shift_html(shift: int | None) -> str:
    """↑3 / ↓2 / = for a rank change; "new" when the document was not in the earlier stage."""
    if shift is None:
        return '<span class="hs-new">new</span>'
    if shift > 0:
        return f'<span class="hs-up">↑{shift}</span>'
    if shift < 0:
        return f'<span class="hs-down">↓{-shift}</span>'
    return '<span class="hs-same">=</span>'


def shift_text(shift: int | None) -> str:
    if shift is None:
        return "new"
    return f"↑{shift}" if shift > 0 else f"↓{-shift}" if shift < 0 else "="


def side_by_side_html(
    stage_lists: Mapping[str, Sequence[str]], moves: Sequence[Movement], titles: Mapping[str, str], depth: int = 10
) -> str:
    """The stages as columns, each its top ``depth``; fused and reranked entries show how far they moved."""
    by_id = {m.id: m for m in moves}
    channels = [s for s in stage_lists if s in ("sparse", "dense", "bm25")]
    columns = []
    for stage, ids in stage_lists.items():
        entries = []
        for rank, doc_id in enumerate(list(ids)[:depth], start=1):
            move = by_id.get(doc_id)
            note = ""
            if move is not None and stage in channels and "fused" in stage_lists:
                fused_rank = move.ranks.get("fused")
                note = f"<small>→ #{fused_rank}</small>" if fused_rank else '<small class="hs-down">→ out</small>'
            elif move is not None and stage == "fused":
                best = move.best_channel(channels)
                note = shift_html(move.shift(best[0], "fused") if best else None)
                if best:
                    note += f" <small>from {esc(best[0])} #{best[1]}</small>"
            elif move is not None and stage == "reranked":
                before = "fused" if "fused" in stage_lists else (channels[0] if channels else stage)
                note = shift_html(move.shift(before, "reranked"))
            title = titles.get(doc_id, "")
            entries.append(
                f'<div class="hs-entry" title="{esc(title)}">{rank}. <code>{esc(doc_id)}</code> {note} '
                f"{esc(title)}</div>"
            )
        columns.append(f'<div class="hs-col"><h4>{esc(STAGE_LABELS.get(stage, stage))}</h4>{"".join(entries)}</div>')
    return f'<div class="hs-grid" style="--cols:{max(len(columns), 1)}">{"".join(columns)}</div>'


def movement_rows(
    moves: Sequence[Movement], stage_names: Sequence[str], titles: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Table rows: each document's rank per stage and its shift through fusion and reranking."""
    channels = [s for s in stage_names if s in ("sparse", "dense", "bm25")]
    rows = []
    for move in moves:
        row: dict[str, Any] = {"id": move.id, "title": titles.get(move.id, "")}
        for stage in stage_names:
            row[STAGE_LABELS.get(stage, stage)] = move.ranks.get(stage)
        if "fused" in stage_names:
            best = move.best_channel(channels)
            row["fusion moved"] = shift_text(move.shift(best[0], "fused") if best else None)
        if "reranked" in stage_names:
            row["rerank moved"] = shift_text(move.shift("fused" if "fused" in stage_names else channels[0], "reranked"))
        rows.append(row)
    return rows


def timing_tree(timings_ms: Mapping[str, float], total_ms: float | None = None) -> list[tuple[str, float, str | None]]:
    """``[(stage label, ms, parent label or None)]`` in pipeline order, each part right after its parent, then
    the total: ``total_ms`` when the pipeline measured it, else the sum of the top-level stages (a part, such
    as ``encode sparse`` inside ``encode``, is never added twice).

    Example:
        >>> timing_tree({"encode": 5.0, "encode_sparse": 3.0, "encode_dense": 4.0, "fusion": 1.0})
        [('encode', 5.0, None), ('encode sparse', 3.0, 'encode'), ('encode dense', 4.0, 'encode'), ('fusion', 1.0, None), ('total', 6.0, None)]
    """

    def label(stage: str) -> str:
        return TIMING_LABELS.get(stage, stage)

    stages = [k for k in TIMING_LABELS if k in timings_ms] + [k for k in timings_ms if k not in TIMING_LABELS]
    parent_of = {k: p for k, p in TIMING_PARENTS.items() if k in timings_ms and p in timings_ms}
    rows: list[tuple[str, float, str | None]] = []
    for stage in (s for s in stages if s not in parent_of):
        rows.append((label(stage), timings_ms[stage], None))
        rows += [(label(part), timings_ms[part], label(stage)) for part in stages if parent_of.get(part) == stage]
    if not rows:
        return []
    top = sum(ms for _, ms, parent in rows if parent is None)
    return rows + [("total", total_ms if total_ms is not None else top, None)]


def timing_rows(timings_ms: Mapping[str, float], total_ms: float | None = None) -> list[tuple[str, float]]:
    """``[(stage label, ms)]`` of :func:`timing_tree`: pipeline order, parts after their parent, then a total."""
    return [(label, ms) for label, ms, _ in timing_tree(timings_ms, total_ms)]


def fusion_terms_markdown(hit: Any, rrf_k: float | None = None) -> str:
    """A hit's fused score as the sum of its channels' terms, for the result card (Streamlit markdown).

    Example:
        >>> from hybrid_search.types import FusionTerm, Hit
        >>> hit = Hit("d1", None, 0.0325, 1, fused_score=0.0325, fusion_terms=[
        ...     FusionTerm("sparse", 1, 12.5, 1.0, None, 1 / 61), FusionTerm("dense", 3, 0.71, 1.0, None, 1 / 63)])
        >>> fusion_terms_markdown(hit, 60)
        'fused 0.0323 = sparse #1 (12.5): 1/(60+1) = 0.0164 + dense #3 (0.71): 1/(60+3) = 0.0159'
    """
    total = sum(t.term for t in hit.fusion_terms)
    return f"fused {total:.4f} = " + md_escape(describe_terms(hit.fusion_terms, rrf_k))


def format_ms(ms: float) -> str:
    return f"{ms:.1f} ms" if ms < 100 else f"{ms:.0f} ms"
