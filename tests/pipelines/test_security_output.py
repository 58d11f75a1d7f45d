"""What a hostile corpus or a careless operator can make the output do: nothing.

- CLI text output shows control characters (ESC, OSC, bidi overrides) as visible escapes: a document cannot clear,
  recolour or retitle the terminal it is printed on (``--json`` is JSON's own escaping, unchanged).
- Markdown on the UI's page: an id or a field cannot close its code span or make a link, an image or a heading,
  and ``ui --check`` reads such ids back whole.
- The UI warns when served beyond this machine, offers only the operator's rerankers, and names a locked index.
"""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest

from hybrid_search.retrieval import SearchResult
from hybrid_search.types import Document, Hit, TokenContribution
from pipelines import serve
from pipelines.cli import build_parser, format_hit, main, print_result
from pipelines.markdown import code_span, md_escape, parse_hit_line
from pipelines.output import terminal_safe
from ui import render

ESC = "\x1b"
HOSTILE = [
    f"{ESC}[2J{ESC}[H",  # clear the screen, cursor home
    f"{ESC}[31mred{ESC}[0m",  # colour
    f"{ESC}]0;owned\x07",  # OSC: set the window title
    f"{ESC}]52;c;cm0gLXJmIH4=\x07",  # OSC 52: write the clipboard
    f"{ESC}]8;;https://evil.example\x07link{ESC}]8;;\x07",  # OSC 8 hyperlink
    "\x9b31m",  # C1 CSI
    "abc\u202edcba",  # right-to-left override
    "line\rover",  # carriage return: overwrite what was printed
]
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _hostile_hit(rank: int = 1) -> Hit:
    bad = "".join(HOSTILE)
    doc = Document(f"id-{bad}", f"text {bad}", f"title {bad}", {"k": bad})
    rows = [TokenContribution(f"tok{ESC}[5m", 1, 1.0, 2.0, 2.0, False)]
    return Hit(doc.id, doc, 0.5, rank, channel_ranks={"sparse": 1}, explanation=rows)


# --- the terminal ---------------------------------------------------------------------------------
@pytest.mark.parametrize("text", HOSTILE)
def test_terminal_safe_leaves_no_control_character(text):
    shown = terminal_safe(text)
    assert not CONTROL.search(shown) and "\n" not in shown
    assert shown.replace("\\x1b", "").replace("\\x07", "") != text  # visible, not dropped silently
    assert terminal_safe("plain text: ünïcödé, tabs kept?\t", keep_newlines=True) == "plain text: ünïcödé, tabs kept?\t"


def test_cli_text_output_neutralises_ids_titles_texts_and_tokens(capsys):
    hit = _hostile_hit()
    out = format_hit(hit)
    assert not CONTROL.search(out) and "\\x1b[2J" in out and "\\u202e" in out
    assert out.count("\n") == 2  # head, snippet, overlap: no forged lines

    result = SearchResult(
        query=f"q{ESC}[2J",
        mode="hybrid",
        query_tokens=[(f"t{ESC}]0;x\x07", 1.0)],
        hits=[hit],
        timings_ms={"encode": 1.0},
    )
    print_result(result)
    printed = capsys.readouterr().out
    assert ESC not in printed and "\x07" not in printed and "\x9b" not in printed and "\u202e" not in printed


