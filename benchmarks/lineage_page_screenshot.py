"""A screenshot of a run's lineage page (`optsearch show RUN --html`), for readers of the README.

    python benchmarks/lineage_page_screenshot.py runs/quickstart

writes benchmarks/results/lineage_page.html and lineage_page.png, with the best program's node
clicked (its program and its mutation's diff shown). Needs Debian's chromium and playwright
(the dev extra), as the page's browser test does.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from optsearch.api import open_run
from optsearch.lineage_page import write_page

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OUT = Path(__file__).parent / "results"


def main(run_dir: str) -> None:
    html, png = OUT / "lineage_page.html", OUT / "lineage_page.png"
    with open_run(run_dir) as run:
        write_page(run.store, Path(run_dir), html)
        best = run.best_id
    chromium = shutil.which("chromium") or sys.exit("needs chromium (Debian: apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(profile, executable_path=chromium, args=FLAGS, headless=True,
                                                        viewport={"width": 1200, "height": 900})
        page = browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(html.resolve().as_uri())
        page.click(f'#lineage-tree .node[data-node="{best}"]')
        page.screenshot(path=str(png), full_page=True)
        browser.close()
    if errors:
        sys.exit(f"the page raised: {errors}")
    print(f"wrote {html} and {png} (node #{best} clicked)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/quickstart")
