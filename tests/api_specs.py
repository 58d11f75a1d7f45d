"""The engines' own API specifications, loaded once, as strict JSON Schema validators for request bodies.

``../shared/specs`` holds OpenSearch's OpenAPI 3.1 source (YAML files that ``$ref`` each other by relative
path) and Elasticsearch's generated OpenAPI document (one JSON file). Both are registered with
:mod:`referencing`, so a ``$ref`` into another file resolves the way the spec's own tooling resolves it, and
bodies are validated with :class:`jsonschema.Draft202012Validator`.

Strict mode. Neither spec closes its objects: ``QueryContainer`` lists the query types as ``properties``
without ``additionalProperties: false``, so as published a misspelt query type (``nueral_sparse``) or a
parameter one level too deep would pass. The spec's schemas compose objects with ``allOf`` (``QueryBase`` +
the query's own fields), so ``additionalProperties: false`` cannot be added to each part; instead every
schema in a *value position* (a property's value, an array item, a request body) whose ``$ref``/``allOf``/
``oneOf`` closure declares properties gets ``unevaluatedProperties: false``, which sees through the
composition. Free-form objects (``additionalProperties`` or a branch that is a bare ``type: object``) stay
open. :func:`recorded_requests` gives the real requests of the OpenSearch story tests and Elasticsearch's
examples, and the conformance tests check that strict mode accepts them: strictness is calibrated against
what real clusters accepted, not against the adapters.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.paths import SPECS, missing

OPENSEARCH = SPECS / "opensearch"
ELASTICSEARCH = SPECS / "elasticsearch"
ES_URI = "urn:elasticsearch-specification:serverless-openapi.json"

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_VALUE_KEYS = ("additionalProperties", "items", "contains", "unevaluatedItems")
_BRANCH_KEYS = ("oneOf", "anyOf")


def available() -> bool:
    return (OPENSEARCH / "spec" / "namespaces" / "_core.yaml").exists() and (
        ELASTICSEARCH / "elasticsearch-serverless-openapi.json"
    ).exists()


def skip_reason() -> str:
    return missing(SPECS, "the engines' API specifications")


# --- strict mode ------------------------------------------------------------------------------------
class _Closer:
    """Adds ``unevaluatedProperties: false`` to the value-position schemas of a set of OpenAPI documents."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._shape: dict[int, tuple[bool, bool, bool]] = {}

    def shape(self, node: Any, resolver: Any, seen: frozenset[int] = frozenset()) -> tuple[bool, bool, bool]:
        """``(declares properties, open to any key, may be an object)`` over the ``$ref``/``allOf``/``oneOf`` closure."""
        if not isinstance(node, dict):
            return False, node is True, node is True
        key = id(node)
        if key in self._shape:
            return self._shape[key]
        if key in seen:
            return False, False, True
        seen = seen | {key}
        props = "properties" in node
        extra = node.get("additionalProperties", None)
        opened = (extra not in (None, False)) or "patternProperties" in node
        types = node.get("type")
        obj = types is None or "object" in (types if isinstance(types, list) else [types])
        if "enum" in node or "const" in node:
            obj = obj and any(isinstance(v, dict) for v in node.get("enum", [node.get("const")]))
        if "$ref" in node:
            target = resolver.lookup(node["$ref"])
            p, o, ob = self.shape(target.contents, target.resolver, seen)
            props, opened, obj = props or p, opened or o, obj and ob
        for member in node.get("allOf", []):
            p, o, ob = self.shape(member, resolver, seen)
            props, opened, obj = props or p, opened or o, obj and ob
        for branches in (node.get(k) for k in _BRANCH_KEYS):
            if branches:
                shapes = [self.shape(b, resolver, seen) for b in branches]
                props = props or any(s[0] for s in shapes)
                # a branch that may be an object but declares nothing accepts any object
                opened = opened or any(s[1] or (s[2] and not s[0]) for s in shapes)
                obj = obj and any(s[2] for s in shapes)
        result = (props, opened, obj)
        if len(seen) == 1:
            self._shape[key] = result
        return result

    def close(self, node: Any, resolver: Any, value_position: bool) -> None:
        if not isinstance(node, dict):
            return
        for child in (node.get("properties") or {}).values():
            self.close(child, resolver, True)
        for child in (node.get("patternProperties") or {}).values():
            self.close(child, resolver, True)
        for k in _VALUE_KEYS:
            if isinstance(node.get(k), dict):
                self.close(node[k], resolver, True)
        for child in node.get("prefixItems", []):
            self.close(child, resolver, True)
        for k in ("allOf", *_BRANCH_KEYS):
            for child in node.get(k, []):
                self.close(child, resolver, False)
        if value_position and not any(k in node for k in ("unevaluatedProperties", "additionalProperties")):
            props, opened, obj = self.shape(node, resolver)
            if props and not opened and obj:
                node["unevaluatedProperties"] = False

    def close_document(self, doc: dict[str, Any], uri: str) -> None:
        resolver = self.registry.resolver(base_uri=uri)
        components = doc.get("components") or {}
        for schema in (components.get("schemas") or {}).values():
            self.close(schema, resolver, False)
        bodies = list((components.get("requestBodies") or {}).values())
        for operations in (doc.get("paths") or {}).values():
            bodies += [op["requestBody"] for op in operations.values() if isinstance(op, dict) and "requestBody" in op]
        for body in bodies:
            for media in (body.get("content") or {}).values():
                if "schema" in media:
                    self.close(media["schema"], resolver, True)


