"""An exact, faster SPLADE max-pooling forward pass.

sentence-transformers computes SPLADE as ``max_t mask_t · log1p(relu(h_t W^T + b))`` over a materialised
``(batch, tokens, vocabulary)`` logits tensor. With a 30k vocabulary that tensor, padding included, is
written, masked, activated and reduced in several full passes; for a small model such as SPLADE-tiny the
head is nearly all of the cost.

This path computes the same vectors with less work, and proves it on every document:

1. **Max before activation.** ``log1p∘relu`` is monotone, so
   ``max_t log1p(relu(z_t + b)) = log1p(relu(max_t z_t + b))``: the activation runs once per vocabulary
   entry, not once per token.
2. **No padding through the head.** Each document's real tokens only, multiplied with contiguous blocks of
   ``W^T`` small enough to stay in cache, keeping the running maximum.
3. **Screen in bfloat16, compute in float32.** SPLADE keeps ~130 of 30,522 entries per passage; the rest end
   at ``relu(·) = 0``. A bfloat16 product (twice the float32 speed on CPUs with AVX512-BF16 or AMX) bounds
   every logit: rounding both operands and the result to bfloat16 moves ``h·w`` by at most
   ``3u·Σ|h_i||w_i| ≤ 3u·‖h‖‖w‖`` (``u = 2^-8``; float32 accumulation adds ~1e-5 of that). Entries whose
   bound cannot reach ``-b`` are exactly zero in the float32 reference too; the remaining candidates
   (~1% of the vocabulary) are recomputed in float32. The margin used, ``4u``, is a third above the bound.

The result equals sentence-transformers' to float32 rounding: the same non-zero dimensions, values within
1e-5 (checked on 300 passages in the tests and by ``benchmarks/bench_sparse.py``).

Supported: BERT-style MLM heads (``cls.predictions``) and DistilBERT heads, with SPLADE ``max`` pooling.
Anything else falls back to sentence-transformers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, NamedTuple

import torch

#: Vocabulary columns per matrix product: ~80 tokens × 2048 columns stays within a core's L2 cache.
VOCAB_CHUNK = 2048
#: bfloat16's unit roundoff (8 significant bits).
BF16_UNIT_ROUNDOFF = 2.0**-8
#: The screening margin, in multiples of ‖h‖·‖w‖: the proven error bound is 3u (+ float32 accumulation).
SCREEN_MARGIN = 4 * BF16_UNIT_ROUNDOFF


@lru_cache(maxsize=1)
def fast_bf16_cpu() -> bool:
    """Whether this CPU multiplies bfloat16 natively (AVX512-BF16 or AMX); elsewhere it is emulated and slow."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _head_parts(mlm: Any) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, torch.Tensor] | None:
    """(transform, decoder weight [V, d], decoder bias [V]) of a supported MLM head, else None."""
    decoder = mlm.get_output_embeddings()
    if decoder is None or getattr(decoder, "bias", None) is None:
        return None
    if hasattr(mlm, "cls") and hasattr(mlm.cls, "predictions"):
        transform = mlm.cls.predictions.transform
    elif all(hasattr(mlm, n) for n in ("vocab_transform", "activation", "vocab_layer_norm")):

        def transform(h: torch.Tensor) -> torch.Tensor:
            return mlm.vocab_layer_norm(mlm.activation(mlm.vocab_transform(h)))

    else:
        return None
    return transform, decoder.weight, decoder.bias


class _Weights(NamedTuple):
    """The decoder, laid out for the head: rebuilt whenever the parameters change."""

    weight: torch.Tensor  # [V, d] float32, for the candidates' exact products
    bias: torch.Tensor  # [V] float32
    norms: torch.Tensor  # [V] float32, ‖w_v‖
    blocks: list[tuple[int, torch.Tensor]]  # contiguous column blocks of W^T (bfloat16 when screening)


