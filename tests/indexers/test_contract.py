"""One contract for every engine: what the pipelines rely on from an index, run against each adapter.

Always: Qdrant Edge and qdrant-client local mode. When reachable: a Qdrant server, OpenSearch and
Elasticsearch — from ``HYBRID_SEARCH_<ENGINE>_URL`` or, when a Docker daemon answers, from testcontainers
(the images pinned in docker-compose.yml). Otherwise those engines skip and say how to run them.

Everything runs on the real SPLADE-tiny / MiniLM vectors of the demo corpus the repository ships (the session
fixtures; so a plain clone runs the contract too), with a synthetic ``lang`` / ``bucket`` metadata field on a
copy of the documents for the filters.
"""

from __future__ import annotations

import os
import uuid
from itertools import pairwise
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import pytest

from hybrid_search.fusion import same_order
from hybrid_search.index import (
    IndexMeta,
    ModelMismatchError,
    UnknownFilterFieldError,
    content_hash,
    matches,
)
from hybrid_search.retrieval import HybridSearcher
from hybrid_search.types import Document
from indexers import create_index, open_index
from indexers.credentials import env_name
from tests.paths import REPO

ENGINES = ["qdrant-edge", "qdrant-local", "qdrant-server", "opensearch", "elasticsearch"]
#: engine → (credentials engine, name in messages, docker-compose service, container port)
SERVERS = {
    "qdrant-server": ("qdrant", "Qdrant server", "qdrant", 6333),
    "opensearch": ("opensearch", "OpenSearch", "opensearch", 9200),
    "elasticsearch": ("elasticsearch", "Elasticsearch", "elasticsearch", 9200),
}
#: Relative precision of stored sparse weights: rank_features / sparse_vector keep 9 significant bits.
SPARSE_TOL = {"opensearch": 2**-8, "elasticsearch": 2**-8}
LANGS = ("en", "fr", "de")
QUERY_IDS = 4


# --- where the servers are ---------------------------------------------------------------------------
def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - no SDK, no socket, no daemon: all mean "no Docker here"
        return False


def _compose_image(service: str) -> str:
    import yaml

    return yaml.safe_load((REPO / "docker-compose.yml").read_text())["services"][service]["image"]


def _start_container(engine: str) -> tuple[Any, str]:
    _, _, service, port = SERVERS[engine]
    image = _compose_image(service)
    if engine == "opensearch":
        from testcontainers.community.opensearch import OpenSearchContainer

        container = OpenSearchContainer(image)
    elif engine == "elasticsearch":
        from testcontainers.elasticsearch import ElasticSearchContainer

        container = ElasticSearchContainer(image).with_env("xpack.license.self_generated.type", "trial")
    else:
        from testcontainers.qdrant import QdrantContainer

        container = QdrantContainer(image)
    container.start()
    return container, f"http://{container.get_container_host_ip()}:{container.get_exposed_port(port)}"


@pytest.fixture(scope="session")
def server_url():
    """``server_url(engine)``: the engine's URL, starting a container once if needed, or a skip that says why."""
    found: dict[str, str] = {}
    containers: list[Any] = []

    def get(engine: str) -> str:
        if engine not in found:
            creds_engine, name, _, _ = SERVERS[engine]
            variable = env_name(creds_engine, "url")
            url = os.environ.get(variable)
            if not url:
                if not _docker_answers():
                    pytest.skip(f"{name} not reachable: set {variable} or run a Docker daemon for testcontainers")
                container, url = _start_container(engine)
                containers.append(container)
            found[engine] = url
        return found[engine]

    yield get
    for container in containers:
        container.stop()


# --- building indexes --------------------------------------------------------------------------------
class Target:
    """Where one test index of one engine lives, and how to create, reopen and remove it."""

    def __init__(self, engine: str, root: Path, url: str | None, vocabulary: list[str] | None) -> None:
        self.engine, self.root, self.url, self.vocabulary = engine, root, url, vocabulary

    def place(self, name: str) -> tuple[str, dict[str, Any]]:
        unique = f"hs-contract-{name}-{uuid.uuid4().hex[:8]}"
        if self.engine == "qdrant-edge":
            return str(self.root / unique), {}
        if self.engine == "qdrant-local":
            return f"qdrant-local:{self.root / unique}", {}
        if self.engine == "qdrant-server":
            return f"qdrant+{self.url}", {"collection": unique.replace("-", "_")}
        return f"{self.engine}+{self.url}/{unique}", {"vocabulary": self.vocabulary}

    def build(self, name: str, docs, sparse, dense, meta: IndexMeta):
        location, kwargs = self.place(name)
        index = create_index(location, meta, exact=True, **kwargs)
        index.upsert(docs, sparse, dense)
        return index, location, kwargs

    def remove(self, index) -> None:
        if hasattr(index, "drop"):
            index.drop()
        elif self.engine == "qdrant-server":
            index.client.delete_collection(index.collection)
        index.close()


