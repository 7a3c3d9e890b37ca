"""Load ``zones.yaml``: line-numbered YAML, environment overrides, errors that say where and how to fix.

Precedence (one rule, everywhere): **explicit argument > environment (``DATAZONES__A__B=value``) > zones.yaml >
built-in default**. ``DATAZONES__HOT__URL=postgresql+psycopg://...`` points the same file at PostgreSQL;
``DATAZONES__DATASETS__UTBETALNING__BATCH_ROWS=100000`` reaches any key (values are parsed as YAML scalars).
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from zones.errors import ConfigError
from zones.model import Dataset, LocalStorage, ZonesConfig

ENV_PREFIX = "DATAZONES__"
KeyPath = tuple[str, ...]


# libyaml's loader when PyYAML has it: the same nodes and marks, ~10x faster (28 → 3 ms for the demo zones.yaml,
# paid by every command)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(text: str, file: str) -> tuple[Any, dict[KeyPath, int]]:
    """Parse YAML keeping the line of every key path (1-based)."""
    try:
        node = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", file=file,
                          line=mark.line + 1 if mark else None, fix="fix the YAML syntax at that line") from None
    lines: dict[KeyPath, int] = {}

    def walk(n: yaml.Node | None, path: KeyPath) -> Any:
        if n is None:
            return None
        lines.setdefault(path, n.start_mark.line + 1)
        if isinstance(n, yaml.MappingNode):
            out: dict[str, Any] = {}
            for k, v in n.value:
                key = str(k.value)
                if key in out:
                    raise ConfigError(f"duplicate key {key!r}", file=file, line=k.start_mark.line + 1,
                                      key_path=".".join((*path, key)), fix="remove one of the two entries")
                lines[(*path, key)] = k.start_mark.line + 1
                out[key] = walk(v, (*path, key))
            return out
        if isinstance(n, yaml.SequenceNode):
            return [walk(v, (*path, str(i))) for i, v in enumerate(n.value)]
        return _scalar(n)

    return walk(node, ()), lines


def _scalar(n: yaml.Node) -> Any:
    loader = yaml.SafeLoader("")
    try:
        return loader.construct_object(n, deep=True)
    finally:
        loader.dispose()


_SECRET_NAME = re.compile(r"KEY|SECRET|TOKEN|PASSWORD|CREDENTIAL", re.I)


def _redact_url(m: re.Match[str]) -> str:
    """One URL without its password. A password may hold '@', '/', '?' or '#' unescaped (SQLAlchemy takes them):
    the user info runs to the URL's last '@'; if that reaches into a query it hides too much, never too little."""
    url = m.group()
    scheme_end = url.index("://") + 3
    if "@" not in url[scheme_end:]:
        return url
    userinfo, _, rest = url[scheme_end:].rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if colon and not re.search(r"[/?#]", user):
        return f"{url[:scheme_end]}{user}:***@{rest}"
    return url


def redact(value: str) -> str:
    """A value's shape without its secrets: URL passwords and ``password=``-like query values become ``***``."""
    value = re.sub(r"[A-Za-z][\w+.-]*://[^\s'\"<>]*", _redact_url, value)
    value = re.sub(r"((?:password|secret|token|key)[^=&]*=)[^&]*", r"\1***", value, flags=re.I)
    return value if len(value) <= 120 else value[:117] + "..."


def _env_source(name: str, value: str) -> str:
    shown = "***" if _SECRET_NAME.search(name[len(ENV_PREFIX):]) else redact(value)
    return f"environment {name}={shown}"


