"""Where a query through the Seismic accelerator spends its time, stage by stage, and whether its native
calls let another thread run (``bench_scale.py --sparse-ann seismic --breakdown`` calls these on the index
it just built, so the figures come from the same run as the scale rows).

Stages of the accelerated sparse channel (``SeismicAcceleratedIndex.search_sparse``), each timed alone
on the same queries, p50 over the queries:

- ``map``: the query's token ids to Seismic's renumbered components (``Accelerator.query_components``);
- ``seismic``: the Seismic call itself (Rust, through PyO3), and ``call_floor``: the same call with one
  component, ``k`` 1 and ``query_cut`` 1 (what any call costs: argument conversion, the result list);
- ``rows``: Seismic's result tuples to an array of row numbers;
- ``rescore``: the exact dot products of the candidates, gathered from the memory-mapped forward index;
- ``hits``: row numbers to ``ScoredId`` (the id table); ``delta``: the exact search of the delta;
  ``rank``: the final sort;
- for the engine's exact search: ``engine_call`` (Qdrant Edge's query, request building included) and the
  whole ``search_sparse``; for hybrid indexes the dense leg (``search_dense``), the client-side RRF
  (``fuse``), the hybrid through the accelerator and through the engine's own prefetch + RRF.

The GIL: :func:`gil_free` counts how much a pure-Python thread gets done beside a loop of native calls
(does the call release the GIL?); :func:`overlap` runs two loops of calls one after the other, then in
two threads at once: ``overlap`` = (alone A + alone B - together) / min(alone A, alone B), 1 when they
ran fully in parallel, 0 when they took turns. The hybrid query with its two legs in two threads, in
either order, is timed in :func:`hybrid_stages` (same results asserted).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from hybrid_search.fusion import fuse
from indexers.seismic import _ranked, rescore

Stages = dict[str, list[float]]


def _timed(stages: Stages, name: str, fn: Callable[[], Any]) -> Any:
    start = time.perf_counter()
    out = fn()
    stages.setdefault(name, []).append((time.perf_counter() - start) * 1e3)
    return out


def sparse_stages(accelerated: Any, queries: list, k: int) -> dict[str, float]:
    """p50 (ms) of each stage of the accelerated sparse channel at top ``k``, the engine's exact search
    beside it, and ``sum``: the stages added up (against ``whole``, the real call)."""
    from hybrid_search.types import ScoredId

    acc, engine, settings = accelerated.accelerator, accelerated.inner, accelerated.accelerator.settings
    one = acc._names[:1], np.ones(1, dtype=np.float32)
    stages: Stages = {}
    for query, _ in [queries[0], *queries]:  # the first query twice: a warm-up, dropped below
        comps, values = _timed(stages, "map", lambda q=query: acc.query_components(q))
        raw = _timed(
            stages,
            "seismic",
            lambda c=comps, v=values: acc.postings.search("q", c, v, k, settings.query_cut, settings.heap_factor),
        )
        _timed(stages, "call_floor", lambda: acc.postings.search("q", one[0], one[1], 1, 1, settings.heap_factor))
        rows = _timed(stages, "rows", lambda r=raw: np.array([x[2] for x in r], dtype=np.int64))
        scores = _timed(stages, "rescore", lambda r=rows, q=query: rescore(acc.forward, r, q).tolist())
        hits = _timed(stages, "hits", lambda r=rows, s=scores: [ScoredId(acc.ids[i], x) for i, x in zip(r.tolist(), s)])
        hits += _timed(stages, "delta", lambda q=query: acc.delta.search(q))
        _timed(stages, "rank", lambda h=hits: _ranked(h, k))
        _timed(stages, "whole", lambda q=query: accelerated.search_sparse_uncached(q, k))
        _timed(stages, "engine_call", lambda q=query: engine._search_raw("sparse", q, k, None))
        _timed(stages, "engine_search_sparse", lambda q=query: engine.search_sparse(q, k))
    p50 = {name: float(np.median(times[1:])) for name, times in stages.items()}
    p50["sum"] = sum(p50[s] for s in ("map", "seismic", "rows", "rescore", "hits", "delta", "rank"))
    return p50


def hybrid_stages(accelerated: Any, queries: list, prefetch_k: int = 100, k: int = 10) -> dict[str, float]:
    """p50 (ms) of the hybrid query's parts through the accelerator (sparse leg, dense leg, RRF) and of
    the whole: through the accelerator (legs one after the other), with the legs in two threads in
    either order (``threads_seismic_in_worker``, ``threads_dense_in_worker``), and through the engine's
    own prefetch + RRF (exact sparse)."""
    engine = accelerated.inner
    stages: Stages = {}
    with ThreadPoolExecutor(max_workers=1) as worker:

        def seismic_in_worker(s: Any, d: Any) -> Any:
            pending = worker.submit(accelerated.search_sparse_uncached, s, prefetch_k)
            dense_leg = engine.search_dense(d, prefetch_k)
            return fuse("rrf", {"sparse": pending.result(), "dense": dense_leg}, limit=k)

        def dense_in_worker(s: Any, d: Any) -> Any:
            pending = worker.submit(engine.search_dense, d, prefetch_k)
            sparse_leg = accelerated.search_sparse_uncached(s, prefetch_k)
            return fuse("rrf", {"sparse": sparse_leg, "dense": pending.result()}, limit=k)

        for sparse, dense in [queries[0], *queries]:
            legs = {
                "sparse": _timed(
                    stages, "sparse_leg", lambda s=sparse: accelerated.search_sparse_uncached(s, prefetch_k)
                ),
                "dense": _timed(stages, "dense_leg", lambda d=dense: engine.search_dense(d, prefetch_k)),
            }
            want = [h.id for h in _timed(stages, "fuse", lambda r=legs: fuse("rrf", r, limit=k))]
            accelerated._memo = None  # time the whole query, not its memoised sparse leg
            _timed(stages, "hybrid_seismic", lambda s=sparse, d=dense: accelerated.search_hybrid(s, d, k))
            for name, fn in (
                ("threads_seismic_in_worker", seismic_in_worker),
                ("threads_dense_in_worker", dense_in_worker),
            ):
                assert [h.id for h in _timed(stages, name, lambda f=fn, s=sparse, d=dense: f(s, d))] == want
            _timed(
                stages, "hybrid_engine", lambda s=sparse, d=dense: engine.search_hybrid(s, d, k, prefetch_k=prefetch_k)
            )
    accelerated.pop_timings()
    return {name: float(np.median(times[1:])) for name, times in stages.items()}


def _loop(fn: Callable[[int], Any], n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return time.perf_counter() - start


def overlap(a: Callable[[int], Any], b: Callable[[int], Any], n: int) -> dict[str, float]:
    """``n`` calls of ``a`` and of ``b``: alone, one after the other, then in two threads at once."""
    _loop(a, 3), _loop(b, 3)
    alone_a, alone_b = _loop(a, n), _loop(b, n)
    walls: list[float] = []
    start = time.perf_counter()
    threads = [threading.Thread(target=lambda f=f: walls.append(_loop(f, n))) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    together = time.perf_counter() - start
    return {
        "alone_a_s": alone_a,
        "alone_b_s": alone_b,
        "together_s": together,
        "overlap": (alone_a + alone_b - together) / min(alone_a, alone_b),
    }


def gil_free(fn: Callable[[int], Any], n: int) -> dict[str, float]:
    """How much of ``n`` calls of ``fn`` leave the GIL free: a pure-Python counting thread runs beside
    them, and ``share`` is its count over what it counts alone in the same time. The switch interval
    is cut to 0.1 ms meanwhile, so the GIL changes hands at once when it is free: a call that releases
    it gives a share near 1 (``time.sleep``: ~0.97 here), one that holds it a share of the gaps
    between calls only. ``slowdown``: the calls' time beside the counter over their time alone."""
    stop, counts = threading.Event(), [0]

    def count() -> None:
        while not stop.is_set():
            counts[0] += 1

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    try:
        _loop(fn, 3)
        alone = _loop(fn, n)
        thread = threading.Thread(target=count)
        thread.start()
        time.sleep(0.3)
        rate = counts[0] / 0.3
        before = counts[0]
        beside = _loop(fn, n)
        counted = counts[0] - before
        stop.set()
        thread.join()
    finally:
        sys.setswitchinterval(switch)
    return {"alone_s": alone, "beside_s": beside, "share": counted / (rate * beside), "slowdown": beside / alone}