def test_error_lines_are_neutralised(capsys):
    # The location is echoed back in the error message; it must not reach the terminal raw.
    assert main(["search", "x", "--index", f"/nonexistent/index{ESC}[2J"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and ESC not in err and "\\x1b[2J" in err


# --- Markdown on the page -------------------------------------------------------------------------
INJECTIONS = [
    "d` ![pixel](http://127.0.0.1:9/p.png) `",  # closes the code span, then an image every viewer fetches
    "d`[click](https://evil.example)`",  # a clickable link
    "``` ![p](http://127.0.0.1:9/p.png)",  # a longer fence
    "`",
    "a\n\n# heading",  # a new block
]


@pytest.mark.parametrize("doc_id", INJECTIONS)
def test_an_id_stays_inside_its_code_span_and_reads_back(doc_id):
    hit = Hit(doc_id, Document(doc_id, "t", metadata={"x": "![i](http://127.0.0.1:9/q.png)"}), 0.5, 3, fused_score=0.5)
    line = render.hit_line(hit)
    assert "\n" not in line
    span = code_span(doc_id)
    fence = re.match(r"`+", span).group()
    # The span's fence is longer than any backtick run inside: nothing in the id can close it.
    assert max((len(r) for r in re.findall(r"`+", doc_id)), default=0) < len(fence)
    assert span.endswith(fence) and span[len(fence) : -len(fence)].count(fence) == 0
    assert parse_hit_line(line) == (3, terminal_safe(doc_id))
    snapshot = {"tree": {"children": [{"type": "markdown", "props": {"body": line}}]}}
    assert serve.snapshot_hits(snapshot) == [terminal_safe(doc_id)]  # `ui --check` no longer cuts at a backtick
    assert "!\\[i\\]" in line  # the metadata badge: no image either


def test_md_escape_leaves_no_markup():
    text = "a_b *c* $x$ ![img](http://e.org/p.png) [l](u) <b> `c` www.e.org https://e.org bob@e.org\n# h"
    escaped = md_escape(text)
    assert "\n" not in escaped
    # Every Markdown-active character is escaped, and bare URLs / e-mails are broken for the autolinker.
    for active in (r"!\[", r"\]\(", "<", "`", r"www\.", "://", "@", r"\*", "_", r"\$"):
        assert not re.search(r"(?<!\\)" + active, escaped), active
    assert re.sub(r"\\(.)", r"\1", escaped) == text.replace("\n", " ")  # shown as typed


# --- serving -----------------------------------------------------------------------------------------
def test_non_loopback_hosts_warn(capsys):
    assert serve.exposure_warning("127.0.0.1") is None and serve.exposure_warning("::1") is None
    assert serve.exposure_warning("localhost") is None
    for host in ("0.0.0.0", "::", "192.168.1.5", "myhost.example"):
        warning = serve.exposure_warning(host)
        assert warning and host in warning and "no login" in warning


def test_the_operator_names_the_rerankers(monkeypatch):
    from hybrid_search.rerank import DEFAULT_RERANKER

    monkeypatch.delenv(serve.RERANKERS_ENV, raising=False)
    args = build_parser().parse_args(["ui", "--allow-reranker", "./ce-a", "--allow-reranker", "org/ce-b"])
    command = serve.streamlit_command("idx", rerankers=args.allow_reranker)
    assert command[command.index("--") :] == [
        "--",
        "--allow-reranker",
        "./ce-a",
        "--allow-reranker",
        "org/ce-b",
        "--index",
        "idx",
    ]
    assert serve.app_arguments(command[command.index("--") + 1 :]).allow_reranker == ["./ce-a", "org/ce-b"]
    assert serve.app_arguments([]).allow_reranker == [DEFAULT_RERANKER]
    monkeypatch.setenv(serve.RERANKERS_ENV, "/srv/ce")
    assert serve.app_arguments([]).allow_reranker == ["/srv/ce"]


def test_streamlit_never_prompts_and_a_password_stays_off_the_command_line():
    command = serve.streamlit_command("qdrant+http://bob:pw@db:6333")
    assert command[command.index("--server.headless") + 1] == "true"
    assert command[command.index("--server.showEmailPrompt") + 1] == "false"
    assert not any("pw" in part for part in command)  # `ps` shows a command line to every local user
    assert serve.app_env("qdrant+http://bob:pw@db:6333")[serve.INDEX_ENV] == "qdrant+http://bob:pw@db:6333"


def test_a_locked_index_says_another_process_holds_it(tmp_path):
    """Two processes: Qdrant Edge's lock error is named, not "Something went wrong"."""
    import subprocess

    from hybrid_search.index import IndexMeta
    from indexers import create_index, open_index

    location = str(tmp_path / "idx")
    meta = IndexMeta(engine="", dense={"name": "toy", "dimension": 2, "similarity": "cosine"})
    index = create_index(location, meta)
    index.upsert([Document("a", "x")], None, np.ones((1, 2), dtype=np.float32))
    index.close()
    script = (
        f"import sys; from indexers import open_index; i = open_index({location!r}); "
        "print('held', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Exception) as caught:
            open_index(location)
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    from ui.problems import describe_error

    problem = describe_error(caught.value, location)
    assert problem.kind == "index_busy" and problem.title == "Another process holds the index"
    assert "another process" in problem.message


def test_json_output_is_unchanged(capsys):
    """``--json`` keeps the text as it is (JSON escapes control characters itself)."""
    hit = _hostile_hit()
    data = json.loads(json.dumps(hit.to_dict()))
    assert data["id"] == hit.id