def _apply_env(raw: dict[str, Any], env: Mapping[str, str], sources: dict[KeyPath, str] | None = None) -> list[str]:
    """Merge ``DATAZONES__A__B=value`` into ``raw``; ``sources`` gets the key path each one set (for errors)."""
    applied = []
    for name, value in sorted(env.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__") if p]
        if not parts:
            continue
        node = raw
        for p in parts[:-1]:
            nxt = node.get(p)
            if not isinstance(nxt, dict):
                nxt = {}
                node[p] = nxt
            node = nxt
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else value
        applied.append(name)
        if sources is not None:
            path = tuple(parts)
            for k in [k for k in sources if k[:len(path)] == path]:
                del sources[k]  # this variable replaced what an earlier, more specific one set
            sources[path] = _env_source(name, value)
    return applied


def _source(sources: dict[KeyPath, str], path: KeyPath, lines: dict[KeyPath, int] | None = None) -> str | None:
    """The environment variable that set ``path`` or one of its parents, if one did; else, when ``path`` lies under
    a key zones.yaml does not have, the variable that created that key."""
    for n in range(len(path), 0, -1):
        if path[:n] in sources:
            return sources[path[:n]]
    if lines is not None:
        new = next((path[:n] for n in range(1, len(path) + 1) if path[:n] not in lines), None)
        under = [v for p, v in sorted(sources.items()) if new and p[:len(new)] == new]
        if under:
            return ", ".join(under)
    return None


def _model_at(loc: tuple[Any, ...], raw: Any) -> tuple[type[BaseModel] | None, KeyPath]:
    """Walk the model types along a pydantic error location; return the model owning the last key."""
    model: Any = ZonesConfig
    data: Any = raw
    path: list[str] = []
    i = 0
    owner: type[BaseModel] | None = ZonesConfig
    while i < len(loc) - 1:
        part = str(loc[i])
        origin = typing.get_origin(model)
        if isinstance(model, type) and issubclass(model, BaseModel):
            owner = model
            fld = next((f for n, f in model.model_fields.items() if part in (n, f.alias)), None)
            if fld is None:
                return owner, tuple(path)
            model = _unwrap(fld.annotation, data.get(part) if isinstance(data, dict) else None)
            data = data.get(part) if isinstance(data, dict) else None
            path.append(part)
        elif origin is dict:
            model = _unwrap(typing.get_args(model)[1], data.get(part) if isinstance(data, dict) else None)
            data = data.get(part) if isinstance(data, dict) else None
            path.append(part)
        else:
            i += 1
            continue
        i += 1
    if isinstance(model, type) and issubclass(model, BaseModel):
        owner = model
    return owner, tuple(path)


def _unwrap(tp: Any, data: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    args = typing.get_args(tp)
    if args and typing.get_origin(tp) in (typing.Union, types.UnionType):
        models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
        for m in models:  # discriminated by a Literal field matching the data
            for f in m.model_fields.values():
                lits = typing.get_args(f.annotation) if typing.get_origin(f.annotation) is typing.Literal else ()
                if isinstance(data, dict) and lits and (data.get(f.alias or "") in lits or
                                                        any(v in lits for v in data.values())):
                    return m
        non_none = [a for a in args if a is not type(None)]
        return non_none[0] if len(non_none) == 1 else (models[0] if models else tp)
    return tp


def _line(lines: dict[KeyPath, int], path: KeyPath) -> int | None:
    for n in range(len(path), -1, -1):
        if path[:n] in lines:
            return lines[path[:n]]
    return None


def _raw_path(loc: tuple[Any, ...], raw: Any) -> KeyPath:
    """Keep only the location parts that exist in the raw data (drops union tags such as 'local')."""
    out: list[str] = []
    data = raw
    for part in loc:
        p = str(part)
        if isinstance(data, dict) and p in data:
            out.append(p)
            data = data[p]
        elif isinstance(data, list) and p.isdigit() and int(p) < len(data):
            out.append(p)
            data = data[int(p)]
    return tuple(out)


def _convert(exc: ValidationError, raw: Any, lines: dict[KeyPath, int], file: str,
             sources: dict[KeyPath, str] | None = None) -> ConfigError:
    errs = exc.errors()
    messages = []
    first_line, first_path, first_fix = None, None, None
    for err in errs[:10]:
        loc = tuple(err["loc"])
        path = _raw_path(loc, raw)
        fix = None
        if err["type"] == "extra_forbidden":
            owner, _ = _model_at(loc, raw)
            allowed = sorted((f.alias or n) for n, f in owner.model_fields.items()) if owner else []
            bad = str(loc[-1])
            close = difflib.get_close_matches(bad, allowed, n=1)
            msg = f"unknown key {bad!r}"
            fix = (f"did you mean {close[0]!r}? " if close else "") + f"allowed keys here: {', '.join(allowed)}"
        elif err["type"] == "missing":
            msg = f"required key {str(loc[-1])!r} is missing"
            fix = f"add `{loc[-1]}:`"
            path = (*path, str(loc[-1])) if str(loc[-1]) not in path else path
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "literal_error":
                fix = f"use one of: {err.get('ctx', {}).get('expected', '')}"
        env = _source(sources or {}, path, lines)
        line = None if env else _line(lines, path)
        key = ".".join(path) or "(top level)"
        messages.append(f"{env or f'{file}:{line}'}: {key}: {msg}" + (f" — fix: {fix}" if fix else ""))
        if first_path is None:
            first_line, first_path, first_fix = line, key, fix
    more = f"\n  (+{len(errs) - 10} more)" if len(errs) > 10 else ""
    err_out = ConfigError("invalid configuration", file=file, line=first_line, key_path=first_path, fix=first_fix)
    err_out.args = ("\n".join(messages) + more,)
    return err_out


@dataclass(frozen=True)
class Project:
    """A loaded zones.yaml with everything needed to resolve locations."""

    config: ZonesConfig
    file: Path
    root: Path
    lines: dict[KeyPath, int] = field(default_factory=dict, repr=False, compare=False)
    env_applied: tuple[str, ...] = ()
    env_sources: dict[KeyPath, str] = field(default_factory=dict, repr=False, compare=False)

    def line_of(self, *path: str) -> int | None:
        return _line(self.lines, tuple(path))

    def error(self, message: str, *path: str, fix: str | None = None) -> ConfigError:
        return ConfigError(message, file=str(self.file), line=self.line_of(*path), key_path=".".join(path), fix=fix)

    def _sqlite_abs(self, url: str) -> str:
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////") and ":memory:" not in url:
            p = self.root / url[len("sqlite:///"):]
            p.parent.mkdir(parents=True, exist_ok=True)
            return "sqlite:///" + str(p)
        return url

    def _url(self, store: str) -> str:
        """The store's SQLAlchemy URL, checked: a value SQLAlchemy cannot parse is a ConfigError that names where it
        came from (an environment variable or a zones.yaml line), never a traceback."""
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        url: str = getattr(self.config, store).url
        problem = "not a SQLAlchemy URL"
        try:
            parsed = make_url(url)
            problem = f"no SQLAlchemy dialect and driver {parsed.drivername!r}"
            dialect = parsed.get_dialect()
            problem = f"the database driver for {parsed.drivername!r} is not installed"
            dialect.import_dbapi()
            problem = ""
        except (ArgumentError, ValueError, ImportError) as exc:
            if isinstance(exc, ImportError):
                problem += f" (no module {exc.name!r})"
            elif isinstance(exc, ValueError) and "int()" in str(exc):
                problem += " (the port is not a number)"
        if problem:
            env = _source(self.env_sources, (store, "url"))
            err = ConfigError(
                problem if env else f"{problem}: {redact(url)!r}", file=None if env else str(self.file),
                line=None if env else self.line_of(store, "url"), key_path=f"{store}.url",
                fix=f"set {ENV_PREFIX}{store.upper()}__URL or `{store}: {{url: ...}}` to a URL of the form "
                    "dialect+driver://user@host:port/database, e.g. postgresql+psycopg://user@host/db or "
                    f"sqlite:///.datazones/{store}.db (keep passwords out of zones.yaml)")
            if env:
                err.args = (f"{env}: {err.args[0]}",)
            raise err from None
        return url

    def check_urls(self) -> None:
        """Raise a ConfigError if the hot or the ledger URL is not a usable SQLAlchemy URL."""
        self._url("hot")
        self._url("ledger")

    @property
    def hot_url(self) -> str:
        return self._sqlite_abs(self._url("hot"))

    @property
    def ledger_url(self) -> str:
        return self._sqlite_abs(self._url("ledger"))

    def zone_uri(self, zone: str) -> str:
        st = getattr(self.config, zone)
        if isinstance(st, LocalStorage):
            return str((self.root / st.path).resolve())
        return st.uri.rstrip("/")

    def storage_options(self, zone: str) -> dict[str, str] | None:
        st = getattr(self.config, zone)
        return None if isinstance(st, LocalStorage) else dict(st.storage_options) or None

    def warm_table_uri(self, dataset: str) -> str:
        return f"{self.zone_uri('warm')}/{dataset}"

    def quarantine_uri(self, dataset: str) -> str:
        return f"{self.zone_uri('warm')}/_quarantine/{dataset}"

    def dataset(self, name: str) -> Dataset:
        return self.config.dataset(name)

    def batch_rows(self, ds: Dataset) -> int:
        return ds.batch_rows or self.config.defaults.batch_rows


def load(path: str | os.PathLike[str] = "zones.yaml", *, overrides: Mapping[str, Any] | None = None,
         env: Mapping[str, str] | None = None) -> Project:
    """Load and validate a zones.yaml. ``overrides`` are explicit values by dotted key path (highest precedence)."""
    file = Path(path)
    if not file.is_file():
        raise ConfigError("file not found", file=str(file),
                          fix="pass --config PATH or run from the folder holding zones.yaml")
    raw, lines = _compose(file.read_text(encoding="utf-8"), str(file))
    if not isinstance(raw, dict):
        raise ConfigError("the top level must be a mapping (version, hot, warm, cold, ledger, datasets)",
                          file=str(file), line=1)
    sources: dict[KeyPath, str] = {}
    applied = _apply_env(raw, os.environ if env is None else env, sources)
    for dotted, value in (overrides or {}).items():
        node = raw
        parts = dotted.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
        for k in [k for k in sources if k[:len(parts)] == tuple(parts)]:
            del sources[k]  # the explicit value replaced what the environment set
    try:
        cfg = ZonesConfig.model_validate(raw)
    except ValidationError as exc:
        raise _convert(exc, raw, lines, str(file), sources) from None
    return Project(config=cfg, file=file.resolve(), root=file.resolve().parent, lines=lines,
                   env_applied=tuple(applied), env_sources=sources)