def overlaps(accelerated: Any, queries: list, n: int = 200) -> dict[str, dict[str, float]]:
    """The Seismic call and the engine's searches (top 100, as in the hybrid): how much of each leaves
    the GIL free, and whether Seismic's call overlaps the engine's in two threads."""
    acc, engine, settings = accelerated.accelerator, accelerated.inner, accelerated.accelerator.settings
    comps = [acc.query_components(q) for q, _ in queries]

    def seismic_call(i: int) -> None:
        c, v = comps[i % len(comps)]
        acc.postings.search("q", c, v, 100, settings.query_cut, settings.heap_factor)

    def engine_sparse(i: int) -> None:
        engine._search_raw("sparse", queries[i % len(queries)][0], 100, None)

    def engine_dense(i: int) -> None:
        engine._search_raw("dense", np.asarray(queries[i % len(queries)][1], dtype=np.float32), 100, None)

    out = {
        "sleep_gil": gil_free(lambda _: time.sleep(0.002), n),  # the reference: releases the GIL
        "seismic_gil": gil_free(seismic_call, n),
        "engine_sparse_gil": gil_free(engine_sparse, n),
    }
    if engine.meta.dense:
        out["engine_dense_gil"] = gil_free(engine_dense, n)
        out["seismic_vs_engine_dense"] = overlap(seismic_call, engine_dense, n)
    else:
        out["seismic_vs_engine_sparse"] = overlap(seismic_call, engine_sparse, n)
    return out


def format_stages(title: str, p50: dict[str, float]) -> str:
    return f"{title}: " + ", ".join(f"{name} {ms:.3f}" for name, ms in p50.items()) + " (p50, ms)"


def format_overlaps(size: int, found: dict[str, dict[str, float]]) -> str:
    parts = []
    for name, r in found.items():
        if "share" in r:
            parts.append(
                f"{name}: GIL free {r['share']:.2f} of the time, calls {r['slowdown']:.2f}x slower beside a Python thread"
            )
        else:
            parts.append(
                f"{name}: overlap {r['overlap']:.2f} (alone {r['alone_a_s']:.2f} s + {r['alone_b_s']:.2f} s, "
                f"together {r['together_s']:.2f} s)"
            )
    return f"overlap {size:>9,}: " + "; ".join(parts)
