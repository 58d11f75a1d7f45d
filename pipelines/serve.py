"""``hybrid-search ui``: serve the Streamlit search UI on an index, and check it from a script.

This module launches the app (``ui/app.py``) by its file path and never imports ``ui`` (dependencies point one
way: ui → pipelines → indexers → hybrid_search). What the page collects and shows lives in ``ui/``
(``ui.settings``, ``ui.problems``); what is written on the app's command line, and read back by it, is here
(:func:`streamlit_command`, :func:`app_arguments`), in one place. ``hybrid-search ui --check`` is the
non-interactive variant for scripts: it starts the server, waits for ``/_stcore/health``, runs one search through
the running app (Streamlit's agent API drives the same script a browser does), prints the hits and exits.

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
from pathlib import Path
from typing import Any

from indexers.credentials import redact
from pipelines.cli import DEMO_INDEX, LOCATION_HELP
from pipelines.markdown import md_plain, parse_hit_line
from pipelines.output import terminal_safe

#: Where the UI reads its index location when no ``--index`` follows ``--`` on its command line.
INDEX_ENV = "HYBRID_SEARCH_INDEX"
#: The cross-encoders the page may load, separated by ``os.pathsep``, when no ``--allow-reranker`` is given.
RERANKERS_ENV = "HYBRID_SEARCH_UI_RERANKERS"
DEFAULT_INDEX = DEMO_INDEX  # the same default as `search` and `demo`
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8501
CHECK_QUERY = "what is the capital of france"

#: Streamlit's settings for every run: headless, never prompting, no usage statistics, no file watcher, the
#: project's theme. The address, port and agent API are added per run by :func:`streamlit_command`.
STREAMLIT_OPTIONS = {
    "server.headless": "true",
    "server.showEmailPrompt": "false",
    "server.fileWatcherType": "none",
    "browser.gatherUsageStats": "false",
    "client.toolbarMode": "viewer",
    "theme.base": "light",
    "theme.primaryColor": "#4f46e5",
}

#: The app, found by path: the ``ui`` package sits beside ``pipelines`` in a checkout and in an install.
APP_PATH = Path(__file__).resolve().parents[1] / "ui" / "app.py"


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
    options = {**STREAMLIT_OPTIONS, "server.address": host, "server.port": str(port), "browser.serverAddress": host}
    if agent_api:
        options["server.enableAgentApi"] = "true"
    command = [sys.executable, "-m", "streamlit", "run", str(app)]
    for name, value in options.items():
        command += [f"--{name}", value]
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
    from hybrid_search.device import add_argument as add_device_argument

    p = subparsers.add_parser(
        "ui",
        help="serve the search UI (Streamlit) on an index",
        description="Serve the Streamlit search UI on an index, bound to 127.0.0.1 unless --host says otherwise. "
        "--check runs it without a browser: health check, one search through the app, exit.",
    )
    _add_serving_arguments(p)
    _add_check_arguments(p)
    add_device_argument(p)
    p.set_defaults(func=cmd_ui)
    return p


def _add_serving_arguments(p: argparse.ArgumentParser) -> None:
    """What to serve, where, and which models the page may load."""
    index_default = os.environ.get(INDEX_ENV, DEFAULT_INDEX)
    p.add_argument("--index", default=index_default, help=f"{LOCATION_HELP} (default ${INDEX_ENV} or {DEFAULT_INDEX})")
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


def _add_check_arguments(p: argparse.ArgumentParser) -> None:
    """``--check``: the non-interactive run for scripts."""
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
