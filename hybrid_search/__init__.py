"""hybrid-search: sparse + dense retrieval with fusion, reranking and token-level explanations."""

from hybrid_search.types import Document, Hit, Ranking, ScoredId, SparseVector, TokenContribution

__version__ = "0.1.0"

__all__ = ["Document", "Hit", "Ranking", "ScoredId", "SparseVector", "TokenContribution", "__version__"]
