"""A recorded conversation with an OpenSearch / Elasticsearch server, at the HTTP layer of the real clients.

No server can run here (../shared/OFFLINE.md), so the adapters' wiring is checked by plugging a fake
transport into the official clients: the requests are the ones opensearch-py / elasticsearch-py really
build (paths, query parameters, NDJSON bulk bodies), and the answers are canned responses in the shapes
the engines' documentation shows. This checks what the adapter sends and how it reads answers; what the
engine then does with a request is only checked against documentation.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import numpy as np

from hybrid_search.index import IndexMeta
from hybrid_search.types import SparseVector

_SERVERS: dict[str, FakeServer] = {}

#: A toy model pair for the adapter tests: a vocabulary with the hard token names (dots, non-ASCII).
TOY_SPARSE = {
    "name": "toy-splade",
    "architecture": "splade",
    "dimension": 6,
    "similarity": "dot",
    "max_active_dims": None,
}
TOY_DENSE = {"name": "toy-dense", "dimension": 3, "similarity": "cosine"}
TOY_VOCAB = ["[PAD]", "paris", "a.m.", "##s", "café", "."]


def toy_meta() -> IndexMeta:
    return IndexMeta(engine="", sparse=dict(TOY_SPARSE), dense=dict(TOY_DENSE))


def sparse_vec(pairs: dict[int, float]) -> SparseVector:
    return SparseVector(np.array(list(pairs)), np.array(list(pairs.values()), dtype=np.float32))


class FakeServer:
    """Canned answers per route; every request is kept in ``requests`` as (method, path, params, body)."""

    def __init__(
        self,
        info: dict[str, Any],
        *,
        plugins: list[str] | None = None,
        license_type: str = "trial",
        hits: list[dict[str, Any]] | None = None,
        fail_ids: tuple[str, ...] = (),
    ) -> None:
        self.info = info
        self.plugins = plugins or []
        self.license_type = license_type
        self.hits = hits or []
        self.fail_ids = set(fail_ids)
        self.indices: dict[str, dict[str, Any]] = {}
        self.docs: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str], Any]] = []

    # --- what a test looks at -------------------------------------------------------------------
    def bodies(self, method: str, suffix: str) -> list[Any]:
        return [b for m, p, _, b in self.requests if m == method and p.endswith(suffix)]

    def params(self, method: str, suffix: str) -> list[dict[str, str]]:
        return [q for m, p, q, _ in self.requests if m == method and p.endswith(suffix)]

    # --- routing --------------------------------------------------------------------------------
    def handle(self, method: str, path: str, params: dict[str, str], raw: bytes | str | None) -> tuple[int, Any]:
        text = raw.decode() if isinstance(raw, bytes) else raw
        body: Any = None
        if text and path.endswith("/_bulk"):
            body = [json.loads(line) for line in text.splitlines() if line.strip()]
        elif text:
            body = json.loads(text)
        self.requests.append((method, path, dict(params), body))
        parts = [p for p in path.split("/") if p]
        if not parts:
            return 200, self.info
        if parts == ["_cat", "plugins"]:
            return 200, [{"name": "node-1", "component": p, "version": "x"} for p in self.plugins]
        if parts == ["_license"]:
            return 200, {"license": {"status": "active", "type": self.license_type}}
        if parts[:2] == ["_search", "pipeline"]:
            return 200, {"acknowledged": True}
        if parts[-1] == "_bulk":
            return 200, self._bulk(body)
        index = parts[0]
        if len(parts) == 1:
            if method == "HEAD":
                return (200 if index in self.indices else 404), None
            if method == "PUT":
                self.indices[index] = body
                return 200, {"acknowledged": True, "index": index}
            if method == "DELETE":
                self.indices.pop(index, None)
                return 200, {"acknowledged": True}
        action = parts[1]
        if action == "_mapping" and method == "GET":
            if index not in self.indices:
                return 404, {"error": {"type": "index_not_found_exception"}, "status": 404}
            return 200, {index: {"mappings": self.indices[index]["mappings"]}}
        if action == "_mapping" and method == "PUT":
            self.indices[index]["mappings"].update(body)
            return 200, {"acknowledged": True}
        if action == "_refresh":
            return 200, {"_shards": {"total": 1, "successful": 1, "failed": 0}}
        if action == "_mget":
            docs = []
            for spec in body["docs"]:
                source = self.docs.get(spec["_id"])
                found = {"_index": index, "_id": spec["_id"], "found": source is not None}
                if source is not None:
                    found["_source"] = {k: v for k, v in source.items() if k in spec["_source"]}
                docs.append(found)
            return 200, {"docs": docs}
        if action == "_count":
            return 200, {"count": len(self.docs), "_shards": {"total": 1, "successful": 1, "failed": 0}}
        if action == "_search":
            hits = self.hits(body) if callable(self.hits) else self.hits
            return 200, {
                "took": 1,
                "timed_out": False,
                "hits": {"total": {"value": len(hits), "relation": "eq"}, "max_score": None, "hits": hits},
            }
        return 404, {"error": {"type": "no_route", "reason": f"{method} {path}"}, "status": 404}

    def _bulk(self, lines: list[dict[str, Any]]) -> dict[str, Any]:
        items, i = [], 0
        while i < len(lines):
            ((op, meta),) = lines[i].items()
            source = lines[i + 1] if op in ("index", "create") else None
            i += 2 if source is not None else 1
            doc_id = meta["_id"]
            if doc_id in self.fail_ids:
                items.append(
                    {
                        op: {
                            "_index": meta["_index"],
                            "_id": doc_id,
                            "status": 400,
                            "error": {
                                "type": "document_parsing_exception",
                                "reason": "[rank_features] fields do not support dots",
                            },
                        }
                    }
                )
                continue
            if op == "delete":
                found = self.docs.pop(doc_id, None) is not None
                items.append(
                    {
                        op: {
                            "_id": doc_id,
                            "status": 200 if found else 404,
                            "result": "deleted" if found else "not_found",
                        }
                    }
                )
            else:
                self.docs[doc_id] = source
                items.append({op: {"_index": meta["_index"], "_id": doc_id, "status": 201, "result": "created"}})
        return {"took": 1, "errors": any(it[next(iter(it))]["status"] >= 300 for it in items), "items": items}


def opensearch_client(server: FakeServer) -> Any:
    """A real ``opensearchpy.OpenSearch`` whose connection answers from ``server``."""
    from opensearchpy import OpenSearch
    from opensearchpy.connection import Connection

    class FakeConnection(Connection):
        def __init__(self, fake_server: FakeServer | None = None, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.fake_server = fake_server

        def perform_request(self, method, url, params=None, body=None, timeout=None, ignore=(), headers=None):
            params = {k: v.decode() if isinstance(v, bytes) else v for k, v in (params or {}).items()}
            status, payload = self.fake_server.handle(method, urlsplit(url).path, params, body)
            raw = "" if payload is None else json.dumps(payload)
            if not (200 <= status < 300) and status not in ignore:
                self._raise_error(status, raw, "application/json")
            return status, {"content-type": "application/json"}, raw

    return OpenSearch(
        hosts=["http://fake-opensearch:9200"], connection_class=FakeConnection, fake_server=server, max_retries=0
    )


def elasticsearch_client(server: FakeServer) -> Any:
    """A real ``elasticsearch.Elasticsearch`` whose node answers from ``server``."""
    from elastic_transport import ApiResponseMeta, BaseNode, HttpHeaders
    from elastic_transport._node._base import NodeApiResponse
    from elasticsearch import Elasticsearch

    name = f"fake-es-{id(server)}"
    _SERVERS[name] = server

    class FakeNode(BaseNode):
        def perform_request(self, method, target, body=None, headers=None, request_timeout=None):
            parts = urlsplit(target)
            status, payload = _SERVERS[self.config.host].handle(method, parts.path, dict(parse_qsl(parts.query)), body)
            raw = b"" if payload is None else json.dumps(payload).encode()
            meta = ApiResponseMeta(
                status,
                "1.1",
                HttpHeaders({"content-type": "application/json", "x-elastic-product": "Elasticsearch"}),
                0.0,
                self.config,
            )
            return NodeApiResponse(meta, raw)

    return Elasticsearch(hosts=[f"http://{name}:9200"], node_class=FakeNode, max_retries=0)
