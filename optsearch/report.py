"""Ship a found optimizer: its program, its torch.optim export and a report, in one folder.

`optsearch report RUN [--id N] [-o DIR]` is how an entry of `discovered/found/` is made: the
run's winner (or any stored program), simplified by exact rewrites only (so its behaviour is the
one that was measured), re-evaluated beside zoo AdamW, Lion and Muon on the tasks the search never
saw (the run's funnel tasks unless given), seed by seed, with the paired statistics of
`optsearch.comparison` (does it beat each baseline by more than two standard errors?), how it was
found (config, seed, evaluations, wall time), its lineage back to the warm start and whether
sign-based momentum emerged. Everything the report says is also written to `report.json`.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import yaml

from optsearch.comparison import Comparison, Estimate, estimate, mean_over_tasks, paired
from optsearch.config import task_spec
from optsearch.dsl import OptsearchError, Program, RoleProgram, Var, check, parse_program, print_candidate
from optsearch.dsl.printer import format_statement
from optsearch.evaluators import EvalResult, TaskScore
from optsearch.evaluators.fitness import memory_penalized, relative_fitness
from optsearch.display import finite, fmt_fitness
from optsearch.files import write_atomically
from optsearch.run import choose_winner, identifier, run_candidate, stored_config
from optsearch.search.settings import EvaluationSettings
from optsearch.search.store import RunStore

BASELINES: tuple[str, ...] = ("adamw", "lion", "muon_adamw")   # zoo candidates the winner is compared with


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
                 seeds: int = 3, baselines: Sequence[str] = BASELINES, time_limit: float | None = None,
                 say: Callable[[str], None] = lambda line: None, lr_multipliers: Sequence[float] | None = None,
                 jobs: int = 1, cache: Path | None = None) -> dict:
    """Write `program.py`, `optimizer.py`, `REPORT.md` and `report.json` into `out_dir`; returns the report.

    Every contender is trained on every held-out task on seeds 0..`seeds`-1 at each lr multiplier
    (the run's grid unless `lr_multipliers`), `time_limit` seconds at most per contender and task,
    in `jobs` processes; the figures do not depend on `jobs`. With `cache`, evaluations already made
    with the same job (a baseline, on an earlier report) are read from that folder."""
    from optsearch.discovered import load_zoo_candidate, zoo_description, zoo_names, zoo_role_names
    from optsearch.dsl.export.roles import export_candidate
    from optsearch.search.simplify import simplify

    config = stored_config(run_dir)
    unknown = [b for b in baselines if b not in zoo_names() and b not in zoo_role_names()]
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
    grid = tuple(lr_multipliers or config.search.evaluation.lr_multipliers)
    label = name if name not in baselines else f"{name} (found)"
    contenders = {label: found, **{b: load_zoo_candidate(b) for b in baselines}}
    started = time.perf_counter()
    say(f"evaluating {', '.join(contenders)} on {', '.join(held_out)} ({seeds} seed(s), {len(grid)} learning "
        f"rates) in {jobs} process(es)")
    measured = _evaluate(contenders, held_out, seeds, grid, time_limit, config.search.evaluation, jobs, say, cache)
    comparisons = {b: _compare(measured, label, b, held_out) for b in baselines}
    comparisons[REFERENCE] = _compare(measured, label, None, held_out)
    momentum = sign_momentum(program)
    command = ["optsearch report", str(run_dir), "--id", str(program_id), "-o", str(out_dir),
               *(f"--task {t}" for t in held_out), "--seeds", str(seeds),
               *(f"--baseline {b}" for b in baselines if tuple(baselines) != BASELINES),
               *(["--lr-multipliers", *(f"{m:g}" for m in grid)] if lr_multipliers else []),
               *(["--time-limit", f"{time_limit:g}"] if time_limit is not None else []),
               *(["--jobs", str(jobs)] if jobs != 1 else [])]
    report = {
        "name": name, "run": str(run_dir), "program_id": program_id, "mutation": row.mutation,
        "search_fitness": finite(row.fitness), "funnel_fitness": finite(row.funnel_fitness),
        "search_scores": search_scores, "found_at_evaluation": row.eval_index,
        "seed": config.search.seed, "evaluations": counters.evaluations, "seconds": counters.elapsed,
        "finished": finished, "config": config.raw, "held_out": held_out, "seeds": seeds,
        "lr_multipliers": list(grid), "winner": label,
        "baselines": {b: zoo_description(b) for b in baselines}, "references": _references(held_out),
        "fitness": {c: {t: e.mean for t, e in m.items()} for c, m in measured.estimates.items()},
        "standard_error": {c: {t: e.se for t, e in m.items()} for c, m in measured.estimates.items()},
        "per_seed": {c: {t: [finite(f) for f in fs] for t, fs in m.items()} for c, m in measured.per_seed.items()},
        "best_lr": measured.best_lr, "comparisons": {b: {t: _comparison_json(c) for t, c in by_task.items()}
                                                     for b, by_task in comparisons.items()},
        "failures": measured.failures, "errors": measured.errors, "state_per_param": measured.memory, "task_seconds": measured.seconds,
        "memory_penalty": config.search.memory_penalty, "sign_momentum": momentum.found,
        "sign_statement": momentum.where, "lineage": lineage, "program": print_candidate(found),
        "raw_program": row.text, "evaluation_seconds": time.perf_counter() - started, "command": " ".join(command),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    header = f"# Found by optsearch: {run_dir}#{program_id}, simplified exactly; report in REPORT.md.\n"
    write_atomically(out_dir / "program.py", header + print_candidate(found))
    write_atomically(out_dir / "optimizer.py", export_candidate(found))
    write_atomically(out_dir / "report.json", json.dumps(report, indent=1) + "\n")
    write_atomically(out_dir / "REPORT.md", _markdown(report))
    return report


REFERENCE = "reference"   # the comparisons' key for the stored tuned-AdamW reference (fitness 0)
MEAN = "mean"             # the key of the mean over tasks, beside the tasks' own


@dataclass
class Measured:
    """What the contenders scored, by contender and then task (and `MEAN`, the mean over tasks)."""

    per_seed: dict[str, dict[str, list[float]]]      # fitness per seed, -inf where the seed failed
    estimates: dict[str, dict[str, Estimate]]
    best_lr: dict[str, dict[str, list[float]]]       # the lr multiplier each seed's fitness came from
    failures: dict[str, dict[str, str]]              # task -> status, where not "ok"
    errors: dict[str, dict[str, str]]                # task -> the first line of why, where not "ok"
    memory: dict[str, float | None]                  # optimizer state per parameter, mean over tasks
    seconds: dict[str, dict[str, float]]


def _evaluate(contenders: dict[str, Program | RoleProgram], held_out: Sequence[str], seeds: int,
              grid: Sequence[float], time_limit: float | None, e: EvaluationSettings, jobs: int,
              say: Callable[[str], None], cache: Path | None = None) -> Measured:
    """Each contender on each task, one job each (in `jobs` processes), as the run evaluated its
    candidates (device rule, subspace) without its time limit: a report is a deliberate
    evaluation on tasks that may be slower than the search's."""
    from optsearch.evaluators import EvalJob, run_jobs

    pairs = [(c, t) for c in contenders for t in held_out]
    work = [EvalJob(print_candidate(contenders[c]), (t,), tuple(range(seeds)), tuple(grid), time_limit, e.device,
                    e.subspace) for c, t in pairs]

    def done(i: int, r: EvalResult) -> None:
        say(f"  {pairs[i][0]} on {pairs[i][1]}: {r.status}, fitness {fmt_fitness(r.fitness)} ({r.seconds:.0f} s)")

    results = dict(zip(pairs, run_jobs(work, jobs, done, cache)))
    m = Measured({}, {}, {}, {}, {}, {}, {})
    for c in contenders:
        scores = [results[c, t].scores[0] if results[c, t].scores else None for t in held_out]
        m.per_seed[c] = {t: _seed_fitness(s, seeds) for t, s in zip(held_out, scores)}
        m.per_seed[c][MEAN] = mean_over_tasks([m.per_seed[c][t] for t in held_out])
        m.estimates[c] = {t: estimate(fs) for t, fs in m.per_seed[c].items()}
        m.best_lr[c] = {t: s.best_lr if s else [] for t, s in zip(held_out, scores)}
        m.failures[c] = {t: results[c, t].status for t in held_out if results[c, t].status != "ok"}
        m.errors[c] = {t: _first_line(s.error if s else results[c, t].error)
                       for t, s in zip(held_out, scores) if t in m.failures[c]}
        memory = [s.state_per_param for s in scores if s and s.state_per_param is not None]
        m.memory[c] = sum(memory) / len(memory) if memory else None
        m.seconds[c] = {t: results[c, t].seconds for t in held_out}
    return m


def _seed_fitness(score: TaskScore | None, seeds: int) -> list[float]:
    """Fitness per seed on one task: each seed's best metric over the lr grid against the tuned
    AdamW reference; -inf for a seed that failed, or for every seed of a task that did not run."""
    if score is None or score.reference is None or score.status not in ("ok", "diverged"):
        return [-math.inf] * seeds
    return [relative_fitness(metric, score.reference) for metric in score.per_seed]


def _first_line(error: str | None) -> str:
    return (error or "").split("\n")[0]


def _compare(m: Measured, winner: str, baseline: str | None, held_out: Sequence[str]) -> dict[str, Comparison]:
    """The winner against `baseline` (None: against the stored reference, fitness 0 on every seed),
    per task and on the mean over tasks."""
    ours = m.per_seed[winner]
    theirs = m.per_seed[baseline] if baseline is not None else {t: [0.0] * len(fs) for t, fs in ours.items()}
    return {t: paired(ours[t], theirs[t]) for t in [*held_out, MEAN]}


def _comparison_json(c: Comparison) -> dict:
    return {"differences": [finite(d) for d in c.differences], "mean": c.mean, "se": c.se, "beats": c.beats,
            "why": c.why}


def _references(held_out: Sequence[str]) -> dict[str, dict | None]:
    """What "tuned AdamW" (fitness 0) is on each task: the calibrated lr, weight decay and seeds."""
    from optsearch.proxy_tasks.references import load_references

    stored = load_references()
    return {t: {"metric": r.metric, "lr": r.lr, "weight_decay": r.weight_decay, "seeds": list(r.seeds)}
            if (r := stored.get(t)) else None for t in held_out}


def _markdown(r: dict) -> str:
    searched = {task_spec(t) for t in r["config"]["evaluation"]["tasks"]} & set(r["held_out"])
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
             *_comparison_section(r, searched)]
    lines += ["", "## Lineage (warm start first)", "", "| id | evaluation | mutation | fitness |",
              "| --- | --- | --- | --- |"]
    for step in reversed(r["lineage"]):
        lines.append(f"| #{step['id']} | {step['eval_index'] if step['eval_index'] is not None else '-'} | "
                     f"{step['mutation'] or '-'} | {fmt_fitness(step['fitness'])} |")
    config = yaml.safe_dump(r["config"], sort_keys=False).rstrip()
    lines += ["", "## The run's config", "", "```yaml", config, "```", ""]
    return "\n".join(lines)


