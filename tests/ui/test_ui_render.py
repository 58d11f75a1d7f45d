from __future__ import annotations

import re

from hybrid_search.compare import movements
from hybrid_search.highlight import QueryToken, Span, match_spans
from hybrid_search.types import Hit, TokenContribution
from ui import render


def _strip_tags(markup: str) -> str:
    return re.sub(r"<[^>]+>", "", markup)


def test_highlight_escapes_the_text_and_keeps_it_intact():
    text = 'x < y & "Paris" <script>'
    out = render.highlight(text, [Span(9, 14, "paris", 7, 9, 14)], {7: 2.0})
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert (
        '<mark class="hs-match" style="--w:0.85" title="paris: contributes 2.00 to the sparse score">Paris</mark>'
        in out
    )
    assert render.esc(text) == _strip_tags(out)  # marking adds tags only


def test_pieces_are_marked_inside_their_underlined_word():
    text = "big skyscrapers here"
    spans = [Span(4, 14, "skyscraper", 1, 4, 15), Span(14, 15, "##s", 2, 4, 15)]
    out = render.highlight(text, spans, {1: 3.0, 2: 1.0})
    assert out.startswith('big <span class="hs-word"><mark class="hs-match hs-piece" style="--w:0.85"')
    assert ">s</mark></span> here" in out
    assert 'style="--w:0.45"' in out  # the weaker token is paler
    assert _strip_tags(out) == text


def test_real_wordpiece_highlighting(splade):
    text = "Left ventricular hypertrophy causes"
    ids = set(splade.tokenizer.convert_tokens_to_ids(["vent", "##ric", "causes"]))
    out = render.highlight(text, match_spans(text, splade.tokenizer, ids))
    assert _strip_tags(out) == text
    assert '<span class="hs-word"><mark class="hs-match hs-piece"' in out and ">vent</mark>" in out
    assert re.search(r'<mark class="hs-match"[^>]*>causes</mark>', out)


def test_chips_for_query_tokens_and_expansion_rows():
    tokens = [QueryToken("paris", 2.5, False), QueryToken("france", 1.25, True)]
    out = render.query_tokens_html(tokens)
    assert '<span class="hs-chip" title="in the query text">paris<small>2.50</small></span>' in out
    assert 'class="hs-chip hs-exp"' in out and "france<small>1.25</small>" in out
    assert render.query_tokens_html([]) == ""
    rows = [TokenContribution("paris", 1, 1.0, 2.0, 2.0, False), TokenContribution("<b>", 2, 0.5, 1.0, 0.5, True)]
    exp = render.expansion_html(rows)
    assert "paris" not in exp and "&lt;b&gt;<small>0.50×1.00</small>" in exp
    assert render.expansion_html(rows[:1]) == ""


def test_hit_line_carries_rank_id_and_scores():
    hit = Hit(
        "d 1",
        None,
        0.5,
        3,
        channel_ranks={"dense": 4, "sparse": 1},
        fused_score=0.03125,
        rerank_score=2.5,
        explanation=None,
    )
    assert render.hit_line(hit) == (
        "**#3** · `d 1` · :violet-badge[fused 0.0312] :gray-badge[sparse #1] :gray-badge[dense #4] :green-badge[rerank 2.500]"
    )
    single = Hit("x", None, 12.5, 1, channel_ranks={"bm25": 1})
    assert render.hit_line(single) == "**#1** · `x` · :violet-badge[score 12.5000] :gray-badge[bm25 #1]"


def test_hit_line_shows_metadata():
    from hybrid_search.types import Document

    hit = Hit("x", Document("x", "t", metadata={"lang": "en", "year": 2019}), 1.0, 1)
    assert render.hit_line(hit).endswith(":blue-badge[lang: en] :blue-badge[year: 2019]")


def test_shifts_and_side_by_side():
    assert [render.shift_text(s) for s in (3, -2, 0, None)] == ["↑3", "↓2", "=", "new"]
    lists = {"sparse": ["a", "b"], "dense": ["b", "c"], "fused": ["b", "a", "c"], "reranked": ["c", "b"]}
    moves = movements(lists, depth=2)
    out = render.side_by_side_html(lists, moves, {"a": "Alpha <x>"}, depth=2)
    assert out.count('class="hs-col"') == 4 and "--cols:4" in out
    assert "Hybrid (fused)" in out and "Reranked" in out and "Alpha &lt;x&gt;" in out
    # b is dense #1 and fused #1: no move; c goes from fused #3 to reranked #1.
    assert '<code>b</code> <span class="hs-same">=</span> <small>from dense #1</small>' in out
    assert '<code>c</code> <span class="hs-up">↑2</span>' in out
    # Channel columns say where each document landed after fusion.
    assert "1. <code>a</code> <small>→ #2</small>" in out and "2. <code>c</code> <small>→ #3</small>" in out
    rows = render.movement_rows(moves, list(lists), {"a": "Alpha"})
    by_id = {r["id"]: r for r in rows}
    assert by_id["c"]["Reranked"] == 1 and by_id["c"]["rerank moved"] == "↑2"
    assert by_id["a"]["fusion moved"] == "↓1" and by_id["a"]["Sparse"] == 1 and by_id["a"]["Dense"] is None


def test_timings_in_pipeline_order_with_a_total():
    rows = render.timing_rows({"fusion": 1.0, "encode_sparse": 2.0, "search_sparse": 3.0, "custom": 4.0})
    assert rows == [("encode sparse", 2.0), ("sparse search", 3.0), ("fusion", 1.0), ("custom", 4.0), ("total", 10.0)]
    assert render.timing_rows({}) == []
    assert render.format_ms(3.14159) == "3.1 ms" and render.format_ms(1234.5) == "1234 ms"


def test_markdown_escape():
    assert render.md_escape("a_b *c* $x$ :red[y]") == r"a\_b \*c\* \$x\$ :red\[y\]"
