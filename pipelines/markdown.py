"""Corpus text inside Streamlit Markdown, shown as text: never a link, an image, a heading or a colour.

Streamlit renders Markdown (CommonMark with GitHub's extensions, LaTeX, ``:color[...]`` directives), and the UI
puts document ids, metadata, locations and error messages into it. Any of those can come from a hostile corpus:
an id that closes its code span and carries ``![x](https://elsewhere/p.png)`` makes every viewer's browser
fetch that URL. Everything Markdown-rendered goes through :func:`md_escape` (prose) or :func:`code_span`
(ids, field names, locations). HTML is another path: ``ui/render.py`` escapes it with :func:`html.escape`.

The result card's first line is also what ``hybrid-search ui --check`` reads back, so its format is written by
:func:`hit_line_head` and read by :func:`parse_hit_line`, here, side by side.
"""

from __future__ import annotations

import re

from pipelines.output import terminal_safe

# Backslash-escaped (CommonMark escapes any ASCII punctuation): emphasis, code, links and images, HTML and
# autolinks, tables, strikethrough, LaTeX, and GitHub's e-mail autolinks.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~$!@])")
# GitHub's bare-URL autolinks ("https://…", "www.…"): broken by an escaped ":" or ".".
_BARE_URL = re.compile(r"(?i)(?<=[a-z])(:)(?=//)|(?<=\bwww)(\.)")
_LINE_BREAKS = re.compile(r"\r\n|[\r\n]")


def md_escape(text: object) -> str:
    r"""Text for Streamlit Markdown, shown as is, on one line: no emphasis from ``_``, no LaTeX from ``$``, no
    link, image or autolink, and no line break that could start a heading or a list.

    Example:
        >>> print(md_escape("/tmp/a_b_c $5"))
        /tmp/a\_b\_c \$5
        >>> print(md_escape("![x](https://e.org/p.png)\n# big"))
        \!\[x\](https\://e.org/p.png) # big
    """
    one_line = _LINE_BREAKS.sub(" ", str(text))
    escaped = _MD_SPECIAL.sub(r"\\\1", terminal_safe(one_line))
    return _BARE_URL.sub(lambda m: "\\" + (m.group(1) or m.group(2)), escaped)


def md_plain(text: str) -> str:
    r"""Markdown source back to its text, for a terminal: the backslash escapes of :func:`md_escape` removed.

    Example:
        >>> md_plain(md_escape("a_b ![x](https://e.org) bob@e.org"))
        'a_b ![x](https://e.org) bob@e.org'
    """
    return re.sub(r"\\([!-/:-@\[-`{-~])", r"\1", text)


def code_span(text: object) -> str:
    """``text`` as one Markdown code span, whatever backticks it holds: a fence longer than any run inside.

    Control characters (line breaks included) are shown as visible escapes, so the span stays on its line.

    Example:
        >>> code_span("d1"), code_span("a`b")
        ('`d1`', '`` a`b ``')
    """
    body = terminal_safe(text)
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    # CommonMark strips one space on each side when both are there: pad whenever a backtick or such a
    # space sits at an edge, so the content reads back exactly.
    pad = body.startswith("`") or body.endswith("`") or (body.startswith(" ") and body.endswith(" ") and body.strip())
    return f"{fence} {body} {fence}" if pad or longest else f"{fence}{body}{fence}"


def hit_line_head(rank: int, doc_id: object) -> str:
    """The fixed start of a result card's first line: ``**#rank** · `id` ·``."""
    return f"**#{rank}** · {code_span(doc_id)} ·"


_HIT_LINE = re.compile(r"^\*\*#(?P<rank>\d+)\*\* · (?P<fence>`+)(?P<body>.*?)(?<!`)(?P=fence)(?!`) ·")


def parse_hit_line(body: str) -> tuple[int, str] | None:
    """``(rank, id)`` from a line :func:`hit_line_head` began, else ``None`` (ids as :func:`code_span` shows them).

    Example:
        >>> parse_hit_line(hit_line_head(2, "x``y") + " :violet-badge[fused 0.03]")
        (2, 'x``y')
    """
    match = _HIT_LINE.match(body)
    if match is None:
        return None
    text = match.group("body")
    if len(text) >= 2 and text.startswith(" ") and text.endswith(" ") and text.strip():
        text = text[1:-1]
    return int(match.group("rank")), text