def _comparison_section(r: dict, searched: set[str]) -> list[str]:
    """The held-out table (mean ± standard error over seeds) and, with per-seed results, whether
    the winner beats each baseline by more than two standard errors. Reports made before per-seed
    results were recorded show their means alone."""
    # Optimizer state per parameter (reports made before it was recorded have none), and with a
    # memory-aware run the fitness less its penalty, which is what the run selected on.
    tasks, memory, penalty = r["held_out"], r.get("state_per_param") or {}, r.get("memory_penalty") or 0.0
    extra = (["state/param"] if memory else []) + ([f"mean less {penalty:g} x state"] if memory and penalty else [])
    se = r.get("standard_error", {})
    lines = ["## Against the baselines where the search did not look", "", *_comparison_intro(r, searched),
             _row(["program", *(t + (" (searched)" if t in searched else "") for t in tasks), "mean", *extra]),
             "| --- |" + " --- |" * (len(tasks) + 1 + len(extra))]
    for label, scores in r["fitness"].items():
        failed, state, errors = r["failures"].get(label, {}), memory.get(label), se.get(label, {})
        cells = [label, *(failed.get(t) or _estimate(scores.get(t), errors.get(t)) for t in tasks),
                 _estimate(scores["mean"], errors.get("mean"))]
        if memory:
            cells.append("-" if state is None else f"{state:g}")
        if memory and penalty:
            mean = scores["mean"]
            cells.append(fmt_fitness(None if mean is None else memory_penalized(mean, state, penalty)))
        lines.append(_row(cells))
    why = [f"- {label} on {t}: {status} ({r['errors'][label][t]})" for label, failed in r["failures"].items()
           for t, status in failed.items() if r.get("errors", {}).get(label, {}).get(t)]
    lines += ["", *why] if why else []
    return lines + _verdicts(r) if "comparisons" in r else lines


