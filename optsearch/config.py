"""Run configs: a YAML file -> a typed, validated `RunConfig`.

Each section of the file maps onto one frozen dataclass (see `optsearch.search.settings`; the
`executor:` section is `ExecutorSettings` below), whose fields hold the defaults and the checks.
An unknown key or a bad value is one `ConfigError` naming the file, the line and the key's path
(`search.population: must be an integer >= 2, got 'many'`), so a run never starts on a typo. The
resolved config (every default filled in, `RunConfig.raw`) is derived from the dataclasses; it is
what the run store keeps, so `optsearch resume` needs nothing but the run directory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from optsearch.dsl import OptsearchError
from optsearch.search.checks import (
    SettingError, Where, integer, number, plain, read_section, section_data, setting, show, text, unknown_key,
)
from optsearch.search.settings import BudgetSettings, EvolutionSettings, SearchSettings, task_spec


class ConfigError(OptsearchError):
    """A config that cannot be used; the message names the file, line and key."""


@dataclass(frozen=True)
class ExecutorSettings:
    """Where evaluations run (`executor:`): `inline` (this process) or `ray` (local instance or a cluster)."""

    kind: str = setting("ray", text(("inline", "ray")))
    workers: int | None = setting(None, integer(1, 10_000, optional=True))  # default: the machine's cores (ray)
    address: str | None = setting(None, text(optional=True))        # ray: None starts a local instance;
                                                                    # "auto" or HOST:PORT joins a cluster
    gpus_per_worker: float = setting(0.0, number(0))
    threads_per_worker: int = setting(1, integer(1, 1024))
    max_retries: int = setting(2, integer(0))
    eval_timeout: float | None = setting(None, number(0, optional=True, open_lo=True))  # hard limit per evaluation
                                                                                         # (ray kills the worker)


# The top-level keys, in the order the resolved config is written.
TOP_KEYS = ("name", "seed", "warm_start", "search", "evaluation", "budget", "executor", "funnel", "roles")


@dataclass(frozen=True)
class RunConfig:
    name: str
    search: SearchSettings
    executor: ExecutorSettings
    source: str = "<config>"

    def __hash__(self) -> int:
        return id(self)

    @property
    def raw(self) -> dict:
        """The resolved config as plain data, one key per YAML key: what the run store keeps."""
        s = self.search
        return {"name": self.name, "seed": s.seed, "warm_start": s.warm_start,
                "search": section_data(s, EvolutionSettings), "evaluation": plain(s.evaluation),
                "budget": section_data(s, BudgetSettings), "executor": plain(self.executor), "funnel": plain(s.funnel),
                **({"roles": plain(s.roles)} if s.roles is not None else {})}


def parse_config(data: Any, source: str = "<config>", lines: dict[tuple, int] | None = None,
                 default_name: str = "run") -> RunConfig:
    """Validate a config mapping (as loaded from YAML) and build the typed `RunConfig`."""
    base = Path(source).parent
    where = Where(program=lambda spec: _program(spec, base), candidate=lambda spec: _program(spec, base, True))
    try:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise where.fail(f"must be a mapping, got {show(data)}")
        for k in data:
            if k not in TOP_KEYS:
                raise (where / k).fail(unknown_key(k, TOP_KEYS))
        name = _run_name(default_name if data.get("name") is None else data["name"], where / "name")
        top = read_section(SearchSettings, {k: data[k] for k in ("seed", "warm_start", "evaluation", "funnel", "roles")
                                            if k in data}, where)
        search = SearchSettings(**read_section(EvolutionSettings, data.get("search"), where / "search"),
                                **read_section(BudgetSettings, data.get("budget"), where / "budget"), **top)
        executor = ExecutorSettings(**read_section(ExecutorSettings, data.get("executor"), where / "executor"))
    except SettingError as e:
        line, p = None, e.path
        while line is None and p:
            line, p = (lines or {}).get(p), p[:-1]
        raise ConfigError(f"{source}:{line or 1}: {e}") from None
    return RunConfig(name, search, executor, source)


def _run_name(v: Any, where: Where) -> str:
    """The run's name: its directory is `runs/NAME`, so a name stays inside `runs/` (folders
    such as `ablation/seed_1` group runs; `/abs`, `..`, `.` and empty parts would leave it)."""
    name = text()(v, where)
    if name.startswith("/") or any(part in ("", ".", "..") for part in name.split("/")) or "\0" in name:
        raise where.fail(f"must be a run name (its directory is runs/NAME: no leading '/', no '.' or '..' "
                         f"parts), got {show(name)}")
    return name


def _program(spec: str, base: Path, candidate: bool = False) -> str:
    """A warm start or target as the run will read it: a zoo name, or a file (next to the config
    when it is not found from here); `ValueError` when it names neither. With `candidate`, a role
    candidate is accepted too."""
    from optsearch.programs import resolve_candidate, resolve_program  # the CLI's PROGRAM rules
    if not Path(spec).is_file() and (base / spec).is_file():
        spec = str(base / spec)
    try:
        (resolve_candidate if candidate else resolve_program)(spec)
    except OptsearchError as e:
        raise ValueError(str(e)) from None
    return spec


def load_config(path: str | Path) -> RunConfig:
    """Read and validate a YAML run config; the run's default name is the file's stem."""
    path = Path(path)
    try:
        content = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read the config: {getattr(e, 'strerror', None) or e}") from None
    data, lines = _load_yaml(content, str(path))
    if data is None:
        raise ConfigError(f"{path}: the config is empty (a truncated copy?); a config needs at least a budget, "
                          f"e.g. `budget: {{evaluations: 100}}`")
    return parse_config(data, str(path), lines, default_name=path.stem)


# Values a config may hold once its aliases are expanded: real configs hold a few hundred, while
# nested aliases (`&a [...]`, `[*a, *a, ...]`, nine deep) can stand for billions in a few lines.
MAX_YAML_VALUES = 10_000


def _load_yaml(text: str, source: str) -> tuple[Any, dict[tuple, int]]:
    """The YAML document as Python values, plus the line of every key path."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is not None:
            _count_values(node, source)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 1
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}:{line}: not valid YAML: {problem}") from None
    except RecursionError:
        raise ConfigError(f"{source}:1: not a config: values nested too deeply") from None
    finally:
        loader.dispose()
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


def _count_values(root: yaml.Node, source: str) -> int:
    """How many values the document holds with every alias expanded, counted without expanding
    them (each node once); a `ConfigError` beyond `MAX_YAML_VALUES` or for an alias inside itself."""
    counts: dict[int, int | None] = {}   # node id -> values under it; None while it is being counted

    def count(n: yaml.Node) -> int:
        if id(n) in counts:
            if counts[id(n)] is None:
                raise ConfigError(f"{source}:{n.start_mark.line + 1}: an alias refers to a value that contains it")
            return counts[id(n)]
        counts[id(n)] = None
        children = ([x for pair in n.value for x in pair] if isinstance(n, yaml.MappingNode)
                    else n.value if isinstance(n, yaml.SequenceNode) else [])
        total = 1
        for child in children:
            total += count(child)
            if total > MAX_YAML_VALUES:
                raise ConfigError(f"{source}:{n.start_mark.line + 1}: more than {MAX_YAML_VALUES:,} values once "
                                  f"its aliases are expanded; write the values out instead of nesting aliases")
        counts[id(n)] = total
        return total

    return count(root)


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML (what the run store keeps and `optsearch show` prints)."""
    return yaml.safe_dump(config.raw, sort_keys=False)


__all__ = ["ConfigError", "ExecutorSettings", "RunConfig", "dump_config", "load_config", "parse_config", "task_spec"]
