"""The run commands of the CLI: `evolve`, `resume` and `show` (registered by `optsearch.cli`)."""
from __future__ import annotations

import argparse
import json
import math
import signal
import sys
import time
from pathlib import Path
from typing import Callable

from optsearch.config import load_config
from optsearch.display import finite, fmt_fitness, indent, table
from optsearch.dsl import OptsearchError, parse_program
from optsearch.evaluators import ExecutorLost
from optsearch.lineage_page import write_page
from optsearch.records import hall_of_fame
from optsearch.report import BASELINES, MEAN, verdict_line, write_report
from optsearch.run import chosen_by, evolve, memory_penalty, rechecked, run_dir_for, stored_config, with_overrides
from optsearch.search.evolution import Evolution, Outcome
from optsearch.search.store import RunStore

AddCommand = Callable[[str, Callable, str], argparse.ArgumentParser]


def add_run_commands(command: AddCommand) -> None:
    evo = command("evolve", cmd_evolve, "run (or with --resume, continue) an evolutionary search from a YAML config")
    evo.add_argument("config", metavar="CONFIG", help="a run config (YAML), e.g. configs/quickstart.yaml")
    evo.add_argument("--run-dir", metavar="DIR", help="where the run lives (default: runs/NAME, NAME from the config)")
    evo.add_argument("--resume", action="store_true", help="continue the run stored in the run directory")
    _add_budget_options(evo)

    res = command("resume", cmd_resume, "continue a stopped or killed run with its stored config")
    res.add_argument("run_dir", metavar="RUN", help="a run directory, e.g. runs/quickstart")
    _add_budget_options(res)

    show = command("show", cmd_show, "a run's leaderboard, best program, its lineage and counts")
    show.add_argument("run_dir", metavar="RUN", help="a run directory, e.g. runs/quickstart")
    show.add_argument("--top", type=int, default=10, metavar="K", help="leaderboard length (default: %(default)s)")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    show.add_argument("--plot", metavar="FILE.png", help="also plot best and median fitness over evaluations")
    show.add_argument("--pareto", action="store_true",
                      help="the hall of fame: the best program at each length (and at each optimizer-state size) "
                           "that beats every smaller one")
    show.add_argument("--html", metavar="FILE.html",
                      help="also write one self-contained page: fitness, hall of fame, lineage tree with each "
                           "mutation's diff, every program, the funnel")

    rep = command("report", cmd_report, "ship a run's winner (or --id N): program, export and a report "
                                        "comparing it, seed by seed, with AdamW, Lion and Muon on held-out tasks")
    rep.add_argument("run_dir", metavar="RUN", help="a run directory, e.g. runs/rediscover_lion")
    rep.add_argument("-o", "--out", metavar="DIR", required=True,
                     help="the folder to write program.py, optimizer.py, REPORT.md and report.json into")
    rep.add_argument("--id", type=int, metavar="N", help="the program to report on (default: the run's winner)")
    rep.add_argument("--task", action="append", metavar="T",
                     help="a held-out task as name/size (repeatable; default: the run's funnel tasks)")
    rep.add_argument("--seeds", type=int, default=3, metavar="K",
                     help="seeds per task, 2 at least for standard errors (default: %(default)s)")
    rep.add_argument("--baseline", action="append", metavar="ZOO",
                     help=f"a zoo program or role candidate to compare with (repeatable; default: "
                          f"{', '.join(BASELINES)})")
    rep.add_argument("--lr-multipliers", type=float, nargs="+", metavar="X",
                     help="the learning-rate grid every contender is tuned on, per seed (default: the run's)")
    rep.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="evaluate contenders x tasks in N processes of one torch thread each; the figures "
                          "are the same for every N (default: %(default)s)")
    rep.add_argument("--time-limit", type=float, metavar="S",
                     help="seconds per program and task (default: none)")
    rep.add_argument("--cache", type=Path, metavar="DIR",
                     help="keep each contender's evaluation on each task in DIR and reuse it when the same "
                          "evaluation is asked for again (the baselines, on a later report)")


