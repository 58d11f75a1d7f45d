"""Self-supervised (pseudo-query, passage) pairs mined from unlabelled text.

The method is the Inverse Cloze Task (Lee et al., 2019, "Latent Retrieval for Weakly Supervised Open Domain
Question Answering"): one sentence of a passage plays the query, and the rest of the passage is its positive.
The sentence is usually removed from the passage, so that the model must match it through the vocabulary they
share and through expansion rather than by copying; with a small probability it is kept, so that exact lexical
overlap is rewarded too (the paper keeps it 10% of the time).

Two adaptations for retrieval queries, which are shorter than sentences: a sentence longer than
``max_query_words`` is cropped to a random window of that many words, and a passage with a single sentence
gives a random word window as the query and the remaining words as the passage.

Every random choice is made by a generator seeded from ``(seed, document id, pair number)``, so the pairs
are the same on every run and do not depend on the order of the documents or on the process.

Example:
    >>> from hybrid_search.training.mining import MiningConfig, mine_pairs
    >>> from hybrid_search.types import Document
    >>> doc = Document("d1", "Paris is the capital of France. It has 2 million inhabitants. The Seine runs through it.")
    >>> pairs, stats = mine_pairs([doc], MiningConfig(min_query_words=3, min_context_words=3))
    >>> len(pairs), stats["pairs"]
    (1, 1)
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from hybrid_search.types import Document

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


@dataclass(frozen=True)
class MiningConfig:
    """How pairs are mined.

    Attributes:
        pairs_per_doc: pseudo-queries drawn from each passage (different sentences while there are enough).
        min_query_words: shorter pseudo-queries are skipped.
        max_query_words: longer sentences are cropped to a random window of this many words.
        min_context_words: passages left with fewer words are skipped.
        keep_sentence_prob: probability of leaving the query sentence inside its passage.
        seed: seed of every random choice.
    """

    pairs_per_doc: int = 1
    min_query_words: int = 4
    max_query_words: int = 16
    min_context_words: int = 12
    keep_sentence_prob: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.pairs_per_doc < 1:
            raise ValueError("pairs_per_doc must be at least 1")
        if not 1 <= self.min_query_words <= self.max_query_words:
            raise ValueError("need 1 <= min_query_words <= max_query_words")
        if not 0.0 <= self.keep_sentence_prob <= 1.0:
            raise ValueError("keep_sentence_prob must be in [0, 1]")


def split_sentences(text: str) -> list[str]:
    """Split on ``.``, ``!`` or ``?`` followed by whitespace and a capital letter or digit."""
    return [s.strip() for s in _SENTENCE_END.split(text.strip()) if s.strip()]


def _crop(words: list[str], rng: random.Random, max_words: int) -> list[str]:
    if len(words) <= max_words:
        return words
    start = rng.randrange(len(words) - max_words + 1)
    return words[start : start + max_words]


def _one_pair(
    text: str, sentences: list[str], choice: int, rng: random.Random, cfg: MiningConfig
) -> dict[str, str] | None:
    if len(sentences) >= 2:
        sentence = sentences[choice]
        query_words = _crop(sentence.split(), rng, cfg.max_query_words)
        keep = rng.random() < cfg.keep_sentence_prob
        context = text if keep else " ".join(s for i, s in enumerate(sentences) if i != choice)
    else:
        # One sentence: a word window is the query and the remaining words are the passage.
        words = text.split()
        size = min(cfg.max_query_words, len(words) // 3)
        if size < cfg.min_query_words:
            return None
        start = rng.randrange(len(words) - size + 1)
        query_words = words[start : start + size]
        keep = rng.random() < cfg.keep_sentence_prob
        context = text if keep else " ".join(words[:start] + words[start + size :])
    if len(query_words) < cfg.min_query_words or len(context.split()) < cfg.min_context_words:
        return None
    return {"query": " ".join(query_words), "positive": context}


def mine_pairs(
    docs: Iterable[Document | str],
    config: MiningConfig | None = None,
    *,
    guard: Any | None = None,
) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Mine inverse-cloze (pseudo-query, passage) pairs.

    Args:
        docs: documents (or plain texts, numbered from 0) to mine.
        config: see :class:`MiningConfig`.
        guard: an object with ``leaks(query) -> bool`` (e.g. :class:`~hybrid_search.training.data.EvalQueryGuard`);
            pseudo-queries it flags are dropped, so evaluation queries never reach training.

    Returns:
        ``(pairs, stats)``: pairs as ``{"query", "positive", "doc_id"}`` dicts, and counts of ``documents``,
        ``pairs``, ``too_short`` (passages that gave no pair) and ``eval_query`` (pairs dropped by the guard).
    """
    cfg = config or MiningConfig()
    pairs: list[dict[str, str]] = []
    stats = {"documents": 0, "pairs": 0, "too_short": 0, "eval_query": 0}
    for n, doc in enumerate(docs):
        if isinstance(doc, str):
            doc = Document(id=str(n), text=doc)
        stats["documents"] += 1
        text = " ".join(doc.full_text.split())
        sentences = split_sentences(text)
        # Seeding random.Random with a string hashes it with SHA-512: stable across processes.
        order = list(range(len(sentences)))
        random.Random(f"{cfg.seed}\x00{doc.id}\x00order").shuffle(order)
        seen: set[tuple[str, str]] = set()
        for k in range(cfg.pairs_per_doc):
            rng = random.Random(f"{cfg.seed}\x00{doc.id}\x00{k}")
            choice = order[k % len(order)] if order else 0
            pair = _one_pair(text, sentences, choice, rng, cfg)
            if pair is None or (pair["query"], pair["positive"]) in seen:
                continue
            seen.add((pair["query"], pair["positive"]))
            if guard is not None and guard.leaks(pair["query"]):
                stats["eval_query"] += 1
                continue
            pairs.append({**pair, "doc_id": doc.id})
        if not seen:
            stats["too_short"] += 1
    stats["pairs"] = len(pairs)
    return pairs, stats
