"""The names and defaults every front end shares: channels, modes, fusion methods and search defaults.

The CLI's ``choices``, the UI's controls, the benchmark and :class:`~hybrid_search.options.SearchOptions` read
them from here, so a new channel or method is one edit.
"""

from __future__ import annotations

#: The retrieval channels, in display order.
CHANNELS = ("sparse", "dense", "bm25")
#: Search modes: fuse several channels, or search one.
MODES = ("hybrid", "sparse", "dense", "bm25")
#: Fusion methods (see :mod:`hybrid_search.fusion`).
FUSION_METHODS = ("rrf", "dbsf", "convex", "zscore")

#: ``finetune --teacher`` besides ``none``: the ensemble of the hard-negative mining channels (``hybrid``), and the
#: same with a BM25 channel added (``hybrid+bm25``: a lexical teacher beside the learned sparse and dense ones; on
#: SciFact *train* claims it ranks better than the two alone, docs/finetuning.md). See
#: :mod:`hybrid_search.training.teacher`.
TEACHERS = ("hybrid", "hybrid+bm25")

DEFAULT_MODE = "hybrid"
DEFAULT_FUSION = "rrf"
#: The RRF constant; ranks start at 1 (Cormack et al. 2009). Distinct from ``k``, the hits to return.
DEFAULT_RRF_K = 60
#: Hits to return.
DEFAULT_K = 10
#: Candidates taken from each channel before fusion.
DEFAULT_PREFETCH_K = 100
#: Candidates the cross-encoder rescores.
DEFAULT_RERANK_TOP_N = 50
#: What a hybrid search fuses when the index has both vector channels.
DEFAULT_HYBRID_CHANNELS = ("sparse", "dense")
#: Timed stages measured inside another: ``encode`` holds both encoders' time (they may run at once), so a
#: total adds ``encode`` and never its parts.
TIMING_PARENTS = {"encode_sparse": "encode", "encode_dense": "encode"}
