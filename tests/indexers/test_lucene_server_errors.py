"""What the server adapters do when the server misbehaves: a one-line ``error:`` and exit status 2.

Each test starts its own server on 127.0.0.1 (a socket that accepts connections and never answers, or an
HTTP server that answers with an HTML page) and talks to it through the real opensearch-py and
elasticsearch-py clients.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hybrid_search.index import EngineUnavailableError, IndexMeta, IndexStateError
from indexers import open_index
from indexers.credentials import (
    DEFAULT_TIMEOUT,
    Credentials,
    add_arguments,
    from_arguments,
)
from pipelines.cli import main

SECRET = "s3cr3t-Pa55"
NAMES = {"opensearch": "OpenSearch", "elasticsearch": "Elasticsearch"}


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A server that accepts every connection and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    server.close()
    for conn in held:
        conn.close()


class _HtmlPage(BaseHTTPRequestHandler):
    """Answers everything with a login page, as a proxy in front of the wrong service does."""

    status = 200
    page = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body><form>...</form></body></html>"

    def _answer(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(self.page)

    do_GET = do_HEAD = do_PUT = do_POST = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def html_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HtmlPage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


class _SlowSearch(BaseHTTPRequestHandler):
    """Answers what opening an index needs, like the engine does, and never answers a search."""

    engine = "elasticsearch"
    release = threading.Event()

    def _json(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Elastic-Product", "Elasticsearch")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def do_GET(self) -> None:
        path = self.path.split("?")[0]
        if path == "/":
            version = (
                {"number": "2.19.2", "distribution": "opensearch"}
                if self.engine == "opensearch"
                else {"number": "9.1.5"}
            )
            self._json({"version": version})
        elif path == "/_cat/plugins":
            self._json([{"component": "opensearch-neural-search"}])
        elif path == "/_license":
            self._json({"license": {"type": "basic"}})
        elif path == "/docs":  # the index exists
            self._json({"docs": {}})
        elif path == "/docs/_mapping":
            self._json({"docs": {"mappings": {"_meta": {"hybrid_search": IndexMeta(engine=self.engine).to_dict()}}}})
        else:
            self.send_error(404)

    do_HEAD = do_GET

    def do_POST(self) -> None:
        self.release.wait(30)  # a search that never comes back (until the test is over)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_search_port(request) -> Iterator[int]:
    _SlowSearch.engine = request.param
    _SlowSearch.release.clear()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowSearch)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    _SlowSearch.release.set()
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("slow_search_port", ["opensearch", "elasticsearch"], indirect=True)
def test_a_search_that_times_out_is_one_line(slow_search_port):
    """A read timeout in the middle of work (issue 17: "an Elasticsearch read timeout"), not only when connecting."""
    engine = _SlowSearch.engine
    index = open_index(
        f"{engine}+http://127.0.0.1:{slow_search_port}/docs",
        credentials=Credentials.resolve(engine, timeout=0.5, environ={}),
    )
    with pytest.raises(EngineUnavailableError) as caught:
        index.search_bm25("capital of france", 3)
    assert str(caught.value).startswith(
        f"{NAMES[engine]} at {engine}+http://127.0.0.1:{slow_search_port}/docs did not answer within 0.5 s"
    )


def _cli_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_a_hanging_server_fails_within_the_timeout(engine, hanging_port, capsys):
    """The read timeout is the configured one and is not retried, so a silent server fails after one timeout
    (before: 4 tries of 60 s). The bound is loose on purpose: it tells 1 s from 10 s, it is not a speed."""
    url = f"{engine}+http://127.0.0.1:{hanging_port}/docs"
    credentials = Credentials.resolve(engine, timeout=1, environ={})
    import elasticsearch  # noqa: F401 - the client library is imported before the clock starts
    import opensearchpy  # noqa: F401

    started = time.monotonic()
    with pytest.raises(EngineUnavailableError, match="did not answer within 1 s"):
        open_index(url, credentials=credentials)
    elapsed = time.monotonic() - started
    assert elapsed < DEFAULT_TIMEOUT - 2, f"took {elapsed:.1f}s with a 1 s timeout"
    # the same from the command line: one line, naming the engine and the URL without the credentials
    err = _cli_error(
        capsys,
        [
            "search",
            "paris",
            "--index",
            f"{engine}+http://admin:{SECRET}@127.0.0.1:{hanging_port}/docs",
            "--timeout",
            "1",
        ],
    )
    assert f"{NAMES[engine]} at {url} did not answer within 1 s" in err
    assert SECRET not in err and "admin" not in err


def test_the_timeout_comes_from_the_environment(hanging_port, monkeypatch):
    """An Elasticsearch read timeout (issue 17) is a one-line error naming the engine and the URL."""
    monkeypatch.setenv("HYBRID_SEARCH_ELASTICSEARCH_TIMEOUT", "0.5")
    with pytest.raises(EngineUnavailableError, match=r"Elasticsearch at .*127\.0\.0\.1.* did not answer within 0\.5 s"):
        open_index(f"elasticsearch+http://127.0.0.1:{hanging_port}/docs")


def test_opensearch_answering_with_html(html_port, capsys):
    err = _cli_error(capsys, ["search", "paris", "--index", f"opensearch+http://127.0.0.1:{html_port}/docs"])
    assert f"OpenSearch at opensearch+http://127.0.0.1:{html_port}/docs answered with something that is not JSON" in err


@pytest.mark.parametrize("engine", ["opensearch", "elasticsearch"])
def test_an_html_error_page_is_one_line(engine, html_port, monkeypatch):
    """A gateway's 502 page: the status and that it was HTML, not the page."""
    monkeypatch.setattr(_HtmlPage, "status", 502)
    with pytest.raises(IndexStateError) as caught:
        open_index(f"{engine}+http://127.0.0.1:{html_port}/docs")
    message = str(caught.value)
    assert f"{NAMES[engine]} at {engine}+http://127.0.0.1:{html_port}/docs answered 502: an HTML page" == message


