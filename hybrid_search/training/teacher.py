"""Teacher margins for distillation (``finetune --teacher hybrid``): the mining ranking's channels as a bounded target.

Why: a contrastive loss (``SparseMultipleNegativesRankingLoss``, with hard or in-batch negatives) keeps rewarding a
larger gap between the positive and the negatives, however large it already is. For an inference-free model,
whose query side is a table of IDF weights, the cheapest way to widen that gap is to delete from documents the
query terms a negative shares with the positive; four contrastive recipes on SciFact did exactly that and lowered
test nDCG@10 (docs/finetuning.md). ``SparseMarginMSELoss`` instead asks, for each (query, positive, negative),
for one *given* margin: once the student's margin reaches the teacher's, the loss stops pushing.

The teacher follows Geng et al. (2024, "Towards Competitive Search Relevance For Inference-Free Learned Sparse
Retrievers"): a heterogeneous ensemble of a siamese sparse and a siamese dense model, each teacher's scores min-max
normalised per query, then averaged (their code multiplies the average by a fixed ``score_scale`` of 30 and trains
with a KL loss). Here the teachers are the channels hard negatives are mined from (SPLADE-tiny and MiniLM by
default: :class:`~hybrid_search.training.negatives.NegativeConfig`), so their scores are already at hand:

1. **Normalisation, per query and channel, over the query's candidates**: the fused candidate list that mining
   walks (every channel's top ``depth`` documents) plus the row's positive. Min-max over that one set puts each
   channel on [0, 1] over the same documents, whatever its own scale (MiniLM cosines 0.2-0.7, SPLADE dot products
   10-40). Geng et al. normalise over a query's group of training documents; with one mined negative that group
   is {positive, negative} and every margin would be exactly +-1, which carries no information.
2. **Margin** per negative = mean over channels of ``norm(positive) - norm(negative)``: in [-1, 1], positive when
   the ensemble ranks the positive higher.
3. **Scale into the student's units**: one number, fitted on the training rows before training (:func:`fit_scale`),
   ``RMS(base student's margins) / RMS(teacher margins)``, the student's margins being dot products of the base
   model at its training length. RMS is the spread about zero, not about the mean, because zero is where a margin's
   sign, the ranking, flips: the scaled targets have the base student's own overall margin size, so the loss asks
   neither for margins wholesale larger (what the contrastive losses rewarded) nor smaller, only for them to be
   redistributed where the ensemble disagrees with the student. A fixed constant (Geng et al.'s 30) assumes one
   student's scale; SPLADE-tiny's dot products and IDF-weighted inference-free scores differ.

The scale is the only number fitted, and only on training rows; nothing looks at an evaluation split.

Example:
    >>> import numpy as np
    >>> scores = {"sparse": np.array([[10.0, 8.0, 6.0, 2.0]]), "dense": np.array([[0.9, 0.5, 0.7, 0.1]])}
    >>> # query 0, positive doc 0, negatives 1 and 2; candidates: every document.
    >>> [round(m, 3) for m in unit_margins(scores, 0, scores_of(scores, 0, 0), [1, 2], [0, 1, 2, 3])]
    [0.375, 0.375]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def check_teacher_name(name: str) -> None:
    """Refuse a name that is not in :data:`hybrid_search.constants.TEACHERS` (``finetune`` before any work, mining
    before a model loads: both ask here, so the names and the message are one decision)."""
    from hybrid_search.constants import TEACHERS

    if name not in TEACHERS:
        raise ValueError(f"unknown teacher {name!r}; choose none or {', '.join(TEACHERS)}")


def scores_of(scores: Mapping[str, np.ndarray], query: int, doc: int) -> dict[str, float]:
    """Each channel's score of document ``doc`` for query row ``query``."""
    return {name: float(matrix[query, doc]) for name, matrix in scores.items()}


