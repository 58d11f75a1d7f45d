"""The UI in a real browser: `hybrid-search ui` on a free localhost port, driven by Debian's Chromium via Playwright.

Playwright drives the system Chromium (``/usr/bin/chromium``; ``make test`` installs it with apt-get), never a
browser of its own. The screenshot goes to pytest's temporary folder, and to ``docs/ui.png`` (the README's
picture) when ``UPDATE_UI_SCREENSHOT=1``.

The test finds the page's parts by their element keys, not by reading text: Streamlit gives an element made with
``key=K`` the CSS class ``st-key-K``, and the app keys each result card (:func:`ui.render.hit_key`) and its "why"
panel (:func:`ui.render.why_key`) by rank.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.paths import REPO

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="Debian's Chromium is not installed: apt-get install -y chromium chromium-driver (make test does this as root)",
)
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
QUERY = "what is the mercury planet made of"
README_SHOT = REPO / "docs" / "ui.png"


def keyed(page, key: str):
    """The element the app made with ``key=key``."""
    return page.locator(f".st-key-{key}")


@pytest.fixture(scope="module")
def server(tmp_path_factory, demo_vectors, splade, minilm):
    """`hybrid-search ui` on the demo corpus; yields (url, the CLI's hits for QUERY)."""
    from hybrid_search.index import IndexMeta
    from hybrid_search.types import Document
    from indexers import create_index
    from pipelines.serve import free_port, wait_healthy

    docs, svecs, dvecs = demo_vectors
    docs = [Document(d.id, d.text, d.title, {"kind": "ab"[i % 2]}) for i, d in enumerate(docs)]
    folder = tmp_path_factory.mktemp("browser")
    location = "demo-index"  # relative to the server's folder: the sidebar (and the screenshot) shows this
    index = create_index(
        str(folder / location), IndexMeta(engine="", sparse=splade.settings(), dense=minilm.settings())
    )
    index.upsert(docs, svecs, dvecs)
    index.close()

    # The CLI's answer first: Qdrant Edge lets one process hold the index, and the server will.
    out = folder / "cli.json"
    with out.open("w") as f:
        proc = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "search", QUERY, "--index", location, "--json"],
            stdout=f,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
            cwd=folder,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr
    cli_hits = json.loads(out.read_text())["hits"]

    port = free_port()
    log = (folder / "server.log").open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "ui", "--index", location, "--port", str(port), "--no-browser"],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=folder,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_healthy(url, timeout=120, process=process):
            pytest.fail(f"the UI did not start:\n{(folder / 'server.log').read_text()[-3000:]}")
        yield url, cli_hits
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_health_answers_ok_and_the_app_page_is_served(server):
    url, _ = server
    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=10) as response:
        assert response.status == 200 and response.read().decode() == "ok"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200 and "<title>" in response.read().decode().lower()


def test_search_in_the_browser_highlights_overlaps_and_matches_the_cli(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from hybrid_search.fusion import same_order
    from hybrid_search.types import ScoredId
    from ui.render import hit_key, why_key

    url, cli_hits = server
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh profile each run
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1440, "height": 1100},
        )
        try:
            page = browser.new_page()
            page.goto(url)
            box = page.get_by_placeholder("Ask something")
            box.wait_for(state="visible", timeout=120_000)
            box.fill(QUERY)
            box.press("Enter")

            # A highlighted overlap token: a <mark> on a piece of the text that is one of the query's tokens.
            mark = page.locator("mark.hs-match").first
            expect(mark).to_be_visible(timeout=120_000)
            assert mark.inner_text().strip().lower() in QUERY
            expect(page.locator(".hs-chip.hs-exp").first).to_be_visible()  # expansion tokens, shown apart
            expect(page.get_by_text("Query vector:")).to_be_visible()

            # The ten result cards (the page streams in: wait for the last), in the CLI's order; engine ties
            # compare as sets. A card's id is its header's code span, its fused score the first badge.
            expect(keyed(page, hit_key(10))).to_be_attached(timeout=120_000)
            expect(keyed(page, hit_key(11))).to_have_count(0)
            cards = [keyed(page, hit_key(rank)) for rank in range(1, 11)]
            ids = [card.locator("[data-testid='stMarkdownContainer'] code").first.inner_text() for card in cards]
            badges = [card.locator(".stMarkdownBadge").first.inner_text() for card in cards]
            score = {h["id"]: h["score"] for h in cli_hits}
            assert len(ids) == 10 and set(ids) <= set(score), (ids, list(score))
            assert same_order([ScoredId(h["id"], h["score"]) for h in cli_hits], [ScoredId(i, score[i]) for i in ids])
            assert badges == [f"fused {score[i]:.4f}" for i in ids]

            # Open the first "why" panel: its bar chart of token contributions.
            why = keyed(page, why_key(1))
            why.locator("summary").click()
            expect(why.locator("[data-testid='stVegaLiteChart']")).to_be_visible(timeout=30_000)
            expect(why.get_by_text("contributions = ").first).to_be_visible()
            page.wait_for_timeout(1000)  # let the chart finish drawing

            shot = tmp_path / "ui.png"
            page.screenshot(path=str(shot))
            assert shot.stat().st_size > 50_000
            print(f"screenshot: {shot}")
            if os.environ.get("UPDATE_UI_SCREENSHOT") == "1":
                README_SHOT.parent.mkdir(exist_ok=True)
                README_SHOT.write_bytes(shot.read_bytes())

            # The compare view is one click away and lists the three rankings side by side.
            page.get_by_role("tab", name="Compare rankings").click()
            for column in ("Sparse", "Dense", "Hybrid (fused)"):
                expect(page.locator(".hs-col h4", has_text=column).first).to_be_visible()
        finally:
            browser.close()