class FastSpladeForward:
    """Exact SPLADE pooling for one ``[Transformer(fill-mask), SpladePooling(max)]`` route.

    Args:
        transformer: the sentence-transformers ``Transformer`` module (task ``fill-mask``).
        pooling: the ``SpladePooling`` module that follows it.
        vocab_chunk: vocabulary columns per matrix product.
        screen: screen the vocabulary with bounded bfloat16 products before the exact float32 pass
            (``None``: when the CPU has native bfloat16). Either way the output is the float32 one.
    """

    def __init__(
        self, transformer: Any, pooling: Any, *, vocab_chunk: int = VOCAB_CHUNK, screen: bool | None = None
    ) -> None:
        parts = _head_parts(transformer.auto_model)
        if parts is None or pooling.pooling_strategy != "max":
            raise ValueError("unsupported SPLADE head for the fast path")
        self.transformer = transformer
        self.pooling = pooling
        self.body = transformer.auto_model.base_model
        self.transform, self._weight, self._bias = parts
        self.vocab_size = int(self._weight.shape[0])
        self.vocab_chunk = vocab_chunk
        self.screen = fast_bf16_cpu() if screen is None else screen
        self.double_log = pooling.activation_function == "log1p_relu"
        self._weights: _Weights | None = None
        self._weights_of: tuple | None = None

    @property
    def weights(self) -> _Weights:
        """The decoder in the head's layouts (a strided slice of W^T makes the product several times
        slower), rebuilt whenever the weights change in place, e.g. by an optimizer step."""
        version = (self._weight.data_ptr(), self._weight._version, self._bias.data_ptr(), self._bias._version)
        if version != self._weights_of:
            weight = self._weight.detach().float().contiguous()
            weight_t = weight.t()
            dtype = torch.bfloat16 if self.screen else torch.float32
            blocks = [
                (c, weight_t[:, c : c + self.vocab_chunk].to(dtype).contiguous())
                for c in range(0, self.vocab_size, self.vocab_chunk)
            ]
            self._weights = _Weights(weight, self._bias.detach().float(), weight.norm(dim=1), blocks)
            self._weights_of = version
        assert self._weights is not None
        return self._weights

    @classmethod
    def for_model(cls, model: Any, route: str | None = None, **kwargs: Any) -> FastSpladeForward | None:
        """The fast path for a sentence-transformers SparseEncoder's SPLADE route, or None if unsupported
        (including a model on a GPU: the padding-free head and its bfloat16 screen are CPU code)."""
        from sentence_transformers.sparse_encoder.modules import Router, SpladePooling, Transformer

        if str(getattr(model, "device", "cpu")) != "cpu":
            return None
        modules: list[Any] = list(model)
        if len(modules) == 1 and isinstance(modules[0], Router) and route:
            routes: Any = modules[0].sub_modules
            modules = list(routes[route]) if route in routes else []
        if len(modules) != 2 or not isinstance(modules[0], Transformer) or not isinstance(modules[1], SpladePooling):
            return None
        if getattr(modules[0], "transformer_task", "fill-mask") != "fill-mask":
            return None
        try:
            return cls(modules[0], modules[1], **kwargs)
        except (ValueError, AttributeError):
            return None

    def _head(
        self,
        weights: _Weights,
        hidden: torch.Tensor,
        lengths: Sequence[int],
        rows: Sequence[int],
        out: torch.Tensor,
        targets: Sequence[int],
    ) -> None:
        """``max_t h_t·w_v`` over each listed row's real tokens into ``out[target]`` (``-inf`` where provably
        ``≤ -b_v``, which the activation turns into an exact 0)."""
        with torch.inference_mode():
            dtype = weights.blocks[0][1].dtype
            # One scratch buffer per call: fresh ~600 kB products would each be an mmap/munmap round trip.
            scratch = torch.empty(hidden.shape[1], self.vocab_chunk, dtype=dtype)
            screened = torch.empty(self.vocab_size, dtype=dtype) if self.screen else None
            for row, i in zip(rows, targets):
                tokens = hidden[row, : lengths[row]]
                maxima = screened if screened is not None else out[i]
                operand = tokens.to(dtype)
                for c, block in weights.blocks:
                    width = block.shape[1]
                    product = scratch[: tokens.shape[0], :width]
                    torch.mm(operand, block, out=product)
                    torch.amax(product, dim=0, out=maxima[c : c + width])
                if screened is not None:
                    margin = SCREEN_MARGIN * tokens.norm(dim=1).max()
                    bound = screened.float().addcmul_(weights.norms, margin).add_(weights.bias)
                    candidates = torch.nonzero(bound > 0).squeeze(1)
                    out[i].fill_(float("-inf"))
                    out[i, candidates] = torch.amax(tokens @ weights.weight[candidates].t(), dim=0)

    @torch.inference_mode()
    def __call__(
        self, texts: Sequence[str], batch_size: int = 32, *, show_progress_bar: bool = False, threads: int | None = None
    ) -> torch.Tensor:
        """Dense ``(len(texts), vocabulary)`` SPLADE vectors, in the order of ``texts``.

        ``threads`` (default: torch's intra-op thread count) is how many documents go through the head at
        once: each such thread runs single-threaded products, which on these small matrices beats splitting
        every product across cores (1.9x on 2 cores) and degrades gracefully on a busy machine.
        """
        from concurrent.futures import ThreadPoolExecutor

        from tqdm.auto import tqdm

        if self.transformer.training or self.body.training:
            raise RuntimeError("the fast SPLADE path is for inference; call model.eval() first")
        threads = max(1, threads or torch.get_num_threads())
        weights = self.weights
        out = torch.empty(len(texts), self.vocab_size, dtype=torch.float32)
        # Length-sorted batches keep padding in the transformer body small, as sentence-transformers does.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        starts = range(0, len(order), batch_size)
        # torch.set_num_threads is per thread under OpenMP: the workers run single-threaded, the caller
        # keeps its own setting for the transformer body.
        pool = ThreadPoolExecutor(threads, initializer=torch.set_num_threads, initargs=(1,)) if threads > 1 else None
        try:
            for start in tqdm(starts, desc="Batches", disable=not show_progress_bar):
                idx = order[start : start + batch_size]
                features = self.transformer.preprocess([texts[i] for i in idx])
                lengths = [int(n) for n in features["attention_mask"].sum(dim=1).tolist()]
                inputs = {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
                hidden = self.transform(self.body(**inputs).last_hidden_state).float()
                if pool is None:  # e.g. one query: no thread hand-off at all
                    self._head(weights, hidden, lengths, range(len(idx)), out, idx)
                    continue
                jobs = [
                    pool.submit(self._head, weights, hidden, lengths, rows, out, [idx[r] for r in rows])
                    for rows in (range(w, len(idx), threads) for w in range(threads))
                ]
                for job in jobs:
                    job.result()
        finally:
            if pool is not None:
                pool.shutdown()
        out += weights.bias
        out.relu_().log1p_()
        if self.double_log:
            out.log1p_()
        return out


class FastStaticQuery:
    """Inference-free query encoding as a table lookup, without sentence-transformers' batch machinery.

    An inference-free SPLADE query vector is ``weight[token]`` for each distinct token of the query
    (``SparseStaticEmbedding``: tokenised without special tokens, truncated to the tokenizer's maximum).
    sentence-transformers builds it as a dense ``(1, vocabulary)`` tensor through its generic encode loop,
    about a millisecond per query; this reads the tokenizer's ids and the weight table directly, in tens of
    microseconds, and gives the same vector (checked against sentence-transformers in the tests).
    """

    def __init__(self, module: Any) -> None:
        self.module = module
        self.tokenizer = module.tokenizer
        self.max_length = int(getattr(self.tokenizer, "model_max_length", 512) or 512)
        self._table: Any = None
        self._table_of: tuple | None = None

    @classmethod
    def for_model(cls, model: Any) -> FastStaticQuery | None:
        """The fast path for a Router whose query route is one SparseStaticEmbedding, else None."""
        from sentence_transformers.sparse_encoder.modules import Router, SparseStaticEmbedding

        modules = list(model)
        if len(modules) != 1 or not isinstance(modules[0], Router) or "query" not in modules[0].sub_modules:
            return None
        routes: Any = modules[0].sub_modules
        route = list(routes["query"])
        if len(route) != 1 or not isinstance(route[0], SparseStaticEmbedding):
            return None
        if model.prompts.get("query") or not getattr(route[0].tokenizer, "is_fast", False):
            return None  # a query prompt, or a slow tokenizer: leave it to sentence-transformers
        return cls(route[0])

    @property
    def table(self) -> Any:
        """The weights as a float32 numpy array, refreshed when training changes them in place."""
        weight = self.module.weight
        version = (weight.data_ptr(), weight._version)
        if version != self._table_of:
            self._table = weight.detach().float().cpu().numpy().copy()
            self._table_of = version
        return self._table

    def __call__(self, texts: Sequence[str]) -> list[tuple[Any, Any]]:
        """``(indices, values)`` per text: sorted distinct token ids and their non-zero weights."""
        import numpy as np

        table = self.table
        encodings = self.tokenizer(list(texts), add_special_tokens=False, truncation=True, return_attention_mask=False)[
            "input_ids"
        ]
        out = []
        for ids in encodings:
            indices = np.unique(np.asarray(ids[: self.max_length], dtype=np.int64))
            values = table[indices]
            keep = values != 0
            out.append((indices[keep], values[keep]))
        return out
