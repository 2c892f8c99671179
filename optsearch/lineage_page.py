"""`optsearch show RUN --html FILE`: one self-contained HTML page about a run.

The page needs no server and no network: the run's data is embedded as JSON, and the script and
style beside this module (`page/lineage.js`, `page/lineage.css`) are inlined. It shows fitness
over evaluations, the hall of fame, the lineage tree of the best programs (click a node for its
program and the diff its mutation made), every program's text, and the funnel table.
"""
from __future__ import annotations

import difflib
import html
import json
import math
from dataclasses import replace
from importlib import resources
from pathlib import Path

from optsearch.dsl import canonicalize, parse_program, print_program
from optsearch.files import write_atomically
from optsearch.records import hall_of_fame, length
from optsearch.run import rechecked
from optsearch.search.store import RunStore

TREE_BEST = 8          # the lineage tree joins the lineages of this many best programs (and the winner's)


def page_data(store: RunStore, run_dir: Path, tree_best: int = TREE_BEST) -> dict:
    """Everything the page shows, as JSON-ready data."""
    rows = {row.id: row for row in store.programs("all")}
    winner = store.get("winner")
    shown = [row.id for row in store.programs("ranked", order="fitness")[:tree_best]]
    if winner and winner["id"] not in shown:      # chosen by the funnel: on the tree whatever its search fitness
        shown.append(winner["id"])
    tree: set[int] = set()
    for pid in shown:
        tree.update(r.id for r in store.lineage(pid))
    programs = []
    for pid, row in rows.items():
        parent = rows.get(row.parent) if row.parent is not None else None
        programs.append({
            "id": pid, "parent": row.parent, "mutation": row.mutation, "status": row.status,
            "fitness": _num(row.fitness), "eval_index": row.eval_index, "text": row.text,
            "funnel_fitness": _num(row.funnel_fitness), "reuses": row.reuses,
            "diff": _diff(parent.text, row.text, row.parent, pid) if parent is not None else "",
        })
    c = store.counters()
    return {
        "run": str(run_dir),
        "counts": {"programs": len(rows), "evaluations": c.evaluations, "children": c.children,
                   "rejected": c.rejected, "cache_hits": c.cache_hits, "restarts": c.restarts,
                   "seconds": c.elapsed},
        "finished": store.get("finished"),
        "winner": None if not winner else winner["id"],
        "best": shown,
        "history": [[i, _num(best), _num(median)] for i, best, median in store.history()],
        "hall_of_fame": [{"id": e.id, "length": e.length, "state_per_param": e.state_per_param,
                          "fitness": _num(e.fitness), "funnel_fitness": _num(e.funnel_fitness),
                          "mutation": e.mutation, "winner": e.winner} for e in hall_of_fame(store, "length")],
        "tree": sorted(tree),
        "programs": programs,
        "funnel": [{"id": row.id, "status": row.funnel_status, "funnel_fitness": _num(row.funnel_fitness),
                    "fitness": _num(row.fitness), "state_per_param": state, "ranked": _num(score),
                    "length": length(row.text)} for row, state, score in rechecked(store)],
    }


def render(data: dict) -> str:
    """The page: HTML with the data, script and style inlined."""
    page = resources.files(__package__) / "page"
    # `<` escaped so that no program text can close the script element
    blob = json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")
    title = html.escape(f"optsearch: {data['run']}")
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{title}</title>\n'
            f'<style>\n{(page / "lineage.css").read_text()}</style>\n</head>\n<body>\n'
            f'<script id="run-data" type="application/json">{blob}</script>\n'
            f'<script>\n{(page / "lineage.js").read_text()}</script>\n</body>\n</html>\n')


def write_page(store: RunStore, run_dir: Path, path: Path) -> None:
    write_atomically(path, render(page_data(store, run_dir)))


def _diff(before: str, after: str, parent: int, child: int) -> str:
    """What the mutation changed, between canonical forms: the warm start keeps its own names and a
    child is stored renamed, so the raw texts would differ everywhere."""
    a, b = _canonical(before), _canonical(after)
    lines = difflib.unified_diff(a.splitlines(), b.splitlines(), f"#{parent}", f"#{child}", lineterm="", n=1)
    return "\n".join(lines)


def _canonical(text: str) -> str:
    program = canonicalize(parse_program(text))
    return print_program(replace(program, name="program"))


def _num(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


__all__ = ["TREE_BEST", "page_data", "render", "write_page"]