@pytest.fixture(scope="module")
def corpus(demo_vectors):
    """The shipped demo corpus (real passages on every checkout) with synthetic metadata in place of its own:
    ``lang`` (string) and ``bucket`` (integer)."""
    docs, sparse, dense = demo_vectors
    tagged = [Document(d.id, d.text, d.title, {"lang": LANGS[i % 3], "bucket": i % 4}) for i, d in enumerate(docs)]
    return tagged, sparse, dense


@pytest.fixture(scope="module")
def meta_factory(splade, minilm):
    return lambda: IndexMeta(engine="", sparse=splade.settings(), dense=minilm.settings())


@pytest.fixture(scope="module", params=ENGINES)
def target(request, server_url, tmp_path_factory, splade):
    engine = request.param
    url = server_url(engine) if engine in SERVERS else None
    vocabulary = None
    if engine in ("opensearch", "elasticsearch"):
        from indexers.sparse_keys import load_vocabulary

        vocabulary = load_vocabulary(splade.settings())
    return Target(engine, tmp_path_factory.mktemp(engine), url, vocabulary)


@pytest.fixture(scope="module")
def full_index(target, corpus, meta_factory):
    docs, sparse, dense = corpus
    index, _, _ = target.build("full", docs, sparse, dense, meta_factory())
    yield index
    target.remove(index)


@pytest.fixture(scope="module")
def query_vectors(demo_queries, splade, minilm):
    """A few of the demo's queries, encoded once: [(text, sparse, dense)]."""
    texts = [demo_queries[q] for q in sorted(demo_queries)[:QUERY_IDS]]
    return list(zip(texts, splade.encode_query(texts), minilm.encode_query(texts)))


def exact_sparse(corpus, qvec) -> dict[str, float]:
    docs, sparse, _ = corpus
    return {d.id: qvec.dot(v) for d, v in zip(docs, sparse)}


# --- the contract -------------------------------------------------------------------------------------
def test_index_count_upsert_again_and_delete(target, corpus, meta_factory):
    docs, sparse, dense = corpus
    index, _, _ = target.build("lifecycle", docs[:30], sparse[:30], dense[:30], meta_factory())
    try:
        assert index.count() == 30
        index.upsert(docs[:30], sparse[:30], dense[:30])  # idempotent: same ids, same documents
        assert index.count() == 30
        assert index.stored_hashes([d.id for d in docs[:5]]) == {d.id: content_hash(d) for d in docs[:5]}
        got = index.get([docs[2].id, "not-there", docs[0].id])
        assert [d.id for d in got] == [docs[2].id, docs[0].id] and got[0].metadata == docs[2].metadata
        assert got[0].text == docs[2].text and got[0].title == docs[2].title
        index.delete([d.id for d in docs[:3]] + ["never-stored"])
        assert index.count() == 27 and index.get([docs[0].id]) == []
        assert sorted(index.meta.metadata_fields) == ["bucket", "lang"]
    finally:
        target.remove(index)


def test_sparse_search_is_the_dot_product(target, full_index, corpus, query_vectors):
    tol = SPARSE_TOL.get(target.engine, 1e-5)
    for _, qs, _ in query_vectors:
        exact = exact_sparse(corpus, qs)
        ranking = full_index.search_sparse(qs, 10)
        assert len(ranking) == 10
        for hit in ranking:
            assert hit.score == pytest.approx(exact[hit.id], rel=tol, abs=1e-6)
        returned = {h.id for h in ranking}
        best_left_out = max(s for i, s in exact.items() if i not in returned)
        assert min(exact[i] for i in returned) >= best_left_out * (1 - 2 * tol) - 1e-6


def test_dense_search_finds_the_exact_nearest_neighbours(full_index, corpus, query_vectors):
    docs, _, dense = corpus
    for _, _, qd in query_vectors:
        cosine = dense @ qd / (np.linalg.norm(dense, axis=1) * np.linalg.norm(qd))
        expected = [docs[i].id for i in np.argsort(-cosine, kind="stable")[:10]]
        ranking = full_index.search_dense(qd, 10)
        assert [h.id for h in ranking] == expected
        assert all(a.score >= b.score for a, b in pairwise(ranking))


