"""Sparse encoders: SPLADE, inference-free SPLADE and CSR behind one interface.

All three are sentence-transformers ``SparseEncoder`` models; :class:`SparseEncoder` wraps one and returns
:class:`~hybrid_search.types.SparseVector` objects (sorted indices, float32 values) that every index
adapter understands.

Example:
    >>> from hybrid_search.encoders import SparseEncoder
    >>> enc = SparseEncoder.load("splade-tiny")
    >>> vec = enc.encode_query(["what is paris"])[0]
    >>> enc.decode(vec, top_k=3)  # doctest: +SKIP
    [('paris', 2.1), ('france', 1.4), ('capital', 0.9)]
"""

from __future__ import annotations

import copy
import logging
import math
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from hybrid_search.device import autocast_documents, document_precision, is_cpu, resolve_device
from hybrid_search.encoders.fast_splade import FastSpladeForward, FastStaticQuery
from hybrid_search.models import RecordedModel, resolve
from hybrid_search.types import SparseVector

logger = logging.getLogger(__name__)

ARCHITECTURES = ("splade", "inference-free", "csr")


@contextmanager
def query_threads(n_texts: int) -> Iterator[None]:
    """Run a handful of short texts on one torch thread.

    A query is a few milliseconds of small matrix products: handing those to a thread pool costs more than
    it saves, and on a busy machine the pool's threads wait for cores (measured here: 14 ms on one thread
    against 470 ms on two for a MiniLM query while other processes ran).
    """
    if n_texts > 4:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _to_sparse_vectors(batch: torch.Tensor) -> list[SparseVector]:
    """Split a (batch, vocab) torch sparse or dense tensor into per-row :class:`SparseVector` objects."""
    batch = batch.cpu()  # a GPU's output: the vectors live in numpy
    if not batch.is_sparse:
        batch = batch.to_sparse()
    batch = batch.coalesce()
    rows, cols = batch.indices().numpy()
    values = batch.values().float().numpy()
    # coalesce() sorts by (row, col), so each row is one contiguous, column-sorted slice.
    bounds = np.searchsorted(rows, np.arange(batch.shape[0] + 1))
    out = []
    for start, end in zip(bounds[:-1], bounds[1:]):
        keep = values[start:end] != 0
        out.append(SparseVector(cols[start:end][keep], values[start:end][keep]))
    return out


