from __future__ import annotations

from hybrid_search.highlight import Span, match_spans, match_spans_by_string, query_expansion


def _ids(splade, *tokens):
    return splade.tokenizer.convert_tokens_to_ids(list(tokens))


def test_word_and_continuation_tokens_map_to_the_original_characters(splade):
    text = "Skyscrapers in PARIS, Île-de-France"
    spans = match_spans(text, splade.tokenizer, _ids(splade, "paris", "##s", "france"))
    found = [(text[s.start : s.end], s.token, s.is_piece, text[s.word_start : s.word_end]) for s in spans]
    # "skyscrapers" is skyscraper + ##s: only the piece is marked, inside its whole word; casing is kept.
    assert found == [
        ("s", "##s", True, "Skyscrapers"),
        ("PARIS", "paris", False, "PARIS"),
        ("France", "france", False, "France"),
    ]


def test_accents_are_normalised_by_the_tokenizer_but_offsets_point_at_the_original(splade):
    text = "Le café à Paris"
    (span,) = match_spans(text, splade.tokenizer, _ids(splade, "cafe"))
    assert text[span.start : span.end] == "café"


def test_nothing_to_find():
    assert match_spans("", None, {1}) == []
    assert match_spans("text", None, set()) == []


def test_the_string_fallback_for_tokenizers_without_offsets():
    class Slow:
        is_fast = False

        @staticmethod
        def convert_ids_to_tokens(i):
            return {1: "paris", 2: "##ers"}[i]

    spans = match_spans("Paris skyscrapers ers", Slow(), {1, 2})
    assert [(s.start, s.end, s.token, s.is_piece) for s in spans] == [(0, 5, "paris", False), (14, 17, "##ers", True)]
    assert match_spans_by_string("a b", {}) == []


def test_span_is_piece():
    assert Span(0, 3, "abc", 1, 0, 3).is_piece is False
    assert Span(3, 4, "##s", 2, 0, 4).is_piece is True


def test_query_expansion_marks_tokens_the_query_text_lacks(splade):
    query = "causes of left ventricular hypertrophy"
    decoded = splade.decode(splade.encode_query([query])[0], top_k=30)
    tokens = query_expansion(decoded, splade.tokenizer.tokenize(query))
    own = {t.token for t in tokens if not t.expansion}
    assert own <= set(splade.tokenizer.tokenize(query)) and "left" in own
    assert any(t.expansion for t in tokens)  # SPLADE always adds some
    assert [t.weight for t in tokens] == sorted((t.weight for t in tokens), reverse=True)
