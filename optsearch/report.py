"""Ship a found optimizer: its program, its torch.optim export and a report, in one folder.

`optsearch report RUN [--id N] [-o DIR]` is how an entry of `discovered/found/` is made: the
run's winner (or any stored program), simplified by exact rewrites only (so its behaviour is the
one that was measured), re-evaluated beside AdamW and Lion on the tasks the search never saw (the
run's funnel tasks unless given), with how it was found (config, seed, evaluations, wall time),
its lineage back to the warm start and whether sign-based momentum emerged. Everything the
report says is also written to `report.json`.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import yaml

from optsearch.config import task_spec
from optsearch.dsl import OptsearchError, Program, Var, check, parse_program, print_candidate
from optsearch.dsl.printer import format_statement
from optsearch.evaluators.fitness import memory_penalized
from optsearch.display import finite, fmt_fitness
from optsearch.files import write_atomically
from optsearch.run import choose_winner, identifier, run_candidate, stored_config
from optsearch.search.store import RunStore

BASELINES: tuple[str, ...] = ("adamw", "lion")   # zoo programs the winner is compared with


@dataclass(frozen=True)
class SignMomentum:
    """Whether the update takes the sign of a value that reads optimizer state (Lion's move)."""

    found: bool
    where: str | None    # the statement, as written in the simplified program


def sign_momentum(program: Program) -> SignMomentum:
    """Find a live `sign(x)` whose `x` depends on a state variable (a momentum, in practice)."""
    a = check(program)
    depends: dict[str, set[str]] = {p: {p} for p in program.params}
    for i, s in enumerate(program.body):
        reads = set().union(*(depends.get(x.name, set()) for x in s.args if isinstance(x, Var)))
        depends[s.target] = reads
        if s.op == "sign" and i in a.live and reads & set(program.state):
            return SignMomentum(True, format_statement(s))
    return SignMomentum(False, None)


def write_report(run_dir: Path, out_dir: Path, program_id: int | None = None, tasks: Sequence[str] | None = None,
                 seeds: int = 2, baselines: Sequence[str] = BASELINES, time_limit: float | None = None,
                 say: Callable[[str], None] = lambda line: None) -> dict:
    """Write `program.py`, `optimizer.py`, `REPORT.md` and `report.json` into `out_dir`; returns the report."""
    from optsearch.discovered import load_zoo, zoo_names
    from optsearch.dsl.export.roles import export_candidate
    from optsearch.evaluators import EvalJob, run_job
    from optsearch.search.simplify import simplify

    config = stored_config(run_dir)
    unknown = [b for b in baselines if b not in zoo_names()]
    if unknown:
        raise OptsearchError(f"--baseline {unknown[0]!r}: not a zoo program (optsearch zoo lists them)")
    with RunStore.open(run_dir, readonly=True) as store:
        if program_id is None:
            chosen = choose_winner(store)
            if chosen is None:
                raise OptsearchError(f"{run_dir}: no evaluated program to report on")
            program_id = chosen[0]
        if program_id < 1 or program_id > store.count_programs():
            raise OptsearchError(f"{run_dir}#{program_id}: no such program (the run has {store.count_programs()})")
        row = store.program(program_id)
        lineage = [{"id": r.id, "mutation": r.mutation or "", "fitness": finite(r.fitness), "status": r.status,
                    "eval_index": r.eval_index} for r in store.lineage(program_id)]
        search_scores = {f"{e['task']}/{e['size']}": finite(e["fitness"])
                         for e in store.evaluations(program_id, "search")}
        counters = store.counters()
        finished = store.get("finished")
    name = identifier(out_dir.name)
    raw = replace(parse_program(row.text), name=name)
    program = simplify(raw).after
    found = run_candidate(config, program)  # with parameter roles: beside the run's fixed programs
    held_out = []
    for t in tasks or (config.search.funnel.tasks if config.search.funnel else config.search.evaluation.tasks):
        try:
            held_out.append(task_spec(t))
        except ValueError as e:
            raise OptsearchError(f"--task {t}: {e}") from None
    e = config.search.evaluation
    label = name if name not in baselines else f"{name} (found)"
    contenders = {label: found, **{b: load_zoo(b) for b in baselines}}
    table: dict[str, dict[str, float | None]] = {}
    failures: dict[str, dict[str, str]] = {}
    memory: dict[str, float | None] = {}
    started = time.perf_counter()
    for label, p in contenders.items():
        say(f"evaluating {label} on {', '.join(held_out)} ({seeds} seed(s), {len(e.lr_multipliers)} learning rates)")
        # as the run evaluated its candidates (lr grid, device rule, subspace), without its time
        # limit: a report is a deliberate evaluation on tasks that may be slower than the search's
        result = run_job(EvalJob(print_candidate(p), tuple(held_out), tuple(range(seeds)), tuple(e.lr_multipliers),
                                 time_limit, e.device, e.subspace))
        table[label] = {f"{s.task}/{s.size}": finite(s.fitness) for s in result.scores}
        failures[label] = {f"{s.task}/{s.size}": s.status for s in result.scores if s.status != "ok"}
        table[label]["mean"] = finite(result.fitness)
        memory[label] = result.state_per_param
    momentum = sign_momentum(program)
    report = {
        "name": name, "run": str(run_dir), "program_id": program_id, "mutation": row.mutation,
        "search_fitness": finite(row.fitness), "funnel_fitness": finite(row.funnel_fitness),
        "search_scores": search_scores, "found_at_evaluation": row.eval_index,
        "seed": config.search.seed, "evaluations": counters.evaluations, "seconds": counters.elapsed,
        "finished": finished, "config": config.raw, "held_out": held_out, "seeds": seeds,
        "lr_multipliers": list(e.lr_multipliers), "fitness": table, "failures": failures,
        "state_per_param": memory, "memory_penalty": config.search.memory_penalty, "sign_momentum": momentum.found,
        "sign_statement": momentum.where, "lineage": lineage, "program": print_candidate(found),
        "raw_program": row.text, "evaluation_seconds": time.perf_counter() - started,
        "command": " ".join(["optsearch report", str(run_dir), "--id", str(program_id), "-o", str(out_dir),
                             *(f"--task {t}" for t in held_out), "--seeds", str(seeds),
                             *(f"--baseline {b}" for b in baselines if tuple(baselines) != BASELINES),
                             *(["--time-limit", f"{time_limit:g}"] if time_limit is not None else [])]),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    header = f"# Found by optsearch: {run_dir}#{program_id}, simplified exactly; report in REPORT.md.\n"
    write_atomically(out_dir / "program.py", header + print_candidate(found))
    write_atomically(out_dir / "optimizer.py", export_candidate(found))
    write_atomically(out_dir / "report.json", json.dumps(report, indent=1) + "\n")
    write_atomically(out_dir / "REPORT.md", _markdown(report))
    return report


def _markdown(r: dict) -> str:
    tasks = r["held_out"]
    # Optimizer state per parameter (reports made before it was recorded have none), and with a
    # memory-aware run the fitness less its penalty, which is what the run selected on.
    memory, penalty = r.get("state_per_param") or {}, r.get("memory_penalty") or 0.0
    extra = (["state/param"] if memory else []) + ([f"mean less {penalty:g} x state"] if memory and penalty else [])
    searched = {task_spec(t) for t in r["config"]["evaluation"]["tasks"]} & set(tasks)
    lines = [f"# {r['name']}", "",
             f"Program #{r['program_id']} of the run `{r['run']}`, simplified exactly (`program.py`); its "
             f"torch.optim export is `optimizer.py`. Made by `{r['command']}`.", "",
             "## How it was found", "",
             f"- Seed {r['seed']}, warm start `{r['config'].get('warm_start')}`, search tasks "
             f"{', '.join(r['config']['evaluation']['tasks'])}.",
             f"- The run made {r['evaluations']} evaluations in {_duration(r['seconds'])}"
             + (f" and stopped on `{r['finished']['reason']}`" if r.get("finished") else " (not finished)") + ".",
             (f"- This program was evaluation {r['found_at_evaluation']}" if r["found_at_evaluation"] is not None
              else "- This program was a cache hit (it behaves as an evaluated program, whose fitness it took)")
             + f", made by `{r['mutation']}`; search fitness "
             f"{fmt_fitness(r['search_fitness'])}" + (f", funnel fitness {fmt_fitness(r['funnel_fitness'])}"
                                                if r["funnel_fitness"] is not None else "") + " (0 = tuned AdamW).",
             f"- Sign-based momentum: **{'yes' if r['sign_momentum'] else 'no'}**"
             + (f" (`{r['sign_statement']}`)." if r["sign_momentum"] else "."), "",
             "```python", r["program"].rstrip(), "```", "",
             "## Against AdamW and Lion where the search did not look", "",
             f"Fitness against tuned AdamW (0 = tuned AdamW, higher is better), {r['seeds']} seed(s), the best of "
             f"the run's learning-rate multipliers {r['lr_multipliers']} per seed. The others are zoo programs "
             "as written in `discovered/zoo/` (`adamw`: weight decay 0.01; `lion`: betas 0.9/0.99, weight decay "
             "0.01); the tuned AdamW the fitness is measured against also tuned its weight decay."
             + (" Columns marked (searched) are the run's own search tasks, evaluated again here; the search "
                "never saw the others." if searched else ""), "",
             _row(["program", *(t + (" (searched)" if t in searched else "") for t in tasks), "mean", *extra]),
             "| --- |" + " --- |" * (len(tasks) + 1 + len(extra))]
    for label, scores in r["fitness"].items():
        failed, state = r["failures"].get(label, {}), memory.get(label)
        cells = [label, *(failed.get(t) or fmt_fitness(scores.get(t)) for t in tasks), fmt_fitness(scores["mean"])]
        if memory:
            cells.append("-" if state is None else f"{state:g}")
        if memory and penalty:
            mean = scores["mean"]
            cells.append(fmt_fitness(None if mean is None else memory_penalized(mean, state, penalty)))
        lines.append(_row(cells))
    lines += ["", "## Lineage (warm start first)", "", "| id | evaluation | mutation | fitness |",
              "| --- | --- | --- | --- |"]
    for step in reversed(r["lineage"]):
        lines.append(f"| #{step['id']} | {step['eval_index'] if step['eval_index'] is not None else '-'} | "
                     f"{step['mutation'] or '-'} | {fmt_fitness(step['fitness'])} |")
    config = yaml.safe_dump(r["config"], sort_keys=False).rstrip()
    lines += ["", "## The run's config", "", "```yaml", config, "```", ""]
    return "\n".join(lines)


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _duration(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


__all__ = ["BASELINES", "SignMomentum", "sign_momentum", "write_report"]
