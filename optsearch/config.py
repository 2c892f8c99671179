"""Run configs: a YAML file -> a typed, validated `RunConfig`.

Every key is checked up front against the schema below; an unknown key or a bad value is one
`ConfigError` naming the file, the line and the key's path (`search.population: must be an
integer >= 2, got 'many'`), so a run never starts on a typo. Missing keys take the defaults of
`optsearch.search.settings`. The resolved config (every default filled in) is what the run store
keeps, so `optsearch resume` needs nothing but the run directory.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from optsearch.dsl import OptsearchError
from optsearch.proxy_tasks import TASKS
from optsearch.search.settings import (
    DEFAULT_MUTATION_WEIGHTS, EvaluationSettings, FunnelSettings, SearchSettings, Target,
)
from optsearch.evaluators.fitness import DEFAULT_LR_MULTIPLIERS


class ConfigError(OptsearchError):
    """A config that cannot be used; the message names the file, line and key."""


@dataclass(frozen=True)
class ExecutorSettings:
    """Where evaluations run: `inline` (this process) or `ray` (local instance or a cluster)."""

    kind: str = "ray"
    workers: int | None = None              # default: the machine's cores (ray) / 1 (inline)
    address: str | None = None              # ray: None starts a local instance; "auto" or HOST:PORT joins
    gpus_per_worker: float = 0.0
    threads_per_worker: int = 1
    max_retries: int = 2
    eval_timeout: float | None = None       # hard limit per evaluation (ray kills the worker)


@dataclass(frozen=True)
class RunConfig:
    name: str
    search: SearchSettings
    executor: ExecutorSettings
    source: str = "<config>"
    raw: dict = field(default_factory=dict, compare=False)   # the resolved config, as stored

    def __hash__(self) -> int:
        return id(self)


# --- validators: each takes (value, where) and returns the clean value or raises via `where` ----

class _Where:
    """The file, line and key path of a value, for error messages."""

    def __init__(self, source: str, lines: dict[tuple, int], path: tuple = ()):
        self.source, self.lines, self.path = source, lines, path

    def __truediv__(self, key) -> "_Where":
        return _Where(self.source, self.lines, self.path + (key,))

    def fail(self, message: str) -> ConfigError:
        line, p = None, self.path
        while line is None and p:
            line, p = self.lines.get(p), p[:-1]
        key = ".".join(str(k) for k in self.path) or "config"
        return ConfigError(f"{self.source}:{line or 1}: {key}: {message}")


def _show(v: Any) -> str:
    return repr(v) if not isinstance(v, str) else f"'{v}'"


def _int(lo: int | None = None, optional: bool = False) -> Callable:
    def check(v, where: _Where):
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo):
            bound = f" >= {lo}" if lo is not None else ""
            raise where.fail(f"must be an integer{bound}{' or null' if optional else ''}, got {_show(v)}")
        return v
    return check


def _float(lo: float | None = None, hi: float | None = None, optional: bool = False, open_lo: bool = False) -> Callable:
    def check(v, where: _Where):
        if v is None and optional:
            return None
        if isinstance(v, str):  # YAML 1.1 reads `1e-3` (no dot) as a string
            try:
                v = float(v)
            except ValueError:
                pass
        ok = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
        ok = ok and (lo is None or (v > lo if open_lo else v >= lo)) and (hi is None or v <= hi)
        if not ok:
            rng = "".join([f" {'>' if open_lo else '>='} {lo:g}" if lo is not None else "",
                           f" and <= {hi:g}" if hi is not None else ""])
            raise where.fail(f"must be a number{rng}{' or null' if optional else ''}, got {_show(v)}")
        return float(v)
    return check


def _bool(v, where: _Where) -> bool:
    if not isinstance(v, bool):
        raise where.fail(f"must be true or false, got {_show(v)}")
    return v


def _str(choices: tuple[str, ...] | None = None, optional: bool = False) -> Callable:
    def check(v, where: _Where):
        if v is None and optional:
            return None
        if not isinstance(v, str) or not v or (choices and v not in choices):
            want = f"one of {', '.join(choices)}" if choices else "a non-empty string"
            raise where.fail(f"must be {want}, got {_show(v)}")
        return v
    return check


def _program(v, where: _Where):
    from optsearch.programs import resolve_program  # the CLI's PROGRAM rules: file or zoo name
    v = _str()(v, where)
    base = Path(where.source).parent
    spec = v if Path(v).is_file() or not (base / v).is_file() else str(base / v)
    try:
        resolve_program(spec)
    except OptsearchError as e:
        raise where.fail(str(e)) from None
    return spec


def _tasks(v, where: _Where):
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v:
        raise where.fail(f"must be a list of tasks such as [imitate/small], got {_show(v)}")
    out = []
    for k, t in enumerate(v):
        w = where / k
        try:
            out.append(task_spec(_str()(t, w)))
        except ValueError as e:
            raise w.fail(str(e)) from None
    return tuple(out)


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


def _floats(v, where: _Where):
    if not isinstance(v, list) or not v:
        raise where.fail(f"must be a non-empty list of numbers, got {_show(v)}")
    return tuple(_float(0, open_lo=True)(x, where / k) for k, x in enumerate(v))


def _mutations(v, where: _Where):
    if not isinstance(v, dict):
        raise where.fail(f"must be a mapping of mutation name to weight, got {_show(v)}")
    weights = dict(DEFAULT_MUTATION_WEIGHTS)
    for k, x in v.items():
        if k not in weights:
            raise (where / k).fail(_unknown(k, weights))
        weights[k] = _float(0)(x, where / k)
    if not any(weights.values()):
        raise where.fail("at least one mutation needs a weight > 0")
    return weights


def _ops(v, where: _Where):
    """`[sign, sqrt, ...]` (equal weights) or `{sign: 2, sqrt: 1}`; null means every registered op."""
    from optsearch.dsl import OPS
    if v is None:
        return None
    if isinstance(v, list):
        v = dict.fromkeys(v, 1.0)
    if not isinstance(v, dict) or not v:
        raise where.fail(f"must be a list of op names or a mapping of op name to weight, got {_show(v)}")
    out = {}
    for k, (name, weight) in enumerate(v.items()):
        w = where / (name if isinstance(where.lines.get(where.path + (name,)), int) else k)
        if not isinstance(name, str) or name not in OPS:
            close = difflib.get_close_matches(str(name), list(OPS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise w.fail(f"unknown op {_show(name)}{hint}; `optsearch ops` lists them")
        out[name] = _float(0)(weight, w)
    if not any(out.values()):
        raise where.fail("at least one op needs a weight > 0")
    return out


def _subspace(v, where: _Where):
    """`{rank: 8, projection: online, update_every: 200, lr: 0.005}`: every candidate runs in a
    low-rank subspace (optsearch.dsl.subspace); null or rank 0: the plain program."""
    if v is None:
        return None
    clean = _section(v, where, {"rank": (_int(0), 0), "projection": (_str(("online", "svd")), "online"),
                                "update_every": (_int(1, optional=True), None),
                                "lr": (_float(0, optional=True, open_lo=True), None)})
    if clean["rank"] == 0:
        return None
    return (clean["rank"], clean["projection"], clean["update_every"], clean["lr"])


def _target(v, where: _Where):
    if v is None:
        return None
    if isinstance(v, str):
        v = {"program": v}
    clean = _section(v, where, {"program": (_program, None), "rel_tol": (_float(0), 0.01),
                                "abs_tol": (_float(0), 0.0)})
    if clean["program"] is None:
        raise (where / "program").fail("is required (a zoo name or a program file)")
    return Target(**clean)


def _unknown(key, known) -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key{hint}; known keys: {', '.join(known)}"


def _section(v, where: _Where, schema: dict[str, tuple[Callable, Any]]) -> dict:
    if v is None:
        v = {}
    if not isinstance(v, dict):
        raise where.fail(f"must be a mapping, got {_show(v)}")
    for k in v:
        if k not in schema:
            raise (where / k).fail(_unknown(k, schema))
    return {k: (check(v[k], where / k) if k in v else default) for k, (check, default) in schema.items()}


_SEARCH = {
    "population": (_int(2), 64), "tournament": (_int(1), 8), "max_statements": (_int(1), 24),
    "restart_after": (_int(1, optional=True), None), "restart_min_gain": (_float(0), 0.0),
    "restart_from": (_str(("best", "warm_start")), "best"), "mutations": (_mutations, dict(DEFAULT_MUTATION_WEIGHTS)),
    "ops": (_ops, None), "length_penalty": (_float(0), 0.0), "memory_penalty": (_float(0), 0.0),
    "simplify_children": (_bool, True), "tune_share": (_float(0, 1), 0.0),
    "sweep_after": (_int(1, optional=True), None),
}
_EVALUATION = {
    "tasks": (_tasks, ("imitate/small",)), "seeds": (_int(1), 1),
    "lr_multipliers": (_floats, DEFAULT_LR_MULTIPLIERS), "time_limit": (_float(0, optional=True, open_lo=True), 300.0),
    "device": (_str(("cpu", "cuda", "auto")), "cpu"), "subspace": (_subspace, None),
}
_BUDGET = {
    "evaluations": (_int(1, optional=True), 1000), "seconds": (_float(0, optional=True, open_lo=True), None),
    "stop_fitness": (_float(optional=True), None), "target": (_target, None),
}
_EXECUTOR = {
    "kind": (_str(("inline", "ray")), "ray"), "workers": (_int(1, optional=True), None),
    "address": (_str(optional=True), None), "gpus_per_worker": (_float(0), 0.0),
    "threads_per_worker": (_int(1), 1), "max_retries": (_int(0), 2),
    "eval_timeout": (_float(0, optional=True, open_lo=True), None),
}
_FUNNEL = {
    "tasks": (_tasks, ("mlp/medium",)), "seeds": (_int(1), 2), "threshold": (_float(), 0.0), "top": (_int(1), 5),
}
_TOP = {
    "name": (_str(optional=True), None), "seed": (_int(0), 0), "warm_start": (_program, "adamw"),
    "search": (lambda v, w: _section(v, w, _SEARCH), None), "evaluation": (lambda v, w: _section(v, w, _EVALUATION), None),
    "budget": (lambda v, w: _section(v, w, _BUDGET), None), "executor": (lambda v, w: _section(v, w, _EXECUTOR), None),
    "funnel": (lambda v, w: None if v is None else _section(v, w, _FUNNEL), None),
}


def parse_config(data: Any, source: str = "<config>", lines: dict[tuple, int] | None = None,
                 default_name: str = "run") -> RunConfig:
    """Validate a config mapping (as loaded from YAML) and build the typed `RunConfig`."""
    where = _Where(source, lines or {})
    top = _section(data, where, _TOP)
    for k in ("search", "evaluation", "budget", "executor"):
        if top[k] is None:
            top[k] = _section({}, where / k, _TOP_SECTIONS[k])
    s, e, b, x, f = top["search"], top["evaluation"], top["budget"], top["executor"], top["funnel"]
    if s["tournament"] > s["population"]:
        raise (where / "search" / "tournament").fail(
            f"must be <= search.population ({s['population']}), got {s['tournament']}")
    if b["evaluations"] is None and b["seconds"] is None and b["stop_fitness"] is None and b["target"] is None:
        raise (where / "budget").fail("needs a limit: evaluations, seconds, stop_fitness or target")
    settings = SearchSettings(
        seed=top["seed"], warm_start=top["warm_start"], population=s["population"], tournament=s["tournament"],
        max_statements=s["max_statements"], restart_after=s["restart_after"],
        restart_min_gain=s["restart_min_gain"], restart_from=s["restart_from"], mutation_weights=s["mutations"],
        tune_share=s["tune_share"], sweep_after=s["sweep_after"],
        ops=s["ops"], length_penalty=s["length_penalty"], memory_penalty=s["memory_penalty"],
        simplify_children=s["simplify_children"], evaluations=b["evaluations"], seconds=b["seconds"],
        stop_fitness=b["stop_fitness"], target=b["target"],
        evaluation=EvaluationSettings(tasks=e["tasks"], seeds=e["seeds"], lr_multipliers=e["lr_multipliers"],
                                      time_limit=e["time_limit"], device=e["device"], subspace=e["subspace"]),
        funnel=None if f is None else FunnelSettings(tuple(f["tasks"]), f["seeds"], f["threshold"], f["top"]))
    raw = {"name": top["name"] or default_name, "seed": top["seed"], "warm_start": top["warm_start"],
           "search": s, "evaluation": {**e, "tasks": list(e["tasks"]), "lr_multipliers": list(e["lr_multipliers"]),
                                       "subspace": None if e["subspace"] is None else dict(
                                           zip(("rank", "projection", "update_every", "lr"), e["subspace"]))},
           "budget": {**b, "target": None if b["target"] is None else vars(b["target"])}, "executor": x,
           "funnel": None if f is None else {**f, "tasks": list(f["tasks"])}}
    return RunConfig(raw["name"], settings, ExecutorSettings(**x), source, raw)


_TOP_SECTIONS = {"search": _SEARCH, "evaluation": _EVALUATION, "budget": _BUDGET, "executor": _EXECUTOR}


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run config; the run's default name is the file's stem."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config: {getattr(e, 'strerror', None) or e}") from None
    data, lines = _load_yaml(text, str(path))
    return parse_config(data, str(path), lines, default_name=path.stem)


def _load_yaml(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    """The YAML document as Python values, plus the line of every key path."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}:{line}: not valid YAML: {problem}") from None
    lines: dict[tuple, int] = {}

    def walk(n, path: tuple) -> None:
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = path + (k.value,)
                lines[key] = k.start_mark.line + 1
                walk(v, key)
        elif isinstance(n, yaml.SequenceNode):
            for i, v in enumerate(n.value):
                lines[path + (i,)] = v.start_mark.line + 1
                walk(v, path + (i,))

    if node is not None:
        walk(node, ())
    return data, lines


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML (what the run store keeps and `optsearch show` prints)."""
    return yaml.safe_dump(config.raw, sort_keys=False)


__all__ = ["ConfigError", "ExecutorSettings", "RunConfig", "dump_config", "load_config", "parse_config"]
