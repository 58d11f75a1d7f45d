"""Tie decoded sparse tokens back to the text they came from, for highlighting and for telling expansion apart.

A WordPiece vocabulary has word-start tokens (``paris``) and continuation tokens (``##s``). The fast
tokenizer's offset mapping says which characters each token covers, in the original text (casing and accents
are normalised only inside the tokenizer), so a matched word-start token marks its word and a matched
continuation token marks only its piece of the word. Each span also carries the whole word it sits in, so a
renderer can show "this part of this word matched".

Example:
    >>> from hybrid_search.encoders import SparseEncoder
    >>> enc = SparseEncoder.load("splade-tiny")  # doctest: +SKIP
    >>> ids = enc.tokenizer.convert_tokens_to_ids(["paris", "##s"])  # doctest: +SKIP
    >>> [(s.start, s.end, s.token) for s in match_spans("Skyscrapers in Paris", enc.tokenizer, ids)]  # doctest: +SKIP
    [(10, 11, '##s'), (15, 20, 'paris')]
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

CONTINUATION = "##"


@dataclass(frozen=True)
class Span:
    """Characters ``[start, end)`` of a text that a matched token covers, inside the word ``[word_start, word_end)``."""

    start: int
    end: int
    token: str
    token_id: int
    word_start: int
    word_end: int

    @property
    def is_piece(self) -> bool:
        """True when the token covers only part of its word (a continuation or a split word's head)."""
        return (self.start, self.end) != (self.word_start, self.word_end)


def match_spans(text: str, tokenizer: Any, token_ids: Collection[int]) -> list[Span]:
    """Where the tokens ``token_ids`` occur in ``text``, in text order.

    Args:
        text: the original text.
        tokenizer: a Hugging Face tokenizer; a fast one gives exact character offsets. Other tokenizers
            fall back to matching the token strings (see :func:`match_spans_by_string`).
        token_ids: the vocabulary ids to find, e.g. the non-expansion rows of an explanation.
    """
    wanted = {int(i) for i in token_ids}
    if not text or not wanted:
        return []
    if not getattr(tokenizer, "is_fast", False):
        tokens = {tokenizer.convert_ids_to_tokens(i): i for i in wanted}
        return match_spans_by_string(text, tokens)
    encoding = tokenizer(text, add_special_tokens=False, truncation=False, return_offsets_mapping=True, verbose=False)
    ids: list[int] = encoding["input_ids"]
    offsets: list[tuple[int, int]] = encoding["offset_mapping"]
    words = encoding.word_ids() if hasattr(encoding, "word_ids") else [None] * len(ids)
    bounds: dict[int, list[int]] = {}
    for word, (start, end) in zip(words, offsets):
        if word is not None:
            low_high = bounds.setdefault(word, [start, end])
            low_high[0], low_high[1] = min(low_high[0], start), max(low_high[1], end)
    spans = []
    for token_id, (start, end), word in zip(ids, offsets, words):
        if token_id in wanted and end > start:
            word_start, word_end = bounds[word] if word is not None else (start, end)
            spans.append(Span(start, end, tokenizer.convert_ids_to_tokens(token_id), token_id, word_start, word_end))
    return spans


_WORD = re.compile(r"\w+", re.UNICODE)


def match_spans_by_string(text: str, tokens: dict[str, int]) -> list[Span]:
    """Fallback without offsets: a word-start token matches a whole word (case-insensitive), a ``##`` token the
    end of a longer word."""
    spans = []
    for word in _WORD.finditer(text):
        lowered = word.group().lower()
        for token, token_id in tokens.items():
            if token.startswith(CONTINUATION):
                piece = token[len(CONTINUATION) :]
                if piece and len(lowered) > len(piece) and lowered.endswith(piece):
                    spans.append(Span(word.end() - len(piece), word.end(), token, token_id, word.start(), word.end()))
            elif lowered == token:
                spans.append(Span(word.start(), word.end(), token, token_id, word.start(), word.end()))
    return sorted(spans, key=lambda s: (s.start, s.end))


@dataclass(frozen=True)
class QueryToken:
    """One dimension of the query's sparse vector, decoded."""

    token: str
    weight: float
    expansion: bool  # not in the query's own tokenisation: the model added it


def query_expansion(decoded: Iterable[tuple[str, float]], own_tokens: Sequence[str]) -> list[QueryToken]:
    """Split a decoded query vector into the query's own tokens and the ones the model expanded it into.

    Args:
        decoded: ``[(token, weight)]`` as :meth:`SparseEncoder.decode` returns it.
        own_tokens: the query's own tokenisation (``tokenizer.tokenize(query)``).

    Example:
        >>> [(t.token, t.expansion) for t in query_expansion([("paris", 2.0), ("france", 1.5)], ["paris"])]
        [('paris', False), ('france', True)]
    """
    own = set(own_tokens)
    return [QueryToken(token, float(weight), token not in own) for token, weight in decoded]
