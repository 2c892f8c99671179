"""A run's life: create or reopen its directory, pick the executor, run the evolution, close cleanly.

`runs/NAME/` holds `run.db` (the store, the only source of truth) and `config.yaml` (the resolved
config, for people). Starting a run where one exists is refused unless it is resumed; resuming
checks that the search-defining parts of the config did not change (the budget and the executor
may: that is how a finished run is extended, or moved onto a cluster).
"""
from __future__ import annotations

import errno
import math
import os
from dataclasses import replace
from pathlib import Path

import torch

from optsearch.config import ConfigError, ExecutorSettings, RunConfig, dump_config, parse_config
from optsearch.dsl import OptsearchError, Program, RoleProgram
from optsearch.dsl.rewrite import restore_names, simplify_static
from optsearch.dsl.roles import program_for, role_description, with_fixed_roles
from optsearch.evaluators import Executor, InlineExecutor
from optsearch.evaluators.evaluate import json_safe
from optsearch.evaluators.fitness import memory_penalized
from optsearch.files import write_atomically
from optsearch.programs import resolve_candidate, resolve_program
from optsearch.search.evolution import Evolution, Outcome, Progress
from optsearch.search.settings import DEFAULT_MUTATION_WEIGHTS
from optsearch.search.records import ProgramRow
from optsearch.search.store import RUN_DB, RunStore

# Sections that define what is searched; a resumed run must keep them.
FIXED_SECTIONS = ("seed", "warm_start", "search", "evaluation", "funnel", "roles")


def run_dir_for(config: RunConfig, run_dir: str | Path | None) -> Path:
    return Path(run_dir) if run_dir is not None else Path("runs") / config.name


def open_store(config: RunConfig, run_dir: Path, resume: bool) -> RunStore:
    """The run's store: a new one, or (with `resume`) the existing one after a config check."""
    if not resume:
        store = RunStore.create(run_dir, config.raw)
        try:
            write_atomically(run_dir / "config.yaml", dump_config(config))
        except OSError as e:      # a full disk: the new run is taken back, nothing blocks the directory
            store.discard()
            raise OptsearchError(f"{run_dir / 'config.yaml'}: cannot write it ({_why(e)}); no run was "
                                 f"created") from None
        return store
    if not (run_dir / RUN_DB).is_file():
        raise OptsearchError(f"--resume: no run store at {run_dir} (start it without --resume)")
    store = RunStore.open(run_dir)
    stored = parse_config(as_stored(store.config), str(run_dir / RUN_DB), default_name=run_dir.name).raw
    for key in FIXED_SECTIONS:
        if stored.get(key) != config.raw.get(key):
            store.close()
            raise ConfigError(f"{config.source}: '{key}' differs from the run stored at {run_dir}; a resumed run "
                              f"keeps its search settings (only budget and executor may change): "
                              f"use `optsearch resume {run_dir}` or another --run-dir")
    return store


def stored_config(run_dir: Path) -> RunConfig:
    """The config a run was started with, as the store keeps it."""
    with RunStore.open(run_dir, readonly=True) as store:
        raw = store.config
    return parse_config(as_stored(raw), str(run_dir / RUN_DB), default_name=run_dir.name)


def as_stored(raw: dict) -> dict:
    """A stored config as this version reads it: a run keeps the search it started with, so a
    mutation added to optsearch since then stays off (weight 0) rather than taking its default
    (new settings default to off already). The store keeps every weight, so a missing one is new."""
    search = raw.get("search")
    if isinstance(search, dict) and isinstance(search.get("mutations"), dict):
        off = {name: 0.0 for name in DEFAULT_MUTATION_WEIGHTS}
        raw = {**raw, "search": {**search, "mutations": {**off, **search["mutations"]}}}
    return raw


def make_executor(settings: ExecutorSettings) -> Executor:
    """The executor a config asks for; Ray starts here (locally unless an address is given)."""
    if settings.kind == "inline":
        torch.set_num_threads(settings.threads_per_worker)  # as a Ray worker would: small models, busy cores
        return InlineExecutor()
    from optsearch.evaluators.ray_executor import RayExecutor  # ray is imported only when used
    # A local instance gets one worker per core here; on a cluster (--address) the executor sizes
    # the pool from the cluster's CPUs (and GPUs) unless the config names a number.
    workers = settings.workers or (None if settings.address else os.cpu_count() or 1)
    return RayExecutor(workers=workers, address=settings.address, gpus_per_worker=settings.gpus_per_worker,
                       threads_per_worker=settings.threads_per_worker, max_retries=settings.max_retries,
                       eval_timeout=settings.eval_timeout)


