"""The benchmark's row for a learned fusion (``hybrid-search tune``): "search, ui and bench use it by default".

Two ways a run gets one, both labelled with where the fusion came from:

- the benchmark's index carries a tuned fusion (``tune --index`` saved one into it): the row is added by
  default, named after the index's record (``index (tuned on scifact train, …)``);
- ``--fusion tuned`` and no such record: the tuner chooses on ``--tune-split`` (default ``train``) by
  cross-validation, from its cached channel rankings (the same cache as ``tune --split train --eval-split
  test``), and the row is named ``tuned on DATASET SPLIT``. The split the table reports on is never the one
  the fusion is chosen on.

The row runs through the same :meth:`~hybrid_search.retrieval.HybridSearcher.search` as every other row.
"""

from __future__ import annotations

import os
from typing import Any

from hybrid_search.dataset import RetrievalDataset

from .rows import RowSpec

TUNED = "tuned"


def tuned_row(
    dataset: str | os.PathLike[str] | RetrievalDataset, config: Any, loaded: Any, index: Any
) -> RowSpec | None:
    """The learned-fusion row of this run, or ``None`` when it has none (no record, no ``--fusion tuned``).

    Raises:
        ValueError: ``--fusion tuned`` would choose on the split the table reports on, or the dataset is
            not a folder the tuner can read a second split from.
    """
    from hybrid_search.options import tuned_fusion
    from hybrid_search.tuning import FusionSetting

    record = getattr(index.meta, "fusion", None)
    if record:
        return RowSpec.learned(FusionSetting.from_record(record), tuned_fusion(index.meta)[1])
    if TUNED not in config.fusions:
        return None
    return RowSpec.learned(*learn(dataset, config, loaded))


def check_tune_split(config: Any) -> None:
    """Refuse, before anything slow, a ``--fusion tuned`` that would choose on the split it reports on."""
    if TUNED in config.fusions and config.tune_split == config.split:
        raise ValueError(
            f"--fusion tuned chooses the fusion on --tune-split ({config.tune_split!r}), which must differ "
            f"from the split the table reports on (--split {config.split!r})"
        )


def learn(dataset: Any, config: Any, loaded: Any) -> tuple[Any, str]:
    """The tuner's choice on ``config.tune_split`` for the run's models, and its row label."""
    from hybrid_search.tuning import FusionSetting
    from pipelines.embedding_cache import EmbeddingCache
    from pipelines.tune import TuneOptions, run_tune

    if isinstance(dataset, RetrievalDataset):
        raise ValueError("--fusion tuned needs the dataset as a folder (it reads the --tune-split judgements)")
    cache = config.cache
    if isinstance(cache, EmbeddingCache):
        cache = str(cache.root) if cache.enabled else False
    report = run_tune(
        TuneOptions(
            str(dataset),
            split=config.tune_split,
            eval_split=config.split,  # the query set of `tune --split train --eval-split test`: one ranking cache
            sparse=loaded.sparse if loaded.sparse is not None else "none",
            dense=loaded.dense if loaded.dense is not None else "none",
            cache=cache,
            progress=config.progress,
        )
    )
    chosen = report["chosen"]
    source = f"tuned on {report['dataset']['name']} {config.tune_split} (CV {100 * chosen['cv_ndcg10']:.2f})"
    return FusionSetting.from_record(chosen["setting"]), source
