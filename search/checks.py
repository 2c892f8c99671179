"""Settings as plain data: each YAML section maps onto one frozen dataclass, and each field declares
its default and its check in one place (`setting(default, check)`).

`read_section(cls, data, where)` turns a mapping (as loaded from YAML) into the keyword arguments
of `cls`, checking every key; a missing key takes the field's default. `section_data(obj)` is the
way back: the plain form of a section, which is what a run store keeps. A check takes a value and
a `Where` (the key path) and returns the clean value or raises `where.fail(message)`, a
`SettingError` that `optsearch.config` turns into a line naming the file and the line.
"""
from __future__ import annotations

import difflib
import math
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass, replace
from typing import Any, Callable

Check = Callable[[Any, "Where"], Any]


class SettingError(ValueError):
    """A bad setting: the key path where it was found, and what is wrong with it."""

    def __init__(self, path: tuple, message: str):
        super().__init__(f"{'.'.join(str(k) for k in path) or 'config'}: {message}")
        self.path, self.message = path, message


@dataclass(frozen=True)
class Where:
    """The key path of a value being checked; `program` checks a program spec (a zoo name or file)
    and returns it as the run will read it (the config layer resolves files next to the config);
    `candidate` does the same for a spec that may also name a role candidate."""

    path: tuple = ()
    program: Callable[[str], str] = str
    candidate: Callable[[str], str] = str

    def __truediv__(self, key) -> "Where":
        return replace(self, path=self.path + (key,))

    def fail(self, message: str) -> SettingError:
        return SettingError(self.path, message)


def setting(default: Any = MISSING, check: Check | None = None, *, key: str | None = None,
            factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field read from a config: its default, its check and (when it differs from the
    field's name) its YAML key."""
    meta = {"check": check, "key": key}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def section_fields(cls: type) -> list[Field]:
    """The fields `cls` declares itself (not those inherited from a dataclass base), in order."""
    inherited = {f.name for base in cls.__mro__[1:] if is_dataclass(base) for f in fields(base)}
    return [f for f in fields(cls) if f.name not in inherited and f.init]


def yaml_key(f: Field) -> str:
    return f.metadata.get("key") or f.name


def read_section(cls: type, data: Any, where: Where, checks: dict[str, Check] | None = None) -> dict[str, Any]:
    """The keyword arguments of `cls` for a config mapping (null reads as empty). `checks` gives the
    checks of a class that cannot declare them itself (one from a package below this one)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise where.fail(f"must be a mapping, got {show(data)}")
    by_key = {yaml_key(f): f for f in section_fields(cls)}
    for k in data:
        if k not in by_key:
            raise (where / k).fail(unknown_key(k, by_key))
    checks = checks or {f.name: f.metadata["check"] for f in by_key.values()}
    return {f.name: checks[f.name](data[k], where / k) for k, f in by_key.items() if k in data}


def section_data(obj: Any, cls: type | None = None) -> dict[str, Any]:
    """The plain (YAML/JSON) form of the section `cls` (default: `obj`'s class) of `obj`."""
    return {yaml_key(f): plain(getattr(obj, f.name)) for f in section_fields(cls or type(obj))}


def plain(v: Any) -> Any:
    if is_dataclass(v):
        return section_data(v)
    if isinstance(v, (tuple, list)):
        return [plain(x) for x in v]
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    return v


def show(v: Any, limit: int = 80) -> str:
    """A value as an error message quotes it: on one line, cut at `limit` characters."""
    out = f"'{v}'" if isinstance(v, str) and v.isprintable() else repr(v)
    return out if len(out) <= limit else out[:limit - 3] + "..."


def unknown_key(key, known) -> str:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown key{hint}; known keys: {', '.join(known)}"


# --- checks ---------------------------------------------------------------------------------------

def integer(lo: int | None = None, hi: int | None = None, optional: bool = False) -> Check:
    def check(v, where: Where):
        if v is None and optional:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or (lo is not None and v < lo) or (hi is not None and v > hi):
            bound = " and ".join(b for b in (f">= {lo}" if lo is not None else "",
                                             f"<= {hi}" if hi is not None else "") if b)
            raise where.fail(f"must be an integer{' ' + bound if bound else ''}{' or null' if optional else ''}, "
                             f"got {show(v)}")
        return v
    return check


def number(lo: float | None = None, hi: float | None = None, optional: bool = False, open_lo: bool = False) -> Check:
    def check(v, where: Where):
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
            raise where.fail(f"must be a number{rng}{' or null' if optional else ''}, got {show(v)}")
        return float(v)
    return check


def flag(v, where: Where) -> bool:
    if not isinstance(v, bool):
        raise where.fail(f"must be true or false, got {show(v)}")
    return v


def text(choices: tuple[str, ...] | None = None, optional: bool = False) -> Check:
    def check(v, where: Where):
        if v is None and optional:
            return None
        if not isinstance(v, str) or not v or (choices and v not in choices):
            want = f"one of {', '.join(choices)}" if choices else "a non-empty string"
            raise where.fail(f"must be {want}, got {show(v)}")
        return v
    return check


def candidate_spec(v, where: Where) -> str:
    """A zoo name or a file of a program or a role candidate, checked by `where.candidate`."""
    v = text()(v, where)
    try:
        return where.candidate(v)
    except ValueError as e:
        raise where.fail(str(e)) from None


def program_spec(v, where: Where) -> str:
    """A zoo name or a program file, checked by `where.program`."""
    v = text()(v, where)
    try:
        return where.program(v)
    except ValueError as e:
        raise where.fail(str(e)) from None


def numbers(lo: float | None = None, open_lo: bool = False) -> Check:
    def check(v, where: Where) -> tuple[float, ...]:
        if not isinstance(v, list) or not v:
            raise where.fail(f"must be a non-empty list of numbers, got {show(v)}")
        return tuple(number(lo, open_lo=open_lo)(x, where / k) for k, x in enumerate(v))
    return check


def section(cls: type, optional: bool = False) -> Check:
    """A nested section: a mapping read into `cls` (null: the defaults, or None when `optional`)."""
    def check(v, where: Where):
        if v is None and optional:
            return None
        return cls(**read_section(cls, v, where))
    return check
