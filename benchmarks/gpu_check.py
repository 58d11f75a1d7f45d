"""GPU check: the DL19 passages encoded on a GPU and on the CPU, compared, in under five minutes.

    python benchmarks/gpu_check.py [--device cuda:0] [--dataset ../shared/data/msmarco-dl19-5k] [--json out.json]

For SPLADE-tiny and MiniLM (the default models), the script encodes the 5,000 passages and the judged
queries on the CPU (the product's CPU path: the exact fast SPLADE pass, PyTorch MiniLM) and on the GPU
in float32 and in each reduced precision the product offers there (``HYBRID_SEARCH_GPU_PRECISION``:
``fp16``, the default, and ``bf16``: sentence-transformers' batched path under autocast). For each GPU
variant it reports:

- documents/s for each model (the GPU timed with ``torch.cuda.synchronize``);
- how far its document vectors are from the CPU's: SPLADE, the Jaccard overlap of the active dimensions
  (mean and minimum) and the largest weight difference on shared dimensions; MiniLM, the minimum cosine
  and the largest absolute difference;
- nDCG@10 of sparse, dense and hybrid RRF (k=60, top 100 per channel), by exact search over all
  passages, against the CPU's;
- the median latency of one query on each device (queries may stay fastest on the CPU).

Without a CUDA GPU it says so and exits with status 2 (``--device cpu --limit N`` runs the same
comparison CPU against CPU, to check the script itself).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEFAULT_DATASET = ROOT.parent / "shared" / "data" / "msmarco-dl19-5k"
PRECISIONS = ("fp32", "fp16", "bf16")


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(device)


def load_encoders(device: str, precision: str) -> tuple[Any, Any]:
    """SPLADE-tiny and MiniLM on ``device``, documents in ``precision`` (read when an encoder is built)."""
    from hybrid_search.device import PRECISION_ENV_VAR
    from hybrid_search.encoders import DenseEncoder, SparseEncoder

    os.environ[PRECISION_ENV_VAR] = precision
    return SparseEncoder.load("splade-tiny", device=device), DenseEncoder.load("minilm", device=device)


def encode_all(sparse: Any, dense: Any, texts: list[str], queries: list[str]) -> dict[str, Any]:
    """Documents and queries through both models, with documents/s for each."""
    out: dict[str, Any] = {}
    for name, encoder in (("sparse", sparse), ("dense", dense)):
        encoder.encode_document(texts[:64])  # warm-up: kernels, allocator, the fast path's weight layout
        synchronize(encoder.device)
        start = time.perf_counter()
        out[f"{name}_docs"] = encoder.encode_document(texts)
        synchronize(encoder.device)
        out[f"{name}_docs_per_s"] = len(texts) / (time.perf_counter() - start)
        out[f"{name}_queries"] = encoder.encode_query(queries)
        out[f"{name}_query_ms_p50"] = query_latency_ms(encoder, queries[:20])
    return out


def query_latency_ms(encoder: Any, queries: list[str]) -> float:
    encoder.encode_query(queries[:1])
    times = []
    for query in queries:
        synchronize(encoder.device)
        start = time.perf_counter()
        encoder.encode_query([query])
        synchronize(encoder.device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def csr(vectors: list[Any], width: int) -> Any:
    from scipy.sparse import csr_matrix

    from hybrid_search.types import sparse_to_csr

    indptr, indices, values = sparse_to_csr(vectors)
    return csr_matrix((values, indices, indptr), shape=(len(vectors), width))


def rankings(scores: np.ndarray, qids: list[str], doc_ids: list[str], k: int = 100) -> dict[str, list[Any]]:
    from hybrid_search.types import ScoredId

    out = {}
    for row, qid in zip(scores, qids):
        top = np.argsort(-row, kind="stable")[:k]
        out[qid] = [ScoredId(doc_ids[i], float(row[i])) for i in top]
    return out


def quality(encoded: dict[str, Any], qids: list[str], doc_ids: list[str], qrels: dict, width: int) -> dict[str, float]:
    """nDCG@10 of sparse, dense and hybrid RRF by exact search."""
    from hybrid_search.fusion import rrf
    from hybrid_search.metrics import evaluate

    sparse_scores = (csr(encoded["sparse_queries"], width) @ csr(encoded["sparse_docs"], width).T).toarray()
    dense_scores = np.asarray(encoded["dense_queries"]) @ np.asarray(encoded["dense_docs"]).T
    runs = {"sparse": rankings(sparse_scores, qids, doc_ids), "dense": rankings(dense_scores, qids, doc_ids)}
    runs["hybrid"] = {q: rrf({"sparse": runs["sparse"][q], "dense": runs["dense"][q]}, k=60) for q in qids}
    return {
        name: 100 * evaluate({q: {h.id: h.score for h in hits} for q, hits in run.items()}, qrels)["nDCG@10"]
        for name, run in runs.items()
    }


def vector_difference(reference: dict[str, Any], other: dict[str, Any]) -> dict[str, float]:
    """How far ``other``'s document vectors are from ``reference``'s."""
    jaccard, weight_diff = [], 0.0
    for a, b in zip(reference["sparse_docs"], other["sparse_docs"]):
        sa, sb = set(a.indices.tolist()), set(b.indices.tolist())
        jaccard.append(len(sa & sb) / max(len(sa | sb), 1))
        shared, ia, ib = np.intersect1d(a.indices, b.indices, return_indices=True)
        if len(shared):
            weight_diff = max(weight_diff, float(np.abs(a.values[ia] - b.values[ib]).max()))
    da, db = np.asarray(reference["dense_docs"]), np.asarray(other["dense_docs"])
    cosines = (da * db).sum(1) / (np.linalg.norm(da, axis=1) * np.linalg.norm(db, axis=1))
    return {
        "sparse_jaccard_mean": float(np.mean(jaccard)),
        "sparse_jaccard_min": float(np.min(jaccard)),
        "sparse_max_weight_diff": weight_diff,
        "dense_min_cosine": float(cosines.min()),
        "dense_max_abs_diff": float(np.abs(da - db).max()),
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| device | precision | SPLADE docs/s | MiniLM docs/s | SPLADE Jaccard mean / min | MiniLM min cosine "
        "| nDCG@10 sparse / dense / hybrid | query p50 ms SPLADE / MiniLM |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        d = r.get("difference") or {}
        jac = f"{d['sparse_jaccard_mean']:.4f} / {d['sparse_jaccard_min']:.4f}" if d else "(reference)"
        cos = f"{d['dense_min_cosine']:.6f}" if d else "(reference)"
        q = r["ndcg10"]
        lines.append(
            f"| {r['device']} | {r['precision']} | {r['sparse_docs_per_s']:.0f} | {r['dense_docs_per_s']:.0f} | {jac} "
            f"| {cos} | {q['sparse']:.2f} / {q['dense']:.2f} / {q['hybrid']:.2f} "
            f"| {r['sparse_query_ms_p50']:.1f} / {r['dense_query_ms_p50']:.1f} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda:0", help="the GPU to check (default cuda:0)")
    parser.add_argument("--dataset", default=str(DEFAULT_DATASET))
    parser.add_argument("--limit", type=int, help="only the first N passages (a quick check of the script)")
    parser.add_argument("--precisions", default=",".join(PRECISIONS), help="GPU precisions to try")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    import torch

    from hybrid_search.dataset import load_beir
    from hybrid_search.device import DeviceError, resolve_device

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA GPU here (torch.cuda.is_available() is False, torch "
            f"{torch.__version__}, CUDA build {torch.version.cuda}); nothing was measured. Record "
            "'not measured: no GPU available', or run this on a machine with an NVIDIA GPU.",
            file=sys.stderr,
        )
        return 2
    try:
        device = resolve_device(args.device)
    except DeviceError as error:
        print(f"gpu_check: {error}", file=sys.stderr)
        return 2
    data = load_beir(args.dataset)
    docs = list(data.corpus.values())[: args.limit]
    doc_ids, texts = [d.id for d in docs], [d.full_text for d in docs]
    qids = [q for q in data.judged_queries if data.queries.get(q, "").strip()]
    queries = [data.queries[q] for q in qids]
    qrels = {q: data.qrels[q] for q in qids}
    started = time.perf_counter()

    rows: list[dict[str, Any]] = []
    variants = [("cpu", "fp32")] + [(device, p.strip()) for p in args.precisions.split(",") if p.strip()]
    reference: dict[str, Any] | None = None
    for target, precision in variants:
        sparse, dense = load_encoders(target, precision)
        encoded = encode_all(sparse, dense, texts, queries)
        width = sparse.dimension
        row = {
            "device": target,
            "precision": sparse.precision,
            "gpu": torch.cuda.get_device_name(target) if target.startswith("cuda") else None,
            "ndcg10": quality(encoded, qids, doc_ids, qrels, width),
            **{k: v for k, v in encoded.items() if k.endswith(("_per_s", "_ms_p50"))},
        }
        row["difference"] = vector_difference(reference, encoded) if reference is not None else None
        reference = reference or encoded
        rows.append(row)
        print(json.dumps(row), flush=True)
        del sparse, dense
        if target.startswith("cuda"):
            torch.cuda.empty_cache()
    print()
    print(f"{len(docs)} passages, {len(qids)} judged queries, {time.perf_counter() - started:.0f}s")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"documents": len(docs), "queries": len(qids), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