#: Where Elasticsearch's generated OpenAPI document loses what its TypeScript source says, and the repair
#: applied before validating (each is a generator artifact, not an engine rule; see the engine docs cited).
ES_REPAIRS = {
    "ES_VARIANT_CONTAINER_IN_ALLOF": "a variant container (exactly one of some keys) mixed into a larger object "
    "is written as an allOf member with minProperties/maxProperties 1, which JSON Schema applies to the whole "
    "object, rejecting e.g. the documented sparse_vector query (field + query_vector: "
    "https://www.elastic.co/docs/reference/query-languages/query-dsl/query-dsl-sparse-vector-query) and dynamic "
    "templates (path_match + mapping: https://www.elastic.co/docs/manage-data/data-store/mapping/dynamic-templates); "
    "rewritten as 'exactly one of the container's own keys'",
    "ES_UNIONS_AS_ANYOF": "TypeScript unions are written as oneOf although their members overlap (a string and a "
    "nullable string: the text field's similarity name), so valid values match two members and fail; read as anyOf",
    "ES_DROPPED_ADDITIONAL_PROPERTIES": "a [field: string] map in the TypeScript source (the terms query's "
    "field -> values: https://www.elastic.co/docs/reference/query-languages/query-dsl/query-dsl-terms-query) "
    "becomes a bare {type: object} allOf member; kept open",
    "ES_SHORTCUT_PROPERTIES": "@shortcut_property forms are not written out: term {field: value} for "
    "{field: {value: value}} (https://www.elastic.co/docs/reference/query-languages/query-dsl/query-dsl-term-query) "
    "and _source: [fields] for {includes: [fields]}, match {field: text} for {field: {query: text}} "
    "(https://www.elastic.co/docs/reference/elasticsearch/rest-apis/retrieve-selected-fields#source-filtering)",
    "ES_DROPPED_ALIASES": "@aliases are not written out: source filtering's include/exclude for "
    "includes/excludes (https://www.elastic.co/docs/reference/elasticsearch/rest-apis/retrieve-selected-fields)",
    "ES_USER_DEFINED_VALUE": "script params (any JSON value: "
    "https://www.elastic.co/docs/explore-analyze/scripting/modules-scripting-using) are written as a map of "
    "objects, rejecting the query vector list the vector functions take; read as any value",
}
_SHORTCUTS = {  # schema -> the shortcut form it also accepts
    "_types.query_dsl.TermQuery": {"$ref": "#/components/schemas/_types.FieldValue"},
    "_types.query_dsl.MatchQuery": {"$ref": "#/components/schemas/_types.FieldValue"},
    "_global.search._types.SourceFilter": {"$ref": "#/components/schemas/_types.Fields"},
}


def _repair_elasticsearch(doc: dict[str, Any]) -> None:
    """Apply :data:`ES_REPAIRS` to the generated document (in place)."""
    schemas = doc["components"]["schemas"]
    source_filter = schemas["_global.search._types.SourceFilter"]["properties"]
    source_filter["include"], source_filter["exclude"] = source_filter["includes"], source_filter["excludes"]
    for name, shortcut in _SHORTCUTS.items():
        schemas[name] = {"anyOf": [shortcut, schemas[name]]}
    _repair_nodes(doc)


def _repair_nodes(node: Any) -> None:
    if isinstance(node, dict):
        if "oneOf" in node:
            node["anyOf"] = node.pop("oneOf")
        for member in node.get("allOf", []):
            if not isinstance(member, dict):
                continue
            if "properties" in member and member.get("maxProperties") == 1:
                member.pop("maxProperties")
                member.pop("minProperties", None)
                member["oneOf"] = [{"required": [k]} for k in member["properties"]]
            elif set(member) == {"type"} and member["type"] == "object":
                member["additionalProperties"] = True
        if node.get("additionalProperties") == {"type": "object"}:
            node["additionalProperties"] = {}
        for key, value in node.items():
            if key != "oneOf" or not isinstance(value, list) or not all(set(v) == {"required"} for v in value):
                _repair_nodes(value)
    elif isinstance(node, list):
        for value in node:
            _repair_nodes(value)


# --- loading ----------------------------------------------------------------------------------------
@functools.cache
def _documents(engine: str) -> dict[str, dict[str, Any]]:
    """The parsed spec files (parsed once; :func:`registry` copies them before changing anything)."""
    return _opensearch_documents() if engine == "opensearch" else _elasticsearch_documents()