def with_overrides(config: RunConfig, max_evals: int | None = None, executor: str | None = None,
                   workers: int | None = None, address: str | None = None, seconds: float | None = None) -> RunConfig:
    """`config` with the command line's budget and executor choices applied."""
    search, x = config.search, config.executor
    if max_evals is not None:
        if max_evals < 1:
            raise OptsearchError(f"--max-evals must be >= 1, got {max_evals}")
        search = replace(search, evaluations=max_evals)
    if seconds is not None:
        if not (seconds > 0 and math.isfinite(seconds)):
            raise OptsearchError(f"--seconds must be a number > 0, got {seconds}")
        search = replace(search, seconds=seconds)
    changes = {k: v for k, v in (("kind", executor), ("workers", workers), ("address", address)) if v is not None}
    if workers is not None and workers < 1:
        raise OptsearchError(f"--workers must be >= 1, got {workers}")
    if address is not None and "kind" not in changes:
        changes["kind"] = "ray"
    return replace(config, search=search, executor=replace(x, **changes))


def resolve_programs(config: RunConfig) -> tuple[Program, Program | None]:
    """The warm start and the target. A role candidate as the warm start gives the program of the
    roles the search evolves (`roles.evolve`), which must be one program of the candidate."""
    s, target = config.search, config.search.target
    warm = resolve_candidate(s.warm_start)
    if isinstance(warm, RoleProgram):
        if s.roles is None:
            raise ConfigError(f"{config.source}: warm_start '{s.warm_start}' is a role candidate "
                              f"({role_description(warm)}); add a roles: section saying which roles the search evolves")
        names = {program_for(warm, r).name for r in s.roles.evolve}
        if len(names) > 1:
            raise ConfigError(f"{config.source}: warm_start '{s.warm_start}' steps the evolved roles "
                              f"{', '.join(s.roles.evolve)} with {len(names)} programs ({', '.join(sorted(names))}); "
                              "the search evolves one program for them")
        warm = program_for(warm, s.roles.evolve[0])
    return warm, resolve_program(target.program) if target else None


def fixed_programs(config: RunConfig) -> dict[str, Program] | None:
    """The fixed programs of a search with parameter roles, by role (None: the search has no roles)."""
    roles = config.search.roles
    return None if roles is None else {role: resolve_program(spec) for role, spec in roles.fixed.items()}


def run_candidate(config: RunConfig, program: Program) -> Program | RoleProgram:
    """What the run of `config` trained for its program `program`: the program itself, or with
    parameter roles the candidate it makes with the run's fixed programs."""
    fixed = fixed_programs(config)
    return program if fixed is None else with_fixed_roles(program, config.search.roles.evolve, fixed)


def evolve(config: RunConfig, run_dir: Path, resume: bool = False, progress: Progress | None = None,
           executor: Executor | None = None) -> tuple[Outcome, RunStore]:
    """Run (or continue) the search of `config` in `run_dir`; the executor is closed on every exit."""
    warm, target = resolve_programs(config)
    store = open_store(config, run_dir, resume)
    try:          # the store (and its write lock) is closed on every way out but success
        if resume:
            store.set("config", {**store.config, "budget": config.raw["budget"], "executor": config.raw["executor"]})
        executor = executor or make_executor(config.executor)
        try:
            evolution = Evolution(config.search, store, executor, warm, target, progress, fixed_programs(config))
            outcome = evolution.run()
        finally:
            executor.close()
        try:
            finalize(store, run_dir, config)
        except OSError as e:
            raise OptsearchError(f"{e.filename}: cannot write the winner ({_why(e)}); the search is stored: "
                                 f"`optsearch resume {run_dir}` writes it once that is fixed") from None
    except BaseException:
        store.close()
        raise
    return outcome, store




def memory_penalty(store: RunStore) -> float:
    """The run's `search.memory_penalty` (0 when it has none)."""
    return float(((store.config or {}).get("search") or {}).get("memory_penalty") or 0.0)