class SparseEncoder(RecordedModel):
    """One interface over the three sparse architectures.

    Args:
        model: a loaded ``sentence_transformers.SparseEncoder``.
        name: the name the model was loaded by; it is recorded in indexes built with it.
        max_active_dims: keep at most this many non-zero dimensions per vector (``None``: no cap).
        batch_size: encoding batch size.
        fast: encode documents with the exact fast SPLADE pass when the model allows it (same vectors as
            sentence-transformers to float rounding, 4-5x faster on CPU; see ``benchmarks/bench_sparse.py``).
            CPU only: on a GPU, documents take sentence-transformers' batched path, in the precision
            :func:`~hybrid_search.device.document_precision` gives.
        onnx_queries: with ``fast``, encode a handful of SPLADE queries with a verified ONNX Runtime export
            of the query model (:mod:`hybrid_search.encoders.onnx_splade`) where onnxruntime is installed.
    """

    def __init__(
        self,
        model: Any,
        name: str,
        *,
        max_active_dims: int | None = None,
        batch_size: int = 32,
        fast: bool = True,
        onnx_queries: bool = True,
    ) -> None:
        self.model = model
        self.name = name
        self.max_active_dims = max_active_dims
        self.batch_size = batch_size
        self.architecture = detect_architecture(model)
        self.device = str(getattr(model, "device", "cpu"))
        self.precision = document_precision(self.device)
        on_cpu = is_cpu(self.device)  # the fast passes and the ONNX export are CPU code
        self._active = {"query": [0, 0], "document": [0, 0]}  # [vectors seen, active dims summed]
        self._vocabulary: list[str] | None = None
        # Tokenising beside the encoders (lexical ids on the indexing writer thread, explanations, length
        # counts) uses a private copy of the tokenizer: a Hugging Face tokenizer call re-configures the
        # shared Rust tokenizer's padding and truncation, so two threads calling one tokenizer with
        # different settings can get each other's (ragged, unpadded batches).
        self._side: Any = None
        self._side_lock = threading.Lock()
        # The exact fast SPLADE pass for documents, where the architecture allows it (see fast_splade.py).
        # (Only without a prompt: sentence-transformers prepends the model's "document"/"query" prompt.)
        prompts = getattr(model, "prompts", None) or {}
        self._fast_documents = (
            FastSpladeForward.for_model(model, route="document")
            if fast and on_cpu and not prompts.get("document")
            else None
        )
        # Queries: inference-free ones are a tokenizer call and a table lookup; SPLADE ones take the same
        # exact pass as documents, on the calling thread.
        self._fast_queries = FastStaticQuery.for_model(model) if fast else None
        self._fast_query_forward = (  # wider vocabulary blocks: a query has ~10 tokens, not ~80
            FastSpladeForward.for_model(model, route="query", vocab_chunk=8192)
            if fast and on_cpu and self._fast_queries is None and not prompts.get("query")
            else None
        )
        # None: not tried yet (the export runs on the first query); False: unavailable, stay on PyTorch.
        self._onnx_query: Any = None if onnx_queries and self._fast_query_forward is not None else False

    @staticmethod
    def _model_class() -> Any:
        from sentence_transformers import SparseEncoder as STSparseEncoder

        return STSparseEncoder

    # --- encoding -------------------------------------------------------------------------------
    @property
    def query_is_lookup(self) -> bool:
        """Inference-free: a query is encoded by a table lookup (a fraction of a millisecond), no model runs."""
        return self._fast_queries is not None

    def encode_query(self, texts: Sequence[str]) -> list[SparseVector]:
        if self._fast_queries is not None:
            rows = self._fast_queries(texts)
            if self.max_active_dims is None or all(len(i) <= self.max_active_dims for i, _ in rows):
                vectors = [SparseVector(i, v) for i, v in rows]
                self._count("query", vectors)
                return vectors
        onnx = self._onnx_query_forward() if len(texts) <= 4 else None
        if onnx is not None:
            from sentence_transformers.util import select_max_active_dims

            vectors = _to_sparse_vectors(select_max_active_dims(torch.from_numpy(onnx(texts)), self.max_active_dims))
            self._count("query", vectors)
            return vectors
        if self._fast_query_forward is not None:
            with query_threads(len(texts)):
                vectors = self._encode_fast(self._fast_query_forward, texts, threads=1 if len(texts) <= 4 else None)
            self._count("query", vectors)
            return vectors
        with query_threads(len(texts)):
            encoded = self.model.encode_query(
                list(texts),
                batch_size=self.batch_size,
                convert_to_sparse_tensor=True,
                max_active_dims=self.max_active_dims,
            )
        vectors = _to_sparse_vectors(encoded)
        self._count("query", vectors)
        return vectors

    def _onnx_query_forward(self) -> Any:
        """The verified ONNX Runtime query encoder, or None where it is off or unavailable."""
        if self._onnx_query is None:
            from hybrid_search.encoders.onnx_dense import OnnxUnavailable
            from hybrid_search.encoders.onnx_splade import OnnxSpladeQuery

            forward = self._fast_query_forward
            if forward is None:
                return None
            if self.model.training:
                self.model.eval()  # as sentence-transformers' encode does: dropout off

            def reference(texts: Sequence[str]) -> np.ndarray:
                with query_threads(len(texts)):
                    return forward(texts, len(texts), threads=1).numpy()

            try:
                self._onnx_query = OnnxSpladeQuery(forward.transformer, forward.pooling, reference)
            except OnnxUnavailable as error:
                logger.info("SPLADE queries of %s stay on PyTorch: %s", self.name, error)
                self._onnx_query = False
        return self._onnx_query or None

    @property
    def query_backend(self) -> str:
        """What encodes a single query: ``lookup`` (inference-free), ``onnx``, ``torch`` (the exact fast
        pass) or ``sentence-transformers``; the first call may export the ONNX model."""
        if self.query_is_lookup:
            return "lookup"
        if self._onnx_query_forward() is not None:
            return "onnx"
        return "torch" if self._fast_query_forward is not None else "sentence-transformers"

    def encode_document(self, texts: Sequence[str], *, show_progress_bar: bool = False) -> list[SparseVector]:
        if self._fast_documents is not None:
            vectors = self._encode_fast(self._fast_documents, texts, show_progress_bar=show_progress_bar)
        else:
            with autocast_documents(self.device, self.precision):
                encoded = self.model.encode_document(
                    list(texts),
                    batch_size=self.batch_size,
                    convert_to_sparse_tensor=True,
                    max_active_dims=self.max_active_dims,
                    show_progress_bar=show_progress_bar,
                )
            vectors = _to_sparse_vectors(encoded)
        self._count("document", vectors)
        return vectors

    def _encode_fast(
        self,
        forward: FastSpladeForward,
        texts: Sequence[str],
        *,
        threads: int | None = None,
        show_progress_bar: bool = False,
    ) -> list[SparseVector]:
        """Encode with the exact fast SPLADE pass, capped to ``max_active_dims`` as sentence-transformers caps."""
        from sentence_transformers.util import select_max_active_dims

        if self.model.training:
            self.model.eval()  # as sentence-transformers' encode does: dropout off
        texts = list(texts)
        vectors: list[SparseVector] = []
        # Slices bound the dense (texts × vocabulary) buffer: 1,024 × 30,522 floats is 125 MB.
        for start in range(0, len(texts), 1024):
            dense = forward(
                texts[start : start + 1024], self.batch_size, threads=threads, show_progress_bar=show_progress_bar
            )
            vectors += _to_sparse_vectors(select_max_active_dims(dense, self.max_active_dims))
        return vectors

    @property
    def vector_precision(self) -> str:
        """``float32``, or the reduced precision documents are encoded in on a GPU (e.g. ``fp16-autocast``)."""
        return "float32" if self.precision == "fp32" else f"{self.precision}-autocast"

    def _count(self, side: str, vectors: list[SparseVector]) -> None:
        self._active[side][0] += len(vectors)
        self._active[side][1] += sum(v.nnz for v in vectors)

    def sparsity(self) -> dict[str, float]:
        """Average active dimensions of the queries and documents encoded so far."""
        return {f"avg_active_dims_{side}": (s / n if n else 0.0) for side, (n, s) in self._active.items()}

    # --- vocabulary -----------------------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return self.model.tokenizer

    @property
    def has_vocabulary(self) -> bool:
        """CSR dimensions are learned latents, not vocabulary tokens."""
        return self.architecture != "csr"

    @property
    def dimension(self) -> int:
        # A SPLADE MLM reports its hidden size here; its output space is the vocabulary.
        if self.has_vocabulary:
            return len(self.tokenizer.get_vocab())
        return int(self.model.get_embedding_dimension())

    def token(self, index: int) -> str:
        if not self.has_vocabulary:
            return f"latent:{index}"
        if self._vocabulary is None:  # id -> token, once: a tokenizer call per token costs ~10 µs
            tokenizer = self.tokenizer
            self._vocabulary = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        index = int(index)
        return (
            self._vocabulary[index]
            if 0 <= index < len(self._vocabulary)
            else self.tokenizer.convert_ids_to_tokens(index)
        )

    def decode(self, vector: SparseVector, top_k: int | None = None) -> list[tuple[str, float]]:
        """The vector's tokens by descending weight: ``[(token, weight), ...]``."""
        order = np.argsort(-vector.values, kind="stable")
        if top_k is not None:
            order = order[:top_k]
        return [(self.token(vector.indices[i]), float(vector.values[i])) for i in order]

    def text_token_ids(self, text: str) -> set[int]:
        """The vocabulary ids of the text's own tokenisation: tokens outside it came from expansion."""
        return self.texts_token_ids([text])[0]

    def texts_token_ids(self, texts: Sequence[str]) -> list[set[int]]:
        """:meth:`text_token_ids` for several texts in one tokenizer call."""
        if not self.has_vocabulary or not texts:
            return [set() for _ in texts]
        return [set(row) for row in self._side_tokenize(texts, add_special_tokens=False)]

    def lexical_ids(self, texts: Sequence[str], vectors: Sequence[SparseVector]) -> list[list[int]] | None:
        """For each text, the dimensions of its vector that its own tokenisation contains (ascending).

        An index stores these with each document (see :meth:`~indexers.base.BaseIndex.upsert`): a matched
        token outside them came from the model's expansion. ``None`` for CSR, whose dimensions are not
        vocabulary tokens.
        """
        if not self.has_vocabulary:
            return None
        if len(texts) != len(vectors):
            raise ValueError(f"got {len(vectors)} vectors for {len(texts)} texts")
        own = self.texts_token_ids(texts)
        return [
            vector.indices[np.isin(vector.indices, np.fromiter(ids, dtype=np.int64, count=len(ids)))].tolist()
            for vector, ids in zip(vectors, own)
        ]

    @property
    def max_seq_length(self) -> int:
        return int(self.model.max_seq_length or 512)

    def count_truncated(self, texts: Sequence[str]) -> int:
        """How many texts are longer than the model reads (they are truncated when encoded)."""
        limit = self.max_seq_length
        return sum(len(ids) > limit for ids in self._side_tokenize(texts, add_special_tokens=True))

    def _side_tokenize(self, texts: Sequence[str], *, add_special_tokens: bool) -> list[list[int]]:
        """Token ids of whole texts (no truncation) from the private tokenizer copy, one caller at a time."""
        with self._side_lock:
            if self._side is None:
                tokenizer = self.model[0].tokenizer if self.architecture == "csr" else self.tokenizer
                self._side = copy.deepcopy(tokenizer)
            return self._side(list(texts), add_special_tokens=add_special_tokens, truncation=False, verbose=False)[
                "input_ids"
            ]

    def settings(self) -> dict[str, Any]:
        """What an index records about the model that built it; a query must match it."""
        return {
            "name": self.name,
            "architecture": self.architecture,
            "dimension": self.dimension,
            "similarity": "dot",
            "max_active_dims": self.max_active_dims,
            **self.identity(),
        }


