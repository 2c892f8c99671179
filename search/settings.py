"""What a search needs to know, as typed values: the evolution's knobs, the evaluation, the budget.

`optsearch.config` builds these from a YAML file (validating every key); the search itself only
ever sees these frozen dataclasses, so a run is reproducible from what the run store keeps.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from optsearch.evaluators.fitness import DEFAULT_LR_MULTIPLIERS

# The mutations that move constants only: what a tuning child (`tune_share`) draws from.
CONSTANT_MUTATIONS: tuple[str, ...] = ("perturb_constant", "perturb_all")
# Mutation names and their default weights (see optsearch.search.mutate for what each does).
DEFAULT_MUTATION_WEIGHTS: dict[str, float] = {
    "insert": 1.0,            # a new statement over live values, spliced into one use
    "wrap": 1.5,              # x = op(x, ...) right after x is made; every later use reads the new x
    "delete": 1.0,            # drop a statement, its uses read one of its arguments
    "split": 1.0,             # copy a statement with one constant moved; part of its uses read the copy
    "change_arg": 1.0,        # one argument reads another value or a constant
    "change_op": 1.0,         # same arguments, another op of the same arity
    "perturb_constant": 2.0,  # a constant moves in log space (betas in log(1 - beta) space)
    "perturb_all": 1.0,       # every constant moves a little at once (coupled constants climb together)
    "add_state": 0.3,         # a new state: a moving average of a value, spliced into one use
    "swap": 1.0,              # two chained statements change order: sign(d + wd * w) -> sign(d) + wd * w
}


@dataclass(frozen=True)
class EvaluationSettings:
    """How each candidate is scored: tasks as `name/size`, seeds, the lr grid, a time limit."""

    tasks: tuple[str, ...] = ("imitate/small",)
    seeds: int = 1
    lr_multipliers: tuple[float, ...] = DEFAULT_LR_MULTIPLIERS
    time_limit: float | None = 300.0
    device: str = "cpu"
    subspace: tuple[int, str, int | None, float | None] | None = None  # (rank, projection, update_every, lr)


@dataclass(frozen=True)
class FunnelSettings:
    """Re-check promising programs where the search cannot see: larger sizes, held-out tasks.

    A program whose search fitness reaches `threshold` and is among the `top` best distinct
    programs found so far is evaluated again on `tasks` with `seeds` seeds; the run's winner is
    chosen on that fitness (the paper's funnel selection).
    """

    tasks: tuple[str, ...] = ("mlp/medium",)
    seeds: int = 2
    threshold: float = 0.0
    top: int = 5


@dataclass(frozen=True)
class Target:
    """A known program to look for: the search stops when a candidate matches it (see `matches`)."""

    program: str                      # zoo name or program file
    rel_tol: float = 0.01             # every constant within this fraction of the target's
    abs_tol: float = 0.0              # ... or within this absolute distance (for epsilons)


@dataclass(frozen=True)
class SearchSettings:
    """Regularized evolution's knobs and the run's budget."""

    seed: int = 0
    warm_start: str = "adamw"                        # zoo name or program file
    population: int = 64
    tournament: int = 8
    max_statements: int = 24
    restart_after: int | None = None                 # evaluations without improvement -> restart
    restart_min_gain: float = 0.0                    # ... where improving means by more than this
    restart_from: str = "best"                       # restart from the best so far or the warm start
    mutation_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_MUTATION_WEIGHTS))
    tune_share: float = 0.0                          # children that only move the population best's constants
    sweep_after: int | None = None                   # evaluations without progress (by restart_min_gain) -> try
                                                     # every single-edit neighbour of the population best
    ops: dict[str, float] | None = None              # ops mutations may introduce, weighted (None: all)
    length_penalty: float = 0.0                      # selection score -= this x live statements (parsimony)
    memory_penalty: float = 0.0                      # selection score -= this x optimizer state per parameter
    simplify_children: bool = True                   # exact rewrites (dead code, sign(x / positive), ...) first
    evaluations: int | None = 1000                   # budget: real evaluations (cache hits are free)
    seconds: float | None = None                     # budget: wall time of this process
    stop_fitness: float | None = None                # stop once a program reaches this fitness
    target: Target | None = None
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    funnel: FunnelSettings | None = None

    def __hash__(self) -> int:  # the dict field makes the generated hash fail; identity is enough
        return id(self)