def unit_margins(
    scores: Mapping[str, np.ndarray],
    query: int,
    positive: Mapping[str, float],
    negatives: Sequence[int],
    candidates: Sequence[int],
) -> list[float]:
    """The teacher's margins of one row, one per negative, in [-1, 1] (see the module docstring).

    Args:
        scores: ``{channel: (n_queries, n_docs) array}``, as mining computes them.
        query: the row's query (its row in every matrix).
        positive: each channel's score of the row's positive (which need not be a corpus document: a mined pair's
            positive is a passage less its pseudo-query).
        negatives: the row's negatives, as document indices.
        candidates: the query's candidate documents, over which each channel is min-max normalised (with the
            positive's score added).

    A channel whose candidates all score the same contributes 0 to every margin.
    """
    margins = np.zeros(len(negatives), dtype=np.float64)
    picked = np.asarray(list(negatives), dtype=np.int64)
    pool = np.asarray(list(candidates), dtype=np.int64)
    for name, matrix in scores.items():
        values = matrix[query]
        low = min(float(values[pool].min()) if pool.size else np.inf, positive[name])
        high = max(float(values[pool].max()) if pool.size else -np.inf, positive[name])
        if high > low:
            margins += (positive[name] - values[picked].astype(np.float64)) / (high - low)
    return (margins / len(scores)).tolist()


def fit_scale(student: np.ndarray, teacher: np.ndarray) -> dict[str, Any]:
    """The one factor that puts the teacher's margins into the student's units, and what it was fitted on.

    ``scale = RMS(student) / RMS(teacher)`` over every (row, negative) margin of the training rows; see the module
    docstring for why RMS. Also returned: both RMS values, their Pearson correlation (how far the teacher already
    agrees with the base student), and the share of margins each puts below zero (rows it ranks the wrong way).

    Raises:
        ValueError: the arrays differ in shape, are empty, or every teacher margin is 0.
    """
    student = np.asarray(student, dtype=np.float64).ravel()
    teacher = np.asarray(teacher, dtype=np.float64).ravel()
    if student.shape != teacher.shape or student.size == 0:
        raise ValueError(f"need as many student as teacher margins, and some: {student.size} and {teacher.size}")
    student_rms = float(np.sqrt(np.mean(student**2)))
    teacher_rms = float(np.sqrt(np.mean(teacher**2)))
    if teacher_rms == 0.0:
        raise ValueError("every teacher margin is 0: the teacher cannot tell positives from negatives here")
    varies = student.std() > 0 and teacher.std() > 0
    return {
        "scale": student_rms / teacher_rms,
        "margins": int(student.size),
        "student_margin_rms": student_rms,
        "teacher_margin_rms": teacher_rms,
        "correlation": float(np.corrcoef(student, teacher)[0, 1]) if varies else None,
        "student_wrong_share": float(np.mean(student < 0)),
        "teacher_wrong_share": float(np.mean(teacher < 0)),
    }


def student_margins(model: Any, rows: Any, negative_columns: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """``(n_rows, n_negatives)`` margins ``score(query, positive) - score(query, negative)`` of a sentence-transformers
    ``SparseEncoder`` by dot product, as ``SparseMarginMSELoss`` scores (at the model's current ``max_seq_length``)."""
    import torch

    out = np.zeros((len(rows), len(negative_columns)), dtype=np.float64)
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        kwargs = {"convert_to_tensor": True, "convert_to_sparse_tensor": False, "batch_size": batch_size}
        with torch.no_grad():
            query = model.encode_query(batch["query"], **kwargs).float()
            positive = (query * model.encode_document(batch["positive"], **kwargs).float()).sum(dim=1)
            for j, column in enumerate(negative_columns):
                negative = (query * model.encode_document(batch[column], **kwargs).float()).sum(dim=1)
                out[start : start + len(batch["query"]), j] = (positive - negative).cpu().numpy()
    return out


def scale_labels(rows: Any, scale: float) -> Any:
    """``rows`` with every teacher margin in its ``label`` column multiplied by ``scale``."""
    return rows.map(
        lambda batch: {"label": [[float(m) * scale for m in label] for label in batch["label"]]},
        batched=True,
        desc=None,
    )