def _best_first(scored: list[tuple]) -> list[tuple]:
    """`(row, ..., score)` tuples best first: a missing score last, ties by program id."""
    return sorted(scored, key=lambda t: (t[-1] is None, -(t[-1] or 0.0), t[0].id))


def rechecked(store: RunStore) -> list[tuple[ProgramRow, float | None, float | None]]:
    """Every program the funnel re-checked (not those still pending), best first as the winner is
    chosen: `(row, optimizer state per parameter, funnel fitness less the run's memory penalty)`."""
    penalty, out = memory_penalty(store), []
    for row in store.programs("rechecked"):
        state = store.state_per_param(row.id)
        f = row.funnel_fitness
        out.append((row, state, None if f is None else memory_penalized(f, state, penalty)))
    return _best_first(out)


def choose_winner(store: RunStore) -> tuple[int, str] | None:
    """The run's winner: the program that matched the run's target if one did, else the best funnel
    fitness if any program was re-checked, else the promoted best (`search.promotion`), else the best
    search fitness (with the run's
    `memory_penalty`, each less the penalty for the optimizer state the program keeps)."""
    found = store.counters().found_target
    if found is not None:
        return found, "target"
    checked = [row for row, _, score in rechecked(store) if row.funnel_status == "ok" and score is not None]
    if checked:
        return checked[0].id, "funnel"
    c = store.counters()
    if c.best_mean is not None:   # noise-aware promotion chose the best on new seeds
        return c.best_id, "promotion"
    ranked = store.programs("ranked", order="fitness")
    penalty = memory_penalty(store)
    if penalty:   # a memory-aware run chooses as it selected: fitness less the state's cost
        ranked = [row for row, _ in _best_first(
            [(row, memory_penalized(row.fitness, store.state_per_param(row.id), penalty)) for row in ranked])]
    return (ranked[0].id, "search") if ranked else None


def chosen_by(basis: str) -> str:
    """How a winner was chosen, in words (`basis` from `choose_winner`)."""
    if basis == "target":
        return "as the match of the run's target"
    if basis == "promotion":
        return "as the promoted best (its lead held on new seeds)"
    return f"on the {basis} fitness"


def finalize(store: RunStore, run_dir: Path, config: RunConfig | None = None) -> dict | None:
    """Choose the winner, simplify it (exact rewrites only: its behaviour is what was measured), and
    write `best.py` (the program) and `best_optimizer.py` (its torch.optim export) into the run directory.
    With `config`'s parameter roles, both are the candidate the winner makes with the fixed programs."""
    from optsearch.dsl import parse_program, print_candidate
    from optsearch.dsl.export.roles import export_candidate
    chosen = choose_winner(store)
    if chosen is None:
        return None
    pid, basis = chosen
    row = store.program(pid)
    program = replace(parse_program(row.text), name=identifier(f"{run_dir.name}_{pid}"))
    exact, steps = simplify_static(program)
    simplified = restore_names(exact, program)
    header = (f"# Found by optsearch: run {run_dir}, program #{pid} ({row.mutation or 'warm start'}).\n"
              f"# Search fitness {row.fitness:+.4f}"
              + (f", funnel fitness {row.funnel_fitness:+.4f}" if row.funnel_fitness is not None else "")
              + f" (0 = tuned AdamW); chosen {chosen_by(basis)}.\n"
              + (f"# Simplified exactly ({len(steps)} rewrites) from {run_dir}#{pid}.\n" if steps else ""))
    best_py, best_opt = run_dir / "best.py", run_dir / "best_optimizer.py"
    found = simplified if config is None else run_candidate(config, simplified)
    write_atomically(best_py, header + print_candidate(found))
    write_atomically(best_opt, export_candidate(found))
    info = {"id": pid, "basis": basis, "fitness": row.fitness, "funnel_fitness": row.funnel_fitness,
            "program": str(best_py), "export": str(best_opt), "simplified_steps": len(steps)}
    store.set("winner", json_safe(info))
    return info


def _why(e: OSError) -> str:
    return "the disk is full" if e.errno == errno.ENOSPC else (e.strerror or str(e))


def identifier(name: str) -> str:
    clean = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    return clean if clean.isidentifier() else f"program_{clean}"


__all__ = ["as_stored", "choose_winner", "chosen_by", "evolve", "finalize", "identifier", "make_executor",
           "memory_penalty", "open_store", "rechecked", "run_dir_for", "stored_config", "with_overrides"]
