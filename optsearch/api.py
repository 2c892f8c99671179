"""The Python API: search, inspect and use optimizers from a notebook or a script.

    import optsearch
    run = optsearch.evolve("configs/quickstart.yaml", executor="inline", max_evals=20)
    print(run.hall_of_fame())
    opt = optsearch.optimizer(run.best, model.parameters(), lr=1e-3)

Everything here is a thin layer over the CLI's parts (`optsearch.run`, the run store's typed
queries, the exporter), so a run made from Python is the same run the shell sees, and the other
way round. A search interrupted with Ctrl-C or a notebook's interrupt returns the run as stored
(every finished evaluation is committed); `resume(run)` continues it.
"""
from __future__ import annotations

import sys
import types
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch

from optsearch.config import RunConfig, load_config, parse_config
from optsearch.discovered import zoo_names
from optsearch.dsl import OptsearchError, Program, parse_program, print_program
from optsearch.dsl.export import class_name_for, export_program
from optsearch.evaluators import ExecutorLost
from optsearch.evaluators.evaluate import EvalResult
from optsearch.evaluators.evaluate import evaluate as _evaluate
from optsearch.files import write_atomically
from optsearch.programs import resolve_program
from optsearch.records import Front, HallEntry, HistoryPoint, LineageStep, Records, hall_of_fame, history, lineage
from optsearch.run import evolve as _evolve
from optsearch.run import run_dir_for, stored_config, with_overrides
from optsearch.search.evolution import Outcome
from optsearch.search.records import Counters, Finished
from optsearch.search.store import RunStore

# `progress=`: True (a progress bar: tqdm.auto picks a notebook widget or a terminal line), False
# (nothing), or a function called with the run's `Counters` after each evaluation and every second.
ProgressArg = bool | Callable[[Counters], Any]


@dataclass(frozen=True)
class OptimizerProgram:
    """A checked program and what a user does with one: print it, export it, train with it."""

    program: Program
    source: str                      # where it came from: a file, a zoo name, runs/NAME#ID, <text>

    @property
    def name(self) -> str:
        return self.program.name

    @property
    def text(self) -> str:
        return print_program(self.program)

    def __str__(self) -> str:
        return self.text

    def export(self, path: str | Path, class_name: str | None = None) -> Path:
        """Write the program as a standalone torch.optim module (needs only torch) to `path`."""
        path = Path(path)
        write_atomically(path, export_program(self.program, class_name))
        return path

    def optimizer_class(self, class_name: str | None = None) -> type[torch.optim.Optimizer]:
        """The exported optimizer class, made in this process: no file is written. The module is
        the exporter's output for the parsed program (never the user's text), run in a namespace
        of its own."""
        cls = class_name or class_name_for(self.program)
        source = export_program(self.program, cls)
        module = types.ModuleType(f"optsearch_export_{self.program.name}")
        exec(compile(source, f"<export of {self.source}>", "exec"), module.__dict__)
        return getattr(module, cls)


def program(spec: str | Path | Program | OptimizerProgram) -> OptimizerProgram:
    """A program from its text, a program file, a zoo name (`"lion"`) or `"runs/NAME#ID"`."""
    if isinstance(spec, OptimizerProgram):
        return spec
    if isinstance(spec, Program):
        return OptimizerProgram(spec, f"<{spec.name}>")
    text = str(spec)
    if isinstance(spec, str) and ("\n" in text or text.startswith("def ")):   # program text, not a name
        return OptimizerProgram(parse_program(text, path="<text>"), "<text>")
    return OptimizerProgram(resolve_program(text), text)


def optimizer(p: str | Path | Program | OptimizerProgram, params: Iterable, **hyperparameters) -> torch.optim.Optimizer:
    """A `torch.optim.Optimizer` running program `p` over `params` (`lr=`, and the export's
    named constants such as `betas=` or `weight_decay=`), made in this process."""
    return program(p).optimizer_class()(params, **hyperparameters)


def evaluate(p: str | Path | Program | OptimizerProgram, tasks: Sequence[str] = ("mlp/small",),
             seeds: Sequence[int] = (0,), lr_multipliers: Sequence[float] | None = None,
             time_limit: float | None = None) -> EvalResult:
    """Train program `p` on each task (`"name/size"`) and score it against tuned AdamW
    (fitness 0 = AdamW, higher is better); a bad program is a status, never an exception."""
    extra = {} if lr_multipliers is None else {"lr_multipliers": tuple(lr_multipliers)}
    return _evaluate(program(p).program, list(tasks), seeds=tuple(seeds), time_limit=time_limit, **extra)


def zoo() -> list[str]:
    """Names of the zoo's programs (`adamw`, `lion`, ...): each is a valid `program(name)`."""
    return zoo_names()


