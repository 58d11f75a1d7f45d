"""A planted password never comes out: every output channel of failing and successful runs is grepped for it.

Failing runs: each server engine's location carries ``user:PASSWORD@`` and points at a closed port on
127.0.0.1 (nothing can run a server here), for ``index`` and ``search``, in text and ``--json``, with ``-v`` logs.
Successful runs: ``index`` and ``search`` on Qdrant Edge and qdrant-client local mode, with the password in every
``HYBRID_SEARCH_<ENGINE>_*`` variable and on the command line. The UI: its page (Streamlit's AppTest), its logs,
and ``ui --check --json``; and ``hybrid-search ui`` itself, whose command line (``/proc/PID/cmdline``, what
``ps`` shows) must not carry it either.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from indexers.credentials import redact
from pipelines.serve import free_port, wait_healthy
from tests.paths import DEMO_CORPUS as DEMO
from tests.paths import REPO as ROOT

PLANTED = "pl4nted-S3cret"
ENGINES = ("opensearch", "elasticsearch", "qdrant")

pytestmark = pytest.mark.filterwarnings("ignore:Failed to obtain server version:UserWarning")


def _server_locations(port: int) -> list[str]:
    userinfo = f"bob:{PLANTED}@127.0.0.1:{port}"
    return [
        f"qdrant+http://{userinfo}",
        f"http://{userinfo}",
        f"opensearch+http://{userinfo}/idx",
        f"elasticsearch+http://{userinfo}/idx",
    ]


def _planted_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRID_SEARCH_")}
    for engine in ENGINES:
        prefix = f"HYBRID_SEARCH_{engine.upper()}_"
        env.update({prefix + "USER": "bob", prefix + "PASSWORD": PLANTED, prefix + "API_KEY": PLANTED})
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


# One interpreter runs every CLI case through `main`, as a user's shell would one after another: the models
# load once, and stdout, stderr and the logging handlers are the real ones.
DRIVER = r"""
import json, sys
from pipelines.cli import main
for n, argv in enumerate(json.loads(sys.argv[1])):
    print(f"=== case {n}: {argv[1]}", flush=True)  # not the arguments: they hold the password
    print(f"=== case {n}: {argv[1]}", file=sys.stderr, flush=True)
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    print(f"=== exit {code}", flush=True)
"""


def _cli_cases(tmp_path: Path, port: int) -> list[list[str]]:
    corpus = tmp_path / "five.jsonl"
    corpus.write_text("".join(DEMO.read_text().splitlines(keepends=True)[:5]))
    cases = []
    for location in _server_locations(port):
        for flags in ([], ["--json"]):
            cases.append(["-v", "search", "kepler", "--index", location, *flags])
            cases.append(
                [
                    "-v",
                    "index",
                    str(corpus),
                    "--index",
                    location,
                    "--dense",
                    "none",
                    "--no-progress",
                    "--password",
                    PLANTED,
                    *flags,
                ]
            )
    for location in (str(tmp_path / "edge"), f"qdrant-local:{tmp_path / 'local'}"):
        for flags in ([], ["--json"]):
            cases.append(
                [
                    "-v",
                    "index",
                    str(corpus),
                    "--index",
                    location,
                    "--dense",
                    "none",
                    "--no-progress",
                    "--password",
                    PLANTED,
                    "--api-key",
                    PLANTED,
                    *flags,
                ]
            )
            cases.append(
                ["-v", "search", "kepler", "--index", location, "--mode", "sparse", "--password", PLANTED, *flags]
            )
    return cases


def test_no_cli_output_channel_carries_the_password(tmp_path):
    port = free_port()  # bound, then released: nothing listens there
    cases = _cli_cases(tmp_path, port)
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=tmp_path,
        env=_planted_env(tmp_path),
        stdin=subprocess.DEVNULL,
    )
    codes = [line.split()[-1] for line in proc.stdout.splitlines() if line.startswith("=== exit")]
    assert len(codes) == len(cases), proc.stderr[-3000:]
    servers = sum(1 for c in cases if "://" in c[c.index("--index") + 1])
    assert codes[:servers] == ["2"] * servers, proc.stderr[-3000:]  # each failing run says why, and fails
    assert codes[servers:] == ["0"] * (len(cases) - servers), proc.stderr[-3000:]  # the local ones work
    assert proc.stderr.count("error: cannot reach") == servers
    assert "indexed 5 documents" in proc.stdout and '"location": ' in proc.stdout  # the reports were printed
    assert "***@127.0.0.1" in proc.stderr  # the location is shown, redacted
    assert PLANTED not in proc.stdout and PLANTED not in proc.stderr


def test_a_report_location_and_an_index_location_are_redacted(tmp_path):
    from pipelines.indexing import IndexReport

    url = f"opensearch+https://admin:{PLANTED}@db:9200/idx"
    assert redact(url) == "opensearch+https://***@db:9200/idx"
    report = IndexReport(location=redact(url), indexed=1)
    assert PLANTED not in report.summary() and PLANTED not in json.dumps(report.to_dict())


# --- the UI --------------------------------------------------------------------------------------------
def test_the_ui_page_and_its_log_do_not_show_the_password(monkeypatch, caplog):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    caplog.set_level(logging.DEBUG)
    for location in _server_locations(free_port()):
        monkeypatch.setenv("HYBRID_SEARCH_INDEX", location)
        at = AppTest.from_file(str(ROOT / "ui" / "app.py"), default_timeout=180).run()
        shown = [
            str(e.value)
            for kind in ("markdown", "caption", "info", "warning", "error", "html", "title")
            for e in getattr(at, kind)
        ] + [str(e.value) for e in at.sidebar.markdown]
        assert any("unreachable" in text for text in shown), shown
        assert any("***@127.0.0.1" in text for text in shown), shown  # the location, redacted
        assert not any(PLANTED in text for text in shown), shown
    assert PLANTED not in caplog.text


def test_ui_check_json_does_not_show_the_password(tmp_path):
    pytest.importorskip("streamlit")
    location = _server_locations(free_port())[0]
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "-v",
            "ui",
            "--index",
            location,
            "--check",
            "--json",
            "--timeout",
            "240",
        ],
        capture_output=True,
        text=True,
        timeout=400,
        check=False,
        cwd=tmp_path,
        env=_planted_env(tmp_path),
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 1 and "/_stcore/health: ok" in proc.stdout, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert any("unreachable" in text for _, text in summary["messages"]), summary
    assert PLANTED not in proc.stdout and PLANTED not in proc.stderr


def test_ui_serves_with_an_empty_home_and_no_stdin_and_keeps_the_password_off_its_command_line(tmp_path):
    """`hybrid-search ui` as `make demo` runs it, on a first run: no ~/.streamlit, stdin closed. Streamlit's
    e-mail prompt would wait forever; the server must answer `ok` instead. The browser it opens is `true`."""
    pytest.importorskip("streamlit")
    home = tmp_path / "home"
    home.mkdir()
    port = free_port()
    location = _server_locations(free_port())[0]
    env = {**_planted_env(home), "BROWSER": "true"}
    log = (tmp_path / "ui.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "ui", "--index", location, "--port", str(port)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env=env,
    )
    try:
        healthy = wait_healthy(f"http://127.0.0.1:{port}", timeout=240, process=process)
        output = (tmp_path / "ui.log").read_text()
        assert healthy, output[-3000:]
        assert "Email" not in output and "***@127.0.0.1" in output
        cmdline = Path(f"/proc/{process.pid}/cmdline")
        if cmdline.exists():  # the server is this process (exec): what `ps` shows
            assert PLANTED not in cmdline.read_bytes().decode(errors="replace")
            assert "streamlit" in cmdline.read_bytes().decode(errors="replace")
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()
    assert PLANTED not in (tmp_path / "ui.log").read_text()
