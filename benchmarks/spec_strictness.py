"""How strict validation of request bodies compares with OpenSearch's specification as published, over every
request that OpenSearch's story tests recorded against real clusters for the operations the adapters use.

The conformance tests (tests/indexers/test_lucene_spec_conformance.py) validate the adapters' bodies with objects
closed (tests/api_specs.py). Closing them could reject requests the engine accepts; this counts, over all
recorded requests, those the strict validator rejects, those the published specification already rejects,
and lists the ones only strict mode rejects, so that each can be seen to lie outside what the adapters send.

    HF_HUB_OFFLINE=1 PYTHONPATH=. .venv/bin/python benchmarks/spec_strictness.py

Measured at opensearch-api-specification fbe9edeb (2026-12-03): 237 recorded requests; the published
specification rejects 13, strict mode 17; the 4 only strict mode rejects all set
``settings.routing.allocation.require``, which the specification's IndexSettings leaves out and the adapters
never send.
"""

from __future__ import annotations

import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests import api_specs


def operation(path: str, method: str) -> str | None:
    """The spec operation of a recorded request, for the operations the adapters use."""
    if path.endswith("/_search") and method in ("POST", "GET"):
        return "search"
    if re.fullmatch(r"/(\{index\}|[a-z][\w.-]*)", path) and method == "PUT":
        return "indices.create"
    if path.endswith("/_mapping") and method in ("PUT", "POST"):
        return "indices.put_mapping"
    if path.startswith("/_search/pipeline/") and method == "PUT":
        return "search_pipeline.put"
    if path.endswith("/_count") and method in ("POST", "GET"):
        return "count"
    if path.endswith("/_mget"):
        return "mget"
    return None


def main() -> int:
    if not api_specs.available():
        print(api_specs.skip_reason())
        return 2
    counts: Counter[str] = Counter()
    for name, story in api_specs.all_stories():
        for chapter in [*(story.get("prologues") or []), *(story.get("chapters") or [])]:
            op = operation(chapter.get("path", ""), chapter.get("method", ""))
            payload = (chapter.get("request") or {}).get("payload")
            if op is None or payload is None:
                continue
            uri = api_specs.request_schema_uri("opensearch", op)
            strict = api_specs.errors("opensearch", uri, payload)
            published = api_specs.errors("opensearch", uri, payload, strict=False)
            counts["requests"] += 1
            counts["rejected strict"] += bool(strict)
            counts["rejected as published"] += bool(published)
            if strict and not published:
                print(f"only strict rejects {name} ({op}): {api_specs.describe(strict)}")
    print(", ".join(f"{k}: {v}" for k, v in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
