"""What a search needs to know, as typed values: the evolution's knobs, the evaluation, the budget.

Each YAML section of a run config maps onto one frozen dataclass here, and each field declares its
default and its check once (`optsearch.search.checks.setting`): `search:` is `EvolutionSettings`,
`budget:` is `BudgetSettings`, `evaluation:` is `EvaluationSettings` (its `subspace:` the
evaluators' `SubspaceOptions`), `funnel:` is `FunnelSettings`, `budget.target` is `Target`.
`roles:` is `RoleSettings`. `SearchSettings`, what the search reads, is the first two plus the
top-level `seed`, `warm_start`, `evaluation`, `funnel` and `roles`. `optsearch.config` reads a YAML
file into these; the search itself only ever sees the frozen dataclasses, so a run is reproducible
from what the run store keeps.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass

from optsearch.dsl.roles import DEFAULT, ROLES
from optsearch.dsl.subspace import PROJECTIONS
from optsearch.evaluators.executor import SubspaceOptions
from optsearch.evaluators.fitness import DEFAULT_LR_MULTIPLIERS
from optsearch.proxy_tasks import TASKS
from optsearch.search.checks import (
    SettingError, Where, candidate_spec, flag, integer, number, numbers, program_spec, read_section, section, setting, show, text,
    unknown_key,
)

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


# Sizes beyond what the engine can run. A population is filled with copies of the warm start and
# scanned at every evaluation (100,000 fills in seconds; 300,000 did not fill in two minutes), and
# every seed is one more model copy trained at once in each evaluation.
MAX_POPULATION = 100_000
MAX_SEEDS = 1_000


def task_spec(spec: str) -> str:
    """`name/size` as a config or the command line gives it, checked against the task registry
    (the size defaults to small); `ValueError` says what is wrong."""
    name, _, size = spec.partition("/")
    size = size or "small"
    if name not in TASKS:
        close = difflib.get_close_matches(name, list(TASKS), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ValueError(f"unknown task '{name}'{hint}; tasks: {', '.join(TASKS)}")
    if size not in TASKS[name].sizes:
        raise ValueError(f"task '{name}' has sizes {', '.join(TASKS[name].sizes)}, got '{size}'")
    return f"{name}/{size}"


def _tasks(v, where: Where) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v:
        raise where.fail(f"must be a list of tasks such as [imitate/small], got {show(v)}")
    out = []
    for k, t in enumerate(v):
        try:
            out.append(task_spec(text()(t, where / k)))
        except ValueError as e:
            if isinstance(e, SettingError):
                raise
            raise (where / k).fail(str(e)) from None
    return tuple(out)


def _mutations(v, where: Where) -> dict[str, float]:
    if not isinstance(v, dict):
        raise where.fail(f"must be a mapping of mutation name to weight, got {show(v)}")
    weights = dict(DEFAULT_MUTATION_WEIGHTS)
    for k, x in v.items():
        if k not in weights:
            raise (where / k).fail(unknown_key(k, weights))
        weights[k] = number(0)(x, where / k)
    if not any(weights.values()):
        raise where.fail("at least one mutation needs a weight > 0")
    return weights


def _ops(v, where: Where) -> dict[str, float] | None:
    """`[sign, sqrt, ...]` (equal weights) or `{sign: 2, sqrt: 1}`; null means every registered op."""
    from optsearch.dsl import OPS
    if v is None:
        return None
    listed = isinstance(v, list)
    if listed:
        v = dict.fromkeys(v, 1.0)
    if not isinstance(v, dict) or not v:
        raise where.fail(f"must be a list of op names or a mapping of op name to weight, got {show(v)}")
    out = {}
    for k, (name, weight) in enumerate(v.items()):
        w = where / (k if listed else name)
        if not isinstance(name, str) or name not in OPS:
            close = difflib.get_close_matches(str(name), list(OPS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise w.fail(f"unknown op {show(name)}{hint}; `optsearch ops` lists them")
        out[name] = number(0)(weight, w)
    if not any(out.values()):
        raise where.fail("at least one op needs a weight > 0")
    return out


_SUBSPACE_CHECKS = {"rank": integer(0), "projection": text(PROJECTIONS), "update_every": integer(1, optional=True),
                    "lr": number(0, optional=True, open_lo=True)}


def _subspace(v, where: Where) -> SubspaceOptions | None:
    """`{rank: 8, projection: online, update_every: 200, lr: 0.005}`: every candidate runs in a
    low-rank subspace (optsearch.dsl.subspace); null or rank 0: the plain program."""
    if v is None:
        return None
    options = SubspaceOptions(**read_section(SubspaceOptions, v, where, _SUBSPACE_CHECKS))
    return options if options.rank else None


def _target(v, where: Where) -> Target | None:
    if v is None:
        return None
    if isinstance(v, str):
        v = {"program": v}
    kwargs = read_section(Target, v, where)
    if "program" not in kwargs:
        raise (where / "program").fail("is required (a zoo name or a program file)")
    return Target(**kwargs)


@dataclass(frozen=True)
class Target:
    """A known program to look for: the search stops when a candidate matches it (see `matches`)."""

    program: str = setting(check=program_spec)           # zoo name or program file
    rel_tol: float = setting(0.01, number(0))         # every constant within this fraction of the target's
    abs_tol: float = setting(0.0, number(0))          # ... or within this absolute distance (for epsilons)


def _evolved_roles(v, where: Where) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v:
        raise where.fail(f"must be a list of roles such as [hidden], got {show(v)}")
    out = []
    for k, r in enumerate(v):
        out.append(_role(r, where / k, ROLES))
    if len(set(out)) < len(out):
        raise where.fail(f"lists a role twice: {show(v)}")
    return tuple(out)


def _fixed_roles(v, where: Where) -> dict[str, str]:
    if not isinstance(v, dict) or not v:
        raise where.fail(f"must map roles to programs, such as {{default: adamw}}, got {show(v)}")
    return {_role(k, where / k, (*ROLES, DEFAULT)): program_spec(spec, where / k) for k, spec in v.items()}


def _role(v, where: Where, known: tuple[str, ...]) -> str:
    if not isinstance(v, str) or v not in known:
        close = difflib.get_close_matches(str(v), list(known), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise where.fail(f"unknown role {show(v)}{hint}; roles: {', '.join(known)}")
    return v


@dataclass(frozen=True)
class RoleSettings:
    """One program per parameter role (`roles:`): the search evolves the program of the roles in
    `evolve`; every other role is stepped by a fixed program (`fixed`: role, or "default" for every
    role not listed, to a zoo name or program file). Mutation only ever edits the evolved program."""

    evolve: tuple[str, ...] = setting(("hidden",), _evolved_roles)
    fixed: dict[str, str] = setting(check=_fixed_roles, factory=lambda: {DEFAULT: "adamw"})

    def __post_init__(self):
        both = [r for r in self.evolve if r in self.fixed]
        if both:
            raise SettingError(("roles", "fixed", both[0]), f"role '{both[0]}' is also in roles.evolve")
        missing = [r for r in ROLES if r not in self.evolve and r not in self.fixed]
        if missing and DEFAULT not in self.fixed:
            raise SettingError(("roles", "fixed"), f"no program for the role{'s' * (len(missing) > 1)} "
                               f"{', '.join(missing)}: list them, or add `default: adamw`")

    def __hash__(self) -> int:  # the dict field makes the generated hash fail; identity is enough
        return id(self)


@dataclass(frozen=True)
class CascadeSettings:
    """Train every candidate on the first `fraction` of each task's budget first (`evaluation.cascade`);
    only one whose stage-1 fitness is within `margin` of the stage-1 fitness of the run's best
    program (by full fitness) trains the full budget. Stage 1 compresses the schedule (warmup and
    cosine end within the fraction), so it ends annealed as the full run does
    (`evaluators.evaluate.shortened`)."""

    fraction: float = setting(0.25, number(0, 1, open_lo=True))
    margin: float = setting(0.1, number(0))

    def __post_init__(self):
        if self.fraction >= 1:
            raise SettingError(("evaluation", "cascade", "fraction"),
                               f"must be < 1 (1 is no cascade: set `cascade: null`), got {self.fraction:g}")


@dataclass(frozen=True)
class PromotionSettings:
    """Re-evaluate a would-be best on `seeds` new seeds before it becomes the run's best
    (`search.promotion`); it is promoted only if its mean fitness beats the incumbent's mean by more
    than the standard error of the difference."""

    seeds: int = setting(3, integer(2, MAX_SEEDS))


@dataclass(frozen=True)
class EvaluationSettings:
    """How each candidate is scored (`evaluation:`): tasks as `name/size`, seeds, the lr grid, a time
    limit, the device, and optionally a low-rank subspace every candidate runs in."""

    tasks: tuple[str, ...] = setting(("imitate/small",), _tasks)
    seeds: int = setting(1, integer(1, MAX_SEEDS))
    lr_multipliers: tuple[float, ...] = setting(DEFAULT_LR_MULTIPLIERS, numbers(0, open_lo=True))
    time_limit: float | None = setting(300.0, number(0, optional=True, open_lo=True))
    device: str = setting("cpu", text(("cpu", "cuda", "auto")))
    subspace: SubspaceOptions | None = setting(None, _subspace)
    cascade: CascadeSettings | None = setting(None, section(CascadeSettings, optional=True))  # None: one stage


@dataclass(frozen=True)
class FunnelSettings:
    """Re-check promising programs where the search cannot see (`funnel:`): larger sizes, held-out tasks.

    A program whose search fitness reaches `threshold` and is among the `top` best distinct
    programs found so far is evaluated again on `tasks` with `seeds` seeds; the run's winner is
    chosen on that fitness (the paper's funnel selection).
    """

    tasks: tuple[str, ...] = setting(("mlp/medium",), _tasks)
    seeds: int = setting(2, integer(1, MAX_SEEDS))
    threshold: float = setting(0.0, number())
    top: int = setting(5, integer(1))


@dataclass(frozen=True)
class IslandSettings:
    """Islands with migration (`search.islands`), as PySR and FunSearch keep them: the population
    (`search.population`, the total) is split into `count` islands of equal size that evolve apart,
    each with its own tournaments, ageing and restarts, so one lineage cannot take over the whole
    population; every `migrate_every` evaluations the `migrants` best of each island are copied into
    the next island of the ring (the oldest there leave)."""

    count: int = setting(1, integer(1))
    migrate_every: int = setting(200, integer(1))
    migrants: int = setting(1, integer(1))


@dataclass(frozen=True)
class EvolutionSettings:
    """Regularized evolution's knobs (`search:`)."""

    population: int = setting(64, integer(2, MAX_POPULATION))
    tournament: int = setting(8, integer(1))
    max_statements: int = setting(24, integer(1))
    # evaluations without improvement -> restart, where improving means by more than restart_min_gain
    restart_after: int | None = setting(None, integer(1, optional=True))
    restart_min_gain: float = setting(0.0, number(0))
    restart_from: str = setting("best", text(("best", "warm_start")))  # the best so far or the warm start
    mutation_weights: dict[str, float] = setting(check=_mutations, key="mutations",
                                                 factory=lambda: dict(DEFAULT_MUTATION_WEIGHTS))
    ops: dict[str, float] | None = setting(None, _ops)      # ops mutations may introduce, weighted (None: all)
    length_penalty: float = setting(0.0, number(0))        # selection score -= this x live statements (parsimony)
    memory_penalty: float = setting(0.0, number(0))        # selection score -= this x optimizer state per parameter
    simplify_children: bool = setting(True, flag)          # exact rewrites (dead code, sign(x / positive), ...) first
    tune_share: float = setting(0.0, number(0, 1))         # children that only move the population best's constants
    # evaluations without progress (by restart_min_gain) -> try every single-edit neighbour of the population best
    sweep_after: int | None = setting(None, integer(1, optional=True))
    promotion: PromotionSettings | None = setting(None, section(PromotionSettings, optional=True))  # None: 1 seed
    islands: IslandSettings | None = setting(None, section(IslandSettings, optional=True))  # None: one population

    def __hash__(self) -> int:  # the dict fields make the generated hash fail; identity is enough
        return id(self)


@dataclass(frozen=True)
class BudgetSettings:
    """When a search stops (`budget:`): whichever limit is reached first."""

    # full-budget evaluations (cache hits, a cascade's stage 1 and promotion re-checks are not counted)
    evaluations: int | None = setting(1000, integer(1, optional=True))
    seconds: float | None = setting(None, number(0, optional=True, open_lo=True))  # wall time of this process
    stop_fitness: float | None = setting(None, number(optional=True))              # a program reaches this fitness
    target: Target | None = setting(None, _target)                                 # a program matches the target


@dataclass(frozen=True)
class SearchSettings(EvolutionSettings, BudgetSettings):
    """Everything a search reads: the `search:` and `budget:` sections (inherited fields), and the
    config's top-level `seed`, `warm_start`, `evaluation`, `funnel` and `roles`."""

    seed: int = setting(0, integer(0))
    warm_start: str = setting("adamw", candidate_spec)  # zoo name or file: a program, or with roles a role candidate
    evaluation: EvaluationSettings = setting(check=section(EvaluationSettings), factory=EvaluationSettings)
    funnel: FunnelSettings | None = setting(None, section(FunnelSettings, optional=True))
    roles: RoleSettings | None = setting(None, section(RoleSettings, optional=True))  # None: one program

    def __post_init__(self):
        if self.tournament > self.population:
            raise SettingError(("search", "tournament"),
                               f"must be <= search.population ({self.population}), got {self.tournament}")
        self._check_islands()
        if self.evaluations is None and self.seconds is None and self.stop_fitness is None and self.target is None:
            raise SettingError(("budget",), "needs a limit: evaluations, seconds, stop_fitness or target")

    def _check_islands(self) -> None:
        i = self.islands
        if i is None or i.count == 1:
            return
        where = ("search", "islands")
        if self.population % i.count:
            raise SettingError((*where, "count"), f"must divide search.population ({self.population}) into equal "
                                                  f"islands, got {i.count}")
        size = self.population // i.count
        if size < 2:
            raise SettingError((*where, "count"), f"leaves islands of {size} member (search.population "
                                                  f"{self.population} is the total): at most {self.population // 2}")
        if self.tournament > size:
            raise SettingError(("search", "tournament"), f"must be <= the island size (search.population "
                                                         f"{self.population} / {i.count} islands = {size}), "
                                                         f"got {self.tournament}")
        if i.migrants >= size:
            raise SettingError((*where, "migrants"), f"must be < the island size ({size}), got {i.migrants}")

    def __hash__(self) -> int:
        return id(self)
