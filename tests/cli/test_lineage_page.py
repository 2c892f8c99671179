"""`optsearch show RUN --html FILE` and `--pareto`: the page opens in a real browser, offline."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

import optsearch
from optsearch.cli import main
from optsearch.search.store import RunStore

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Flags that let Debian's chromium run headless as root in a container, with nothing fetched.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("page") / "tiny"
    config = {"name": "tiny", "seed": 0, "warm_start": "adamw", "search": {"population": 4, "tournament": 2},
              "evaluation": {"tasks": ["quadratic/small"], "seeds": 1, "lr_multipliers": [1.0]},
              "budget": {"evaluations": 14}, "executor": {"kind": "inline"},
              "funnel": {"tasks": ["quadratic/small"], "seeds": 1, "top": 2, "threshold": -10.0}}
    optsearch.evolve(config, path, progress=False).close()
    return path


def test_the_page_is_one_file_that_fetches_nothing(run_dir, tmp_path, capsys):
    page = tmp_path / "run.html"
    assert main(["show", str(run_dir), "--html", str(page)]) == 0
    assert f"wrote {page}" in capsys.readouterr().out
    html = page.read_text()
    assert not re.search(r"<(link|img|iframe)\b|\b(src|href)\s*=", html)
    assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", html)     # the SVG namespace is a name, not a fetch
    with RunStore.open(run_dir, readonly=True) as store:
        n = store.count_programs()
    assert html.count('"text":') == n                                      # every program's text is on the page


def test_pareto_prints_the_hall_of_fame(run_dir, capsys):
    assert main(["show", str(run_dir), "--pareto"]) == 0
    out = capsys.readouterr().out
    with optsearch.open_run(run_dir) as run:
        front = run.hall_of_fame()
    assert "by length" in out and "by optimizer state per parameter" in out
    for e in front:
        assert re.search(rf"#{e.id}\*?\s+{e.length}\s", out)
    assert main(["show", str(run_dir), "--pareto", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)["hall_of_fame"]
    assert [e["id"] for e in data["length"]] == [e.id for e in front]
    assert all(e["state_per_param"] is not None for e in data["state"])


def test_the_page_renders_in_chromium_and_a_click_shows_the_program(run_dir, tmp_path):
    if CHROMIUM is None:
        pytest.skip("no chromium here (Debian: apt-get install chromium); the browser test needs one")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra: pip install -e .[dev]")
    page_file = tmp_path / "run.html"
    assert main(["show", str(run_dir), "--html", str(page_file)]) == 0
    with optsearch.open_run(run_dir) as run:
        best_id, winner_text = run.best_id, run.store.program(run.best_id).text
        other = run.store.programs("ranked", order="fitness")[1]     # on the tree: among the best programs
    errors: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                        args=FLAGS, headless=True)
        try:
            page = browser.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(page_file.as_uri())
            assert page.locator("#fitness-chart path").count() == 2          # best and median
            assert page.locator("#lineage-tree .node").count() >= 2
            assert page.locator("#all-programs tr").count() == 1 + len(run_dir_programs(run_dir))
            page.click(f'#lineage-tree .node[data-node="{best_id}"]')
            assert page.inner_text("#program-text").strip() == winner_text.strip()
            page.click(f'#lineage-tree .node[data-node="{other.id}"]')
            assert page.inner_text("#program-title") == f"#{other.id}"
            assert page.inner_text("#program-text").strip() == other.text.strip()
            if other.parent is not None:      # its mutation's diff, lines added or removed
                assert page.locator("#program-diff .add").count() + page.locator("#program-diff .del").count() > 0
        finally:
            browser.close()
    assert errors == []


def run_dir_programs(run_dir: Path) -> list:
    with RunStore.open(run_dir, readonly=True) as store:
        return store.programs("all")


@pytest.mark.parametrize("argv, message", [
    (["show", "{run}", "--html", "{tmp}"], "--html {tmp} is a directory; give the .html file to write"),
    (["show", "{tmp}/nope", "--pareto"], "no run store at {tmp}/nope"),
    (["show", "{tmp}/nope", "--html", "{tmp}/x.html"], "no run store at {tmp}/nope"),
])
def test_bad_show_arguments_are_one_line_errors(run_dir, tmp_path, capsys, argv, message):
    assert main([a.format(run=run_dir, tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and err.count("\n") == 1
    assert not (tmp_path / "x.html").exists()