def _comparison_intro(r: dict, searched: set[str]) -> list[str]:
    """What the table's numbers are, what each baseline is, and what "tuned AdamW" means here."""
    baselines = r.get("baselines") or {}
    return [f"Fitness against tuned AdamW (0 = the tuned-AdamW reference, higher is better): per seed, the best "
            f"over the learning-rate multipliers {r['lr_multipliers']}; "
            + (f"mean ± standard error over {r['seeds']} seeds (0 to {r['seeds'] - 1})." if "per_seed" in r else
               f"mean over {r['seeds']} seed(s) (this report predates per-seed results: no standard errors; "
               "its command run again adds them).")
            + (" Columns marked (searched) are the run's own search tasks, evaluated again here; the search "
               "never saw the others." if searched else ""), "",
            "The baselines are zoo programs as written in `discovered/zoo/`"
            + (": " + "; ".join(f"`{b}`: {d.rstrip('.')}" for b, d in baselines.items()) if baselines else "")
            + ". Every row tunes its lr on the same grid, per seed"
            + (": the `adamw` row is \"tuned AdamW\" with its weight decay fixed at 0.01" if "adamw" in r["fitness"]
               else "") + ". The reference (fitness 0) is AdamW with its lr and weight decay tuned "
            "by `optsearch calibrate`" + _reference_text(r.get("references") or {}) + ".", ""]


