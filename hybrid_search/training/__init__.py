"""Fine-tuning sparse encoders on domain data with the sentence-transformers ``SparseEncoderTrainer``.

* :mod:`~hybrid_search.training.data`: training data → ``(query, positive[, negative...][, label])`` datasets;
* :mod:`~hybrid_search.training.mining`: self-supervised pairs mined from unlabelled text (inverse cloze);
* :mod:`~hybrid_search.training.negatives`: hard negatives mined from the hybrid ranking of the training corpus;
* :mod:`~hybrid_search.training.crossencoder`: a cross-encoder reranker trained with ``CrossEncoderTrainer``;
* :mod:`~hybrid_search.training.build`: the model and the loss per architecture;
* :mod:`~hybrid_search.training.evaluate`: nDCG@10 and active dimensions by exact search in memory;
* :mod:`~hybrid_search.training.card`: the model card;
* :mod:`~hybrid_search.training.finetune`: the whole run, as ``hybrid-search finetune`` does it.

Training needs the ``accelerate`` package (the ``train`` extra of sentence-transformers).
"""

from hybrid_search.training.build import DEFAULTS, build_loss, build_model, weights_on_line
from hybrid_search.training.data import (
    EvalQueryGuard,
    TrainingData,
    TrainingDataError,
    TrainingDataOptions,
    load_training_data,
)
from hybrid_search.training.evaluate import SparseEvalResult, evaluate_sparse
from hybrid_search.training.finetune import FinetuneConfig, finetune, rebuild_start
from hybrid_search.training.mining import MiningConfig, mine_pairs, split_sentences
from hybrid_search.training.negatives import NegativeConfig, mine_hard_negatives

__all__ = [
    "DEFAULTS",
    "EvalQueryGuard",
    "FinetuneConfig",
    "MiningConfig",
    "NegativeConfig",
    "SparseEvalResult",
    "TrainingData",
    "TrainingDataError",
    "TrainingDataOptions",
    "build_loss",
    "build_model",
    "evaluate_sparse",
    "finetune",
    "load_training_data",
    "mine_hard_negatives",
    "mine_pairs",
    "rebuild_start",
    "split_sentences",
    "weights_on_line",
]