def test_elasticsearch_answering_with_html(html_port):
    with pytest.raises(EngineUnavailableError, match="not Elasticsearch"):
        open_index(f"elasticsearch+http://127.0.0.1:{html_port}/docs")


def test_a_refused_connection_names_the_url(capsys):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    err = _cli_error(capsys, ["search", "paris", "--index", f"opensearch+http://127.0.0.1:{port}/docs"])
    assert f"cannot reach OpenSearch at opensearch+http://127.0.0.1:{port}/docs" in err


# --- the setting ---------------------------------------------------------------------------------------
def test_timeout_defaults_and_client_options():
    creds = Credentials.resolve("opensearch", url="http://h:9200", environ={})
    assert creds.timeout == DEFAULT_TIMEOUT == 10
    os_kwargs, es_kwargs = creds.opensearch_kwargs(), creds.elasticsearch_kwargs()
    assert os_kwargs["timeout"] == es_kwargs["request_timeout"] == 10
    # bounded retries, and none after a timeout: a hanging server costs one timeout
    assert os_kwargs["max_retries"] == es_kwargs["max_retries"] == 2 and not os_kwargs["retry_on_timeout"]
    assert Credentials.resolve("qdrant", url="http://h:6333", timeout="2.5", environ={}).qdrant_kwargs()["timeout"] == 3


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "inf", "soon"])
def test_a_bad_timeout_is_refused(bad):
    with pytest.raises(ValueError, match="HYBRID_SEARCH_OPENSEARCH_TIMEOUT"):
        Credentials.resolve("opensearch", environ={"HYBRID_SEARCH_OPENSEARCH_TIMEOUT": bad})


def test_a_bad_timeout_flag_is_an_error(capsys):
    err = _cli_error(capsys, ["search", "paris", "--index", "opensearch+http://127.0.0.1:9/docs", "--timeout", "0"])
    assert "--timeout must be a number of seconds above 0" in err


def test_the_flag_has_two_spellings_and_yields_to_a_commands_own_timeout():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert from_arguments("opensearch", parser.parse_args(["--timeout", "3"])).timeout == 3
    assert from_arguments("opensearch", parser.parse_args(["--server-timeout", "4"])).timeout == 4
    own = argparse.ArgumentParser()
    own.add_argument("--timeout", type=float, default=120.0)
    add_arguments(own)
    args = own.parse_args(["--timeout", "5", "--server-timeout", "6"])
    assert args.timeout == 5 and from_arguments("elasticsearch", args).timeout == 6