def _add_budget_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-evals", type=int, metavar="N", help="evaluation budget (overrides the config's)")
    p.add_argument("--seconds", type=float, metavar="S",
                   help="time budget: seconds of searching over every session of the run (overrides the config's)")
    p.add_argument("--executor", choices=["inline", "ray"], help="where evaluations run (overrides the config's)")
    p.add_argument("--workers", type=int, metavar="N", help="Ray workers (default: the machine's cores)")
    p.add_argument("--address", metavar="ADDR", help="join a Ray cluster: auto or HOST:PORT (implies --executor ray)")
    p.add_argument("--quiet", action="store_true", help="no progress line")


def cmd_evolve(args: argparse.Namespace) -> int:
    config = with_overrides(load_config(args.config), args.max_evals, args.executor, args.workers, args.address,
                            args.seconds)
    run_dir = run_dir_for(config, args.run_dir)
    return _run(config, run_dir, args.resume, args.quiet)


def cmd_resume(args: argparse.Namespace) -> int:
    run_dir = Path(args.run_dir)
    config = with_overrides(stored_config(run_dir), args.max_evals, args.executor, args.workers, args.address,
                            args.seconds)
    return _run(config, run_dir, True, args.quiet)


def _run(config, run_dir: Path, resume: bool, quiet: bool) -> int:
    progress = None if quiet else _ProgressLine()
    signal.signal(signal.SIGTERM, _interrupt)  # `kill`, a scheduler's stop: shut down as on Ctrl-C
    verb = "resuming" if resume else "starting"
    print(f"{verb} run {run_dir} ({config.executor.kind} executor): tasks {', '.join(config.search.evaluation.tasks)}, "
          f"population {_population(config.search)}, budget {_budget(config)}", flush=True)
    try:
        outcome, store = evolve(config, run_dir, resume, progress)
    except KeyboardInterrupt:
        if progress:
            progress.end()
        print(f"optsearch: interrupted; every finished evaluation is stored. Continue with "
              f"`optsearch resume {run_dir}`", file=sys.stderr)
        return 130
    except ExecutorLost as e:  # one line and exit 2, as for any user-facing error, with the way back
        if progress:
            progress.end()
        raise OptsearchError(f"{e}; every finished evaluation is stored. Continue with "
                             f"`optsearch resume {run_dir}` once Ray runs again") from None
    if progress:
        progress.end()
    with store:
        print(_summary(outcome, store, run_dir))
    return 0


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _population(s) -> str:
    i = s.islands
    return str(s.population) if i is None or i.count == 1 else f"{s.population} ({i.count} islands of {s.population // i.count})"


def _budget(config) -> str:
    s = config.search
    parts = [f"{s.evaluations} evaluations" if s.evaluations else "",
             f"{s.seconds:g} s" if s.seconds else "",
             f"until fitness >= {s.stop_fitness:g}" if s.stop_fitness is not None else "",
             f"until {s.target.program} is found" if s.target else ""]
    return ", ".join(p for p in parts if p)


class _ProgressLine:
    """One line, rewritten in place on a terminal; a line every 10 s when piped."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.start, self.last, self.start_evals = time.monotonic(), 0.0, None
        self.width = 0

    def __call__(self, evo: Evolution) -> None:
        c, now = evo.counters, time.monotonic()
        if self.start_evals is None:
            self.start_evals = c.evaluations
        if not self.tty and now - self.last < 10:
            return
        self.last = now
        rate = (c.evaluations - self.start_evals) / max(now - self.start, 1e-9)
        line = (f"evals {c.evaluations} ({rate:.2f}/s) | best {fmt_fitness(c.best_fitness)} (#{c.best_id}) | "
                f"cache hits {c.cache_hits} ({_pct(c.cache_hits, c.children)}) | "
                f"rejected {c.rejected} ({_pct(c.rejected, c.children)}) | in flight {len(evo.inflight)}")
        if self.tty:
            sys.stderr.write("\r" + line.ljust(self.width))
            self.width = len(line)
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()

    def end(self) -> None:
        if self.tty and self.width:
            sys.stderr.write("\n")


def _summary(outcome: Outcome, store: RunStore, run_dir: Path) -> str:
    c = outcome.counters
    why = {"budget": "evaluation budget reached", "seconds": "time budget reached",
           "stop_fitness": "fitness target reached", "target": f"target found (#{c.found_target})",
           "exhausted": "no new children in a long while (neighbourhood exhausted)"}[outcome.reason]
    lines = [f"stopped: {why}; {c.evaluations} evaluations, {c.children} children "
             f"({_pct(c.rejected, c.children)} rejected, {_pct(c.cache_hits, c.children)} cache hits), "
             f"{c.elapsed:.0f} s"]
    if outcome.best_id is not None:
        lines.append(f"best on the search tasks: {run_dir}#{outcome.best_id}, fitness {fmt_fitness(outcome.best_fitness)} "
                     f"(0 = tuned AdamW)")
    w = store.get("winner")
    if w:
        basis = (f"fitness {fmt_fitness(w['funnel_fitness'])} on the funnel's held-out tasks, {fmt_fitness(w['fitness'])} on the "
                 f"search tasks" if w["basis"] == "funnel" else f"fitness {fmt_fitness(w['fitness'])}")
        basis += ", the match of the target" if w["basis"] == "target" else ""
        lines.append(f"winner: {run_dir}#{w['id']}, {basis} (0 = tuned AdamW, higher is better)")
        lines.append(indent(Path(w["program"]).read_text()))
        lines.append(f"exported: {w['export']} (program: {w['program']})")
    lines.append(f"inspect: optsearch show {run_dir}")
    return "\n".join(lines)


# --- show -------------------------------------------------------------------------------------

def cmd_show(args: argparse.Namespace) -> None:
    run_dir = Path(args.run_dir)
    if args.top < 1:
        raise OptsearchError(f"--top must be >= 1, got {args.top}")
    if args.html and Path(args.html).is_dir():
        raise OptsearchError(f"--html {args.html} is a directory; give the .html file to write")
    with RunStore.open(run_dir, readonly=True) as store:
        report = show_report(store, run_dir, args.top)
        if args.pareto:
            report["hall_of_fame"] = {by: [_hall_json(e) for e in hall_of_fame(store, by)] for by in ("length", "state")}
        if args.plot:
            _plot(store, Path(args.plot), run_dir)
        if args.html:
            write_page(store, run_dir, Path(args.html))
    if args.json:
        print(json.dumps(report, indent=2))
    elif args.pareto:
        print(_pareto_text(report))
    else:
        print(_show_text(report))
    for path in (args.plot, args.html):
        if path:
            print(f"wrote {path}")


def _hall_json(e) -> dict:
    return {"id": e.id, "length": e.length, "state_per_param": e.state_per_param, "fitness": finite(e.fitness),
            "funnel_fitness": finite(e.funnel_fitness), "mutation": e.mutation, "winner": e.winner, "text": e.text}


def _pareto_text(r: dict) -> str:
    lines = [f"run {r['run']}: hall of fame (fitness: 0 = tuned AdamW, higher is better; * = the run's winner)"]
    for by, title in (("length", "by length (live statements)"), ("state", "by optimizer state per parameter")):
        rows = [("id", "length", "state/param", "fitness", "funnel", "mutation")]
        for e in r["hall_of_fame"][by]:
            state = "-" if e["state_per_param"] is None else f"{e['state_per_param']:g}"
            rows.append((f"#{e['id']}" + ("*" if e["winner"] else ""), str(e["length"]), state, fmt_fitness(e["fitness"]),
                         fmt_fitness(e["funnel_fitness"]), e["mutation"] or "warm start"))
        lines += ["", f"{title}:", table(rows) if len(rows) > 1 else "  (no ranked program yet)"]
    front = r["hall_of_fame"]["length"]
    if front:
        lines += ["", f"shortest on the front: {r['run']}#{front[0]['id']}", indent(front[0]["text"])]
    return "\n".join(lines)


def cmd_report(args: argparse.Namespace) -> None:
    if args.seeds < 1:
        raise OptsearchError(f"--seeds must be >= 1, got {args.seeds}")
    if args.time_limit is not None and not (args.time_limit > 0 and math.isfinite(args.time_limit)):
        raise OptsearchError(f"--time-limit must be a number > 0, got {args.time_limit}")
    if args.lr_multipliers is not None and not all(m > 0 and math.isfinite(m) for m in args.lr_multipliers):
        raise OptsearchError(f"--lr-multipliers must be numbers > 0, got {args.lr_multipliers}")
    if args.jobs < 1:
        raise OptsearchError(f"--jobs must be >= 1, got {args.jobs}")
    # a missing run, a bad id, task or baseline fails in write_report before any evaluation
    r = write_report(Path(args.run_dir), Path(args.out), args.id, args.task, args.seeds,
                     tuple(args.baseline or BASELINES), args.time_limit, say=lambda line: print(line, flush=True),
                     lr_multipliers=args.lr_multipliers, jobs=args.jobs,
                     cache=args.cache)
    means = [f"{k} {v['mean']:+.4f}" if v["mean"] is not None else f"{k} failed" for k, v in r["fitness"].items()]
    print(f"{r['name']}: sign-based momentum {'yes' if r['sign_momentum'] else 'no'}; "
          f"fitness on held-out tasks {', '.join(means)}")
    for baseline, by_task in r["comparisons"].items():
        print(verdict_line(baseline, MEAN, by_task[MEAN]))
    print(f"wrote {args.out}/program.py, optimizer.py, REPORT.md, report.json")


def show_report(store: RunStore, run_dir: Path, top: int) -> dict:
    c = store.counters()
    ranked = store.programs("ranked", order="fitness")
    leaderboard = []
    for row in ranked[:top]:
        scores = {f"{e['task']}/{e['size']}": e["fitness"] for e in store.evaluations(row.id, "search")}
        leaderboard.append({"id": row.id, "fitness": finite(row.fitness), "statements": _statements(row.text),
                            "mutation": row.mutation, "parent": row.parent, "scores": scores})
    best = ranked[0] if ranked else None
    lineage = []
    if best is not None:
        for row in store.lineage(best.id):
            lineage.append({"id": row.id, "fitness": finite(row.fitness), "status": row.status,
                            "mutation": row.mutation or "", "eval_index": row.eval_index})
    children, hits, elapsed = c.children, c.cache_hits, c.elapsed
    return {
        "run": str(run_dir), "config": store.config, "finished": store.get("finished"),
        "counts": {"programs": store.count_programs(), "evaluations": c.evaluations,
                   "children": children, "rejected": c.rejected,
                   "rejected_fraction": c.rejected / children if children else None,
                   "cache_hits": hits, "hash_hits": c.hash_hits, "fingerprint_hits": c.fingerprint_hits,
                   "cache_hit_rate": hits / children if children else None,
                   "restarts": c.restarts, "seconds": elapsed,
                   "evaluations_per_second": c.evaluations / elapsed if elapsed else None,
                   "rejected_reasons": c.rejected_reasons},
        "cascade": _cascade(store, c),
        "promotion": _promotion(c),
        "leaderboard": leaderboard,
        "best": None if best is None else {"id": best.id, "ref": f"{run_dir}#{best.id}",
                                           "fitness": finite(best.fitness), "program": best.text},
        "lineage": lineage,
        "pending": len(store.programs("pending")),
        "funnel": _funnel(store, top),
        "winner": store.get("winner"),
        **_islands(store),
    }


def _cascade(store: RunStore, c) -> dict | None:
    """The evaluation cascade's books (None when the run has none): first stages, full evaluations, drops."""
    cascade = (store.config.get("evaluation") or {}).get("cascade")
    if cascade is None:
        return None
    return {"fraction": cascade["fraction"], "margin": cascade["margin"], "stage1_evaluations": c.stage1_evaluations,
            "full_evaluations": c.evaluations, "dropped": c.dropped, "drop_reuses": c.drop_reuses,
            "dropped_fraction": c.dropped / c.stage1_evaluations if c.stage1_evaluations else None,
            "stage1_best": c.stage1_best}


def _promotion(c) -> dict | None:
    """Noise-aware promotion's books (None when no challenger was ever re-evaluated)."""
    if not c.promotion_evaluations and not c.challengers:
        return None
    return {"re_evaluations": c.promotion_evaluations, "promotions": c.promotions, "refused": c.refused,
            "pending": len(c.challengers), "best_id": c.best_id, "best_mean": c.best_mean, "best_se": c.best_se}


def _islands(store: RunStore) -> dict:
    """With islands: each island's members and best, and the migrations (events); nothing without."""
    islands = (store.config or {}).get("search", {}).get("islands") or {}
    count = islands.get("count", 1)
    if count == 1:
        return {}
    of = store.population_islands()
    members: list[list[tuple[int, float]]] = [[] for _ in range(count)]
    for birth, pid, score in store.population():
        members[of.get(birth, 0)].append((pid, score))
    rows = []
    for k, ms in enumerate(members):
        best = max(ms, key=lambda m: m[1], default=(None, None))   # the oldest among equals, as selection
        rows.append({"island": k, "members": len(ms), "distinct": len({pid for pid, _ in ms}),
                     "best_id": best[0], "best_score": finite(best[1])})
    migrations = [{"eval_index": e["eval_index"], "detail": e["detail"]} for e in store.events()
                  if e["kind"] == "migration"]
    return {"islands": rows, "migrations": migrations}


def _funnel(store: RunStore, top: int) -> list[dict]:
    """The re-checked programs, best first as the winner is chosen (`run.rechecked`)."""
    penalty = memory_penalty(store)
    return [{"id": row.id, "funnel_fitness": finite(row.funnel_fitness), "fitness": finite(row.fitness),
             "status": row.funnel_status, "state_per_param": state, "memory_penalty": penalty,
             "ranked_fitness": finite(ranked),
             "scores": {f"{e['task']}/{e['size']}": e["fitness"] for e in store.evaluations(row.id, "funnel")}}
            for row, state, ranked in rechecked(store)[:top]]


def _show_text(r: dict) -> str:
    n = r["counts"]
    lines = [f"run {r['run']}: {n['evaluations']} evaluations, {n['children']} children, "
             f"{_pct(n['rejected'], n['children'])} rejected statically, cache hit rate "
             f"{_pct(n['cache_hits'], n['children'])} (hash {n['hash_hits']}, fingerprint {n['fingerprint_hits']}), "
             f"{n['restarts']} restarts, {n['seconds']:.0f} s"
             + (f" ({n['evaluations_per_second']:.2f} evaluations/s)" if n["evaluations_per_second"] else "")]
    if r["cascade"]:
        k = r["cascade"]
        lines.append(f"cascade (first {k['fraction']:g} of the budget, margin {k['margin']:g}): {k['stage1_evaluations']} "
                     f"first stages, {k['full_evaluations']} full evaluations, {k['dropped']} dropped "
                     f"({_pct(k['dropped'], k['stage1_evaluations'])}), {k['drop_reuses']} children dropped as "
                     f"equivalent to a dropped program")
    if r["promotion"]:
        p = r["promotion"]
        best = (f"; best #{p['best_id']} at {p['best_mean']:+.4f} +- {p['best_se']:.4f} on new seeds"
                if p["best_mean"] is not None else "")
        lines.append(f"promotion: {p['re_evaluations']} challengers re-evaluated, {p['promotions']} promoted, "
                     f"{p['refused']} refused (lead within the noise){best}")
    if r["finished"]:
        lines.append(f"finished: {r['finished']['reason']}")
    elif r["pending"]:
        lines.append(f"not finished: {r['pending']} evaluation(s) in flight when it stopped "
                     f"(optsearch resume {r['run']})")
    if not r["leaderboard"]:
        lines.append("no program has finished an evaluation yet")
        return "\n".join(lines)
    tasks = list(r["leaderboard"][0]["scores"])
    rows = [("rank", "id", "fitness", "stmts", *tasks, "mutation")]
    for k, e in enumerate(r["leaderboard"], 1):
        rows.append((str(k), f"#{e['id']}", fmt_fitness(e["fitness"]), str(e["statements"]),
                     *(fmt_fitness(e["scores"].get(t)) for t in tasks), e["mutation"] or ""))
    lines += ["", "leaderboard (fitness: 0 = tuned AdamW, higher is better):", table(rows)]
    if r["funnel"]:
        tasks = list(r["funnel"][0]["scores"])
        penalty = r["funnel"][0]["memory_penalty"]
        memory = ("state", f"less {penalty:g}/state") if penalty else ()
        rows = [("rank", "id", "funnel", *memory, "search", *tasks)]
        for k, e in enumerate(r["funnel"], 1):
            state = "-" if e["state_per_param"] is None else f"{e['state_per_param']:g}"
            rows.append((str(k), f"#{e['id']}", fmt_fitness(e["funnel_fitness"]),
                         *((state, fmt_fitness(e["ranked_fitness"])) if penalty else ()), fmt_fitness(e["fitness"]),
                         *(fmt_fitness(e["scores"].get(t)) for t in tasks)))
        ranking = f", ranked by funnel fitness less {penalty:g} per state tensor" if penalty else ""
        lines += ["", f"funnel (re-checked on larger and held-out tasks; the winner is chosen here{ranking}):",
                  table(rows)]
    b = r["best"]
    lines += ["", f"best on the search tasks: {b['ref']} (fitness {fmt_fitness(b['fitness'])})", indent(b["program"])]
    roles = (r["config"] or {}).get("roles")
    if roles:
        fixed = ", ".join(f"{role}: {spec}" for role, spec in roles["fixed"].items())
        lines.append(f"roles: it steps {', '.join(roles['evolve'])}; fixed programs step the rest ({fixed})")
    w = r["winner"]
    if w:
        lines += ["", f"winner: #{w['id']} (chosen {chosen_by(w['basis'])}), exported to {w['export']} "
                      f"(program: {w['program']})"]
    if r.get("islands"):
        lines += ["", *_islands_text(r["islands"], r["migrations"])]
    lines += ["", "lineage (newest first):"]
    lines.append(table([("id", "fitness", "eval", "mutation")] + [
        (f"#{x['id']}", fmt_fitness(x["fitness"]) if x["status"] != "cached" else f"{fmt_fitness(x['fitness'])} (cached)",
         str(x["eval_index"] or "-"), x["mutation"]) for x in r["lineage"]]))
    return "\n".join(lines)


def _islands_text(islands: list[dict], migrations: list[dict], last: int = 3) -> list[str]:
    rows = [("island", "members", "distinct", "best", "score")]
    for i in islands:
        rows.append((str(i["island"]), str(i["members"]), str(i["distinct"]),
                     "-" if i["best_id"] is None else f"#{i['best_id']}", fmt_fitness(i["best_score"])))
    shown = f", the last {last}" if len(migrations) > last else ""
    lines = [f"islands (score: fitness less the configured penalties; {len(migrations)} migrations{shown}):",
             table(rows)]
    return lines + [f"  {m['detail']}" for m in migrations[-last:]]


def _plot(store: RunStore, path: Path, run_dir: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise OptsearchError("--plot needs matplotlib: pip install matplotlib") from None
    history = store.history()
    if not history:
        raise OptsearchError(f"{run_dir}: no finished evaluations to plot yet")
    xs = [h[0] for h in history]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(xs, [h[1] if math.isfinite(h[1]) else float("nan") for h in history], label="best")
    ax.plot(xs, [h[2] if math.isfinite(h[2]) else float("nan") for h in history], label="population median")
    ax.set_xlabel("evaluations")
    ax.set_ylabel("fitness (0 = tuned AdamW)")
    ax.set_title(str(run_dir))
    ax.legend()
    ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _statements(text: str) -> int:
    return len(parse_program(text).body)


def _pct(a: int, b: int) -> str:
    return f"{100 * a / b:.0f}%" if b else "-"


__all__ = ["add_run_commands", "show_report"]