class Run:
    """A run directory opened for reading: the store stays open until `close()` (or the end of a
    `with` block). Reading a run that is still searching is fine."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._store: RunStore | None = RunStore.open(self.path, readonly=True)
        self.outcome: Outcome | None = None      # how the last `evolve`/`resume` of this session ended
        self.interrupted = False                 # that session was stopped by Ctrl-C / an interrupt

    @property
    def store(self) -> RunStore:
        if self._store is None:
            raise OptsearchError(f"{self.path}: the run is closed (optsearch.open_run opens it again)")
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        if self._store is None:
            return f"<optsearch run {self.path} (closed)>"
        c = self.counters
        best = "-" if self.best_id is None else f"#{self.best_id}"
        return f"<optsearch run {self.path}: {c.evaluations} evaluations, best {best}>"

    @property
    def counters(self) -> Counters:
        return self.store.counters()

    @property
    def finished(self) -> Finished | None:
        """Why the last session stopped; None while it runs, or when it was interrupted or killed."""
        return self.store.finished()

    @property
    def best_id(self) -> int | None:
        """The run's winner (chosen by the funnel, written with best.py), else its fittest program."""
        winner = self.store.get("winner")
        if winner:
            return winner["id"]
        ranked = self.store.programs("ranked", order="fitness")
        return ranked[0].id if ranked else None

    @property
    def best(self) -> OptimizerProgram | None:
        pid = self.best_id
        return None if pid is None else self.program(pid)

    def program(self, program_id: int) -> OptimizerProgram:
        """Program `program_id` of the run, named NAME_ID as `runs/NAME#ID` is."""
        row = self.store.program(program_id)
        ref = f"{self.path}#{program_id}"
        name = f"{self.path.name}_{program_id}"
        parsed = parse_program(row.text, path=ref)
        return OptimizerProgram(replace(parsed, name=name if name.isidentifier() else f"program_{program_id}"), ref)

    def lineage(self, program_id: int | None = None) -> Records[LineageStep]:
        """The ancestors of `program_id` (default: the best), warm start first."""
        pid = self.best_id if program_id is None else program_id
        return Records() if pid is None else lineage(self.store, pid)

    def history(self) -> Records[HistoryPoint]:
        return history(self.store)

    def hall_of_fame(self, by: Front = "length") -> Records[HallEntry]:
        """The best program at each length (or, `by="state"`, each optimizer-state size) that beats
        every smaller one; `.to_frame()` for a DataFrame."""
        return hall_of_fame(self.store, by)


def open_run(path: str | Path) -> Run:
    """The run stored in `path` (a run directory such as `runs/quickstart`)."""
    return Run(path)


def evolve(config: str | Path | dict | RunConfig, run_dir: str | Path | None = None, *, resume: bool = False,
           max_evals: int | None = None, seconds: float | None = None, executor: str | None = None,
           workers: int | None = None, address: str | None = None, progress: ProgressArg = True) -> Run:
    """Run the search `config` describes (a YAML path, a dict as the YAML would load, or a
    `RunConfig`) in `run_dir` (default `runs/NAME`) and return the run. The keyword arguments
    override the config's budget and executor as the CLI's options do."""
    if isinstance(config, dict):
        config = parse_config(config, "<config dict>")
    elif not isinstance(config, RunConfig):
        config = load_config(config)
    config = with_overrides(config, max_evals, executor, workers, address, seconds)
    return _search(config, run_dir_for(config, run_dir), resume, progress)


def resume(run: Run | str | Path, *, max_evals: int | None = None, seconds: float | None = None,
           executor: str | None = None, workers: int | None = None, address: str | None = None,
           progress: ProgressArg = True) -> Run:
    """Continue a stopped, interrupted or killed run with its stored config (the budget and the
    executor may change). Given a `Run`, that object is brought up to date and returned."""
    path = run.path if isinstance(run, Run) else Path(run)
    config = with_overrides(stored_config(path), max_evals, executor, workers, address, seconds)
    if not isinstance(run, Run):
        return _search(config, path, True, progress)
    run.close()
    try:
        done = _search(config, path, True, progress)
    except BaseException:
        run._store = RunStore.open(path, readonly=True)    # the caller's run stays readable
        raise
    run._store, run.outcome, run.interrupted = done._store, done.outcome, done.interrupted
    return run


def _search(config: RunConfig, run_dir: Path, resume: bool, progress: ProgressArg) -> Run:
    bar = _ProgressBar(config) if progress is True else None
    report = bar.update if bar else (progress if callable(progress) else None)
    outcome, interrupted = None, False
    try:
        outcome, store = _evolve(config, run_dir, resume, None if report is None else lambda evo: report(evo.counters))
        store.close()
    except KeyboardInterrupt:
        if not (run_dir / "run.db").is_file():
            raise
        interrupted = True
        print(f"optsearch: interrupted; every finished evaluation is stored. Continue with "
              f"optsearch.resume(run) or `optsearch resume {run_dir}`", file=sys.stderr)
    except ExecutorLost as e:
        raise OptsearchError(f"{e}; every finished evaluation is stored. Continue with optsearch.resume(run) "
                             f"once Ray runs again") from None
    finally:
        if bar:
            bar.close()
    run = Run(run_dir)
    run.outcome, run.interrupted = outcome, interrupted
    return run


class _ProgressBar:
    """A tqdm bar over the evaluation budget (or open-ended), with the best fitness and cache hits;
    made at the first report, so that a resumed run's bar starts at the evaluations it has."""

    def __init__(self, config: RunConfig):
        self.config, self.bar = config, None

    def update(self, c: Counters) -> None:
        if self.bar is None:
            from tqdm.auto import tqdm
            self.bar = tqdm(total=self.config.search.evaluations, initial=c.evaluations, unit="eval",
                            desc=self.config.name, dynamic_ncols=True)
        if c.evaluations != self.bar.n:
            best = "-" if c.best_id is None else f"{c.best_fitness:+.4f} (#{c.best_id})"
            self.bar.set_postfix_str(f"best {best}, cache hits {c.cache_hits}", refresh=False)
            self.bar.update(c.evaluations - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


__all__ = ["OptimizerProgram", "Run", "evaluate", "evolve", "open_run", "optimizer", "program", "resume", "zoo"]