def detect_architecture(model: Any) -> str:
    """``splade``, ``inference-free`` (a query/document Router) or ``csr`` (a SparseAutoEncoder)."""
    from sentence_transformers.sparse_encoder.modules import Router, SparseAutoEncoder

    modules = list(model)
    if any(isinstance(m, Router) for m in modules):
        return "inference-free"
    if any(isinstance(m, SparseAutoEncoder) for m in modules):
        return "csr"
    return "splade"


def corpus_idf(texts: Iterable[str], tokenizer: Any, *, batch_size: int = 1024) -> torch.Tensor:
    """BM25-style IDF per vocabulary id, ``log(1 + (N - df + 0.5) / (df + 0.5))``.

    This is the construction OpenSearch uses for the ``idf.json`` of its inference-free models. Tokens the
    corpus never contains get the largest IDF, as in BM25.
    """
    df: Counter[int] = Counter()
    n = 0
    batch: list[str] = []

    def flush() -> None:
        nonlocal n
        for ids in tokenizer(batch, add_special_tokens=False, truncation=False)["input_ids"]:
            df.update(set(ids))
            n += 1
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    if n == 0:
        raise ValueError("cannot compute IDF from an empty corpus")
    vocab_size = len(tokenizer.get_vocab())
    weight = torch.full((vocab_size,), math.log(1 + (n + 0.5) / 0.5), dtype=torch.float32)
    for token_id, freq in df.items():
        weight[token_id] = math.log(1 + (n - freq + 0.5) / (freq + 0.5))
    # Special tokens carry no meaning for retrieval.
    for token_id in tokenizer.all_special_ids:
        weight[token_id] = 0.0
    return weight