def test_bm25_search_ranks_documents_with_the_query_words(full_index, corpus, query_vectors):
    docs = {d.id: d for d in corpus[0]}
    for text, _, _ in query_vectors:
        ranking = full_index.search_bm25(text, 10)
        assert ranking and all(a.score >= b.score for a, b in pairwise(ranking))
        words = {w for w in text.lower().split() if len(w) > 3}
        top = docs[ranking[0].id].full_text.lower()
        assert any(w in top for w in words), (text, top[:200])


def test_engine_side_fusion_equals_client_side(full_index, query_vectors):
    engine_rrf = "rrf" in full_index.engine_fusions
    for filters in (None, {"lang": ["en", "fr"]}):
        for _, qs, qd in query_vectors:
            with mock.patch.object(full_index, "_hybrid_raw", wraps=full_index._hybrid_raw) as spy:
                engine = full_index.search_hybrid(qs, qd, 10, prefetch_k=50, filters=filters)
            assert (spy.call_count >= 1) == engine_rrf
            client = full_index.search_hybrid(qs, qd, 10, prefetch_k=50, filters=filters, engine_fusion=False)
            assert len(engine) == 10
            assert same_order(engine, client, 10), ([h.id for h in engine], [h.id for h in client])


def test_engine_fusion_keeps_the_whole_tie_at_the_cut(full_index, query_vectors):
    """Equal RRF scores at the ``k``-th place (the r-th sparse-only and the r-th dense-only document) are
    common with shallow prefetches; the engine's page must hold the same documents as the client's, not
    whichever of the tied ones the engine happened to order first."""
    if "rrf" not in full_index.engine_fusions:
        pytest.skip(f"{full_index.engine} does not fuse RRF itself")
    crossing = 0
    for _, qs, qd in query_vectors:
        for k, prefetch in ((5, 5), (10, 10), (10, 20), (7, 6)):
            client = full_index.search_hybrid(qs, qd, 4 * prefetch, prefetch_k=prefetch, engine_fusion=False)
            crossing += len(client) > k and client[k].score == client[k - 1].score
            engine = full_index.search_hybrid(qs, qd, k, prefetch_k=prefetch)
            assert [h.id for h in engine] == [h.id for h in client[:k]], (k, prefetch)
    assert crossing, "no tie crossed the cut: the test would not catch a cut tie group"


def test_filters_equality_and_any_of_on_every_channel(full_index, corpus, query_vectors):
    docs = {d.id: d for d in corpus[0]}
    text, qs, qd = query_vectors[0]
    for filters in ({"lang": "fr"}, {"bucket": [0, 2]}, {"lang": ["en", "de"], "bucket": 1}):
        results = {
            "sparse": full_index.search_sparse(qs, 10, filters),
            "dense": full_index.search_dense(qd, 10, filters),
            "bm25": full_index.search_bm25(text, 10, filters),
            "hybrid": full_index.search_hybrid(qs, qd, 10, prefetch_k=50, filters=filters),
        }
        for channel, ranking in results.items():
            assert ranking, (channel, filters)
            assert all(matches(docs[h.id], filters) for h in ranking), (channel, filters)


def test_unknown_filter_fields_are_refused(full_index, query_vectors):
    text, qs, qd = query_vectors[0]
    bad = {"colour": "red"}
    for call in (
        lambda: full_index.search_sparse(qs, 5, bad),
        lambda: full_index.search_dense(qd, 5, bad),
        lambda: full_index.search_bm25(text, 5, bad),
        lambda: full_index.search_hybrid(qs, qd, 5, filters=bad),
    ):
        with pytest.raises(UnknownFilterFieldError, match="colour"):
            call()


def test_other_models_are_refused_after_reopening(target, corpus, meta_factory, splade, minilm):
    docs, sparse, dense = corpus
    index, location, kwargs = target.build("models", docs[:10], sparse[:10], dense[:10], meta_factory())
    index.close()
    reopened = open_index(location, exact=True, **kwargs)
    try:
        assert reopened.meta.sparse["name"] == splade.name and reopened.meta.dense["name"] == minilm.name
        assert sorted(reopened.meta.metadata_fields) == ["bucket", "lang"]
        assert reopened.count() == 10
        other_dense = {**minilm.settings(), "name": "other-model", "dimension": 768}
        with pytest.raises(ModelMismatchError, match="other-model"):
            reopened.meta.check_models(splade.settings(), other_dense)

        class OtherSparse:
            def settings(self):
                return {**splade.settings(), "name": "other-sparse", "architecture": "inference-free"}

        with pytest.raises(ModelMismatchError, match="--sparse"):
            HybridSearcher(reopened, sparse=OtherSparse(), dense=minilm)
        HybridSearcher(reopened, sparse=splade, dense=minilm)  # the models that built it are accepted
    finally:
        target.remove(reopened)