def _verdicts(r: dict) -> list[str]:
    """The paired comparisons in words, and plainly whether the winner went past the best baseline."""
    name, comparisons = r["winner"], r["comparisons"]
    lines = ["", "### Does it beat them?", "",
             f"Paired by seed (seed k of every row starts from the same initialisation and sees the same data): "
             f"{name}'s fitness less the baseline's, mean ± standard error over seeds; \"2 SE: yes\" where the mean "
             "is more than two standard errors above 0. Against the reference, the reference's own seed-to-seed "
             "noise is not in the standard error.", ""]
    for baseline, by_task in comparisons.items():
        lines += [f"- {verdict_line(baseline, t, c)}" for t, c in by_task.items()]
    best = _best_baseline(r)
    if best is not None:
        c = comparisons[best][MEAN]
        went = {"yes": "went past", "no": "did not go past", "n/a": "cannot tell whether it went past"}[c["beats"]]
        lines += ["", f"**Against the best baseline here**: `{best}` has the highest mean fitness of the baselines "
                      f"({_estimate(r['fitness'][best][MEAN], r['standard_error'][best][MEAN])}); {name} beats it by "
                      f"more than 2 SE on the mean over tasks: **{c['beats']}**. The search {went} the best known "
                      "optimizer in this comparison."]
    return lines


def verdict_line(baseline: str, task: str, c: dict) -> str:
    """One comparison of report.json in words: `beats adamw on lm/medium by +0.0310 ± 0.0040 (2 SE: yes)`."""
    against = "the tuned-AdamW reference" if baseline == REFERENCE else baseline
    where = "the mean over tasks" if task == MEAN else task
    if c["mean"] is None:
        return f"beats {against} on {where}: {c['beats']} ({c['why']})"
    why = f", {c['why']}" if c["why"] else ""
    return f"beats {against} on {where} by {_estimate(c['mean'], c['se'])} (2 SE: {c['beats']}{why})"


def _best_baseline(r: dict) -> str | None:
    """The baseline with the highest mean fitness over tasks (None when none has one)."""
    scored = [(r["fitness"][b][MEAN], b) for b in r["comparisons"]
              if b != REFERENCE and r["fitness"][b][MEAN] is not None]
    return max(scored)[1] if scored else None


def _estimate(mean: float | None, se: float | None) -> str:
    return fmt_fitness(mean) + (f" ± {se:.4f}" if mean is not None and se is not None else "")


def _reference_text(references: dict[str, dict | None]) -> str:
    known = [f"{t}: lr {x['lr']:g}, weight decay {x['weight_decay']:g}, seeds {x['seeds']}"
             for t, x in references.items() if x]
    return f" ({'; '.join(known)})" if known else ""


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _duration(seconds: float | None) -> str:
    return "?" if seconds is None else f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


__all__ = ["BASELINES", "MEAN", "REFERENCE", "SignMomentum", "sign_momentum", "verdict_line", "write_report"]