def build_splade(mlm: str = "splade-tiny", *, device: str | None = None) -> Any:
    """A SPLADE model: an MLM transformer with SPLADE max pooling, on ``device`` (see :mod:`hybrid_search.device`)."""
    from sentence_transformers import SparseEncoder as STSparseEncoder
    from sentence_transformers.sparse_encoder.modules import SpladePooling, Transformer

    path = resolve(mlm).path
    return STSparseEncoder(
        modules=[Transformer(path, transformer_task="fill-mask"), SpladePooling("max")],
        similarity_fn_name="dot",
        device=resolve_device(device),
    )


def build_inference_free(
    document_mlm: str = "splade-tiny", corpus: Iterable[str] | None = None, *, device: str | None = None
) -> Any:
    """Inference-free SPLADE: a Router whose query route is a ``SparseStaticEmbedding`` and whose
    document route is an MLM with SPLADE pooling.

    Args:
        document_mlm: the MLM for documents (a built-in name, folder or Hub id).
        corpus: texts to initialise the query weights from (corpus IDF). Without it, every token weighs 1.
    """
    from sentence_transformers import SparseEncoder as STSparseEncoder
    from sentence_transformers.sparse_encoder.modules import Router, SparseStaticEmbedding, SpladePooling, Transformer

    path = resolve(document_mlm).path
    mlm = Transformer(path, transformer_task="fill-mask")
    weight = corpus_idf(corpus, mlm.tokenizer) if corpus is not None else None
    static = SparseStaticEmbedding(tokenizer=mlm.tokenizer, weight=weight, frozen=False)
    router = Router.for_query_document(query_modules=[static], document_modules=[mlm, SpladePooling("max")])
    return STSparseEncoder(modules=[router], similarity_fn_name="dot", device=resolve_device(device))


def build_csr(
    dense_model: str = "minilm",
    *,
    hidden_dim: int | None = None,
    k: int = 256,
    k_aux: int = 512,
    device: str | None = None,
) -> Any:
    """CSR: a ``SparseAutoEncoder`` on top of a dense sentence-transformers model.

    The autoencoder starts random: train it (``hybrid-search finetune --arch csr``) before indexing with it.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers import SparseEncoder as STSparseEncoder
    from sentence_transformers.sparse_encoder.modules import SparseAutoEncoder

    device = resolve_device(device)
    dense = SentenceTransformer(resolve(dense_model).path, device=device)
    dim = dense.get_embedding_dimension()
    if dim is None:
        raise ValueError(f"{dense_model!r} does not say its embedding dimension; CSR needs it")
    sae = SparseAutoEncoder(input_dim=dim, hidden_dim=hidden_dim or 4 * dim, k=k, k_aux=k_aux)
    return STSparseEncoder(modules=[*dense, sae], similarity_fn_name="dot", device=device)