def _opensearch_documents() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted((OPENSEARCH / "spec").rglob("*.yaml")):
        with path.open() as f:
            docs[path.resolve().as_uri()] = yaml.load(f, Loader=_LOADER)
    return docs


def _elasticsearch_documents() -> dict[str, dict[str, Any]]:
    with (ELASTICSEARCH / "elasticsearch-serverless-openapi.json").open() as f:
        return {ES_URI: json.load(f)}


@functools.cache
def registry(engine: str, *, strict: bool = True) -> Registry:
    """All of ``engine``'s spec documents, ``strict`` (closed objects) or as published."""
    docs = copy.deepcopy(_documents(engine)) if strict else _documents(engine)
    reg = Registry().with_resources(
        (uri, Resource.from_contents(doc, default_specification=DRAFT202012)) for uri, doc in docs.items()
    )
    if strict:
        if engine == "elasticsearch":
            _repair_elasticsearch(docs[ES_URI])
        closer = _Closer(reg)
        for uri, doc in docs.items():
            closer.close_document(doc, uri)
    return reg


def _pointer(*parts: str) -> str:
    return "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def request_schema_uri(engine: str, operation: str, media: str = "application/json") -> str:
    """The URI of the request-body schema of a spec operation, e.g. ``("opensearch", "search")``.

    OpenSearch names request bodies after the operation group in each namespace file; Elasticsearch's
    generated document does the same for shared bodies and inlines the others under ``paths``.
    """
    if engine == "opensearch":
        namespace, _, _ = operation.rpartition(".")
        path = OPENSEARCH / "spec" / "namespaces" / f"{namespace or '_core'}.yaml"
        return f"{path.resolve().as_uri()}#/" + _pointer(
            "components", "requestBodies", operation, "content", media, "schema"
        )
    return f"{ES_URI}#/" + _pointer(
        *ES_INLINE.get(operation, ("components", "requestBodies", operation)), "content", media, "schema"
    )


#: Elasticsearch request bodies the generated document inlines in the path item instead of naming them.
ES_INLINE = {"indices.create": ("paths", "/{index}", "put", "requestBody")}


def schema_uri(engine: str, relative: str) -> str:
    """A named schema: ``("opensearch", "_core.bulk.yaml#/components/schemas/OperationContainer")`` or
    ``("elasticsearch", "_global.bulk.OperationContainer")``."""
    if engine == "opensearch":
        file, _, fragment = relative.partition("#")
        return (OPENSEARCH / "spec" / "schemas" / file).resolve().as_uri() + "#" + fragment
    return f"{ES_URI}#/components/schemas/{relative}"


@functools.cache
def validator(uri: str, engine: str, *, strict: bool = True) -> Draft202012Validator:
    return Draft202012Validator({"$ref": uri}, registry=registry(engine, strict=strict))


def errors(engine: str, uri: str, body: Any, *, strict: bool = True) -> list[ValidationError]:
    return list(validator(uri, engine, strict=strict).iter_errors(body))


def describe(errs: list[ValidationError]) -> str:
    """The most relevant error first, with where in the body it is."""
    if not errs:
        return "valid"
    top = best_match(errs)
    return f"{top.json_path}: {top.message[:300]} ({len(errs)} error(s))"


def lookup(engine: str, uri: str) -> Any:
    """The spec node at ``uri``, as published."""
    return registry(engine, strict=False).resolver().lookup(uri).contents


def opensearch_uri(relative: str) -> str:
    """``("namespaces/search_pipeline.yaml#/paths/...")`` → the URI of that node in the OpenSearch spec."""
    file, _, fragment = relative.partition("#")
    return (OPENSEARCH / "spec" / file).resolve().as_uri() + "#" + fragment


def story(relative: str) -> dict[str, Any]:
    with (OPENSEARCH / "tests" / relative).open() as f:
        return yaml.load(f, Loader=_LOADER)


# --- recorded requests ------------------------------------------------------------------------------
def _ndjson(value: Any) -> Any:
    if isinstance(value, str):
        return json.loads(value)
    return value


def story_chapters(relative: str) -> list[dict[str, Any]]:
    """The prologues and chapters of an OpenSearch story test (``tests/default/...``): real requests and the
    responses a real cluster gave (checked in that project's CI)."""
    with (OPENSEARCH / "tests" / relative).open() as f:
        story = yaml.load(f, Loader=_LOADER)
    return [*(story.get("prologues") or []), *(story.get("chapters") or [])]


def all_stories() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted((OPENSEARCH / "tests").rglob("*.yaml")):
        with path.open() as f:
            story = yaml.load(f, Loader=_LOADER)
        if isinstance(story, dict):
            yield str(path.relative_to(OPENSEARCH / "tests")), story


def es_example(relative: str) -> Any:
    """The JSON value of an Elasticsearch example file (``examples/...yaml``, its ``value`` is JSON text)."""
    with (ELASTICSEARCH / "examples" / relative).open() as f:
        value = yaml.load(f, Loader=_LOADER)["value"]
    return json.loads(value) if isinstance(value, str) else value
