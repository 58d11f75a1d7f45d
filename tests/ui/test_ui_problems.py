"""What the page shows when something fails (``ui.problems``): each error a kind, a title, a message and a hint."""

from __future__ import annotations

import pytest

from hybrid_search.index import IndexNotFoundError, ModelMismatchError, UnknownFilterFieldError
from hybrid_search.models import ModelNotAvailableError
from hybrid_search.retrieval import EmptyQueryError
from ui.problems import describe_error


def _connection_error() -> Exception:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except ConnectionRefusedError as inner:
            raise RuntimeError("ResponseHandlingException") from inner
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (IndexNotFoundError("no index at x"), "no_index"),
        (ModelMismatchError("built with splade-tiny"), "model_mismatch"),
        (ModelNotAvailableError("could not load model"), "model_unavailable"),
        (EmptyQueryError("empty"), "empty_query"),
        (_connection_error(), "unreachable"),
        (Exception("failed to open WAL x: Can't init WAL: Kind(WouldBlock)"), "index_busy"),
        (UnknownFilterFieldError("unknown filter field"), "bad_input"),
        (KeyError("boom"), "error"),
    ],
)
def test_errors_become_problems(error, kind):
    problem = describe_error(error, "/data/idx")
    assert problem.kind == kind and problem.title and problem.message
    if kind == "no_index":
        assert "hybrid-search index CORPUS --index /data/idx" in problem.hint and "make demo" in problem.hint
    if kind == "unreachable":
        assert "/data/idx" in problem.message and "Connection refused" in problem.message
