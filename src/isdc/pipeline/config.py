"""Pipeline configuration: typed, strict, layered.

The effective configuration of a run is, in order: the schema defaults, the stream's
file `pipelines/<stream>.yaml` (nrt, cons, osa), an optional user file, then command-line
overrides (`--set key=value`, `--bands`, `--levels`). Every option is declared once with
a type, a default and a help text; unknown keys are errors naming the key and the file;
values are checked (types, ranges, energy edges multiples of 0.5 keV). Instruments and
steps declare their own sections with `declare()`.

The result is a plain nested dict (JSON-serialisable), passed to tasks as a luigi
DictParameter; each task hashes the keys it reads into its fingerprint.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from isdc.resources import data_dir

__all__ = ["ConfigError", "Option", "declare", "SCHEMA", "LEVELS", "load_config", "parse_bands", "parse_levels",
           "describe"]


class ConfigError(ValueError):
    """A configuration that does not follow the schema; the message names key and source."""


@dataclass(frozen=True)
class Option:
    type: str  # 'int' | 'float' | 'bool' | 'str' | 'bands' | 'levels' | 'floats' | 'strs'
    default: Any
    help: str
    check: Callable[[Any], str | None] | None = None  # returns a problem or None
    choices: tuple | None = None


LEVELS = ("COR", "GTI", "DEAD", "BIN", "BKG", "IMA", "SPE", "LCR")

SCHEMA: dict = {}


def declare(path: str, options: dict[str, Option]) -> None:
    """Declare the options of a section ('isgri.cor'); re-declaring an option is an error."""
    node = SCHEMA
    for part in path.split("."):
        node = node.setdefault(part, {})
        if isinstance(node, Option):
            raise ConfigError(f"cannot declare section {path}: {part} is an option")
    for k, opt in options.items():
        if k in node and node[k] != opt:
            raise ConfigError(f"option {path}.{k} declared twice")
        node[k] = opt


def _positive(v):
    return None if v > 0 else "must be > 0"


def _non_negative(v):
    return None if v >= 0 else "must be >= 0"


SCHEMA.update({
    "stream": Option("str", "osa", "processing stream: nrt, cons or osa", choices=("nrt", "cons", "osa")),
    "levels": Option("levels", list(LEVELS), "ScW levels to run (a range COR..IMA or a list)"),
    "catalog": Option("str", "default", "reference catalogue: 'default' (shipped) or a FITS file"),
    "workers": Option("int", 1, "luigi worker processes (does not change results)", _positive),
})


def parse_bands(text: str | list) -> list[list[float]]:
    """'20-40,40-100' or [[20, 40], [40, 100]] -> [[20.0, 40.0], [40.0, 100.0]] (keV)."""
    if isinstance(text, str):
        out = []
        for part in text.split(","):
            try:
                lo, hi = part.strip().split("-")
                out.append([float(lo), float(hi)])
            except ValueError:
                raise ConfigError(f"invalid energy band {part!r}: write E1-E2 in keV, e.g. 20-40") from None
        return out
    return [[float(b[0]), float(b[1])] for b in text]


def parse_levels(text: str | list) -> list[str]:
    """'COR..IMA', 'COR,GTI,BIN' or a list -> the ordered levels."""
    if isinstance(text, str):
        text = text.strip().upper()
        if ".." in text:
            a, b = text.split("..", 1)
            if a not in LEVELS or b not in LEVELS or LEVELS.index(a) > LEVELS.index(b):
                raise ConfigError(f"invalid level range {text!r}: levels are {'..'.join(LEVELS[:1] + LEVELS[-1:])} "
                                  f"in the order {', '.join(LEVELS)}")
            return list(LEVELS[LEVELS.index(a) : LEVELS.index(b) + 1])
        items = [t.strip() for t in text.split(",") if t.strip()]
    else:
        items = [str(t).upper() for t in text]
    bad = [t for t in items if t not in LEVELS]
    if bad:
        raise ConfigError(f"unknown levels {bad}: choose from {', '.join(LEVELS)}")
    return [lv for lv in LEVELS if lv in items]


def _coerce(opt: Option, value: Any, where: str) -> Any:
    try:
        if opt.type == "int":
            if isinstance(value, bool) or not isinstance(value, (int, str)) or (isinstance(value, str) and not value.strip().lstrip("-").isdigit()):
                raise ValueError
            v = int(value)
        elif opt.type == "float":
            if isinstance(value, bool):
                raise ValueError
            v = float(value)
        elif opt.type == "bool":
            if isinstance(value, str):
                if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
                    raise ValueError
                v = value.lower() in ("true", "yes", "1")
            elif isinstance(value, bool):
                v = value
            else:
                raise ValueError
        elif opt.type == "str":
            if not isinstance(value, str):
                raise ValueError
            v = value
        elif opt.type == "bands":
            v = parse_bands(value)
            for lo, hi in v:
                if not 0 < lo < hi:
                    raise ConfigError(f"{where}: band {lo:g}-{hi:g} keV: need 0 < E1 < E2")
                for e in (lo, hi):
                    if abs(e * 2 - round(e * 2)) > 1e-9:
                        raise ConfigError(f"{where}: band edge {e:g} keV is not a multiple of 0.5 keV")
            if not v:
                raise ConfigError(f"{where}: give at least one energy band")
        elif opt.type == "levels":
            v = parse_levels(value)
        elif opt.type == "floats":
            v = [float(x) for x in (value.split(",") if isinstance(value, str) else value)]
        elif opt.type == "strs":
            v = [str(x) for x in (value.split(",") if isinstance(value, str) else value)]
        else:
            raise ConfigError(f"{where}: unknown option type {opt.type}")
    except ConfigError:
        raise
    except (ValueError, TypeError):
        raise ConfigError(f"{where}: expected {opt.type}, got {value!r}") from None
    if opt.choices is not None and v not in opt.choices:
        raise ConfigError(f"{where}: {v!r} is not one of {', '.join(map(str, opt.choices))}")
    if opt.check is not None:
        problem = opt.check(v)
        if problem:
            raise ConfigError(f"{where}: {v!r} {problem}")
    return v


def _defaults(schema: dict) -> dict:
    return {k: (copy.deepcopy(v.default) if isinstance(v, Option) else _defaults(v)) for k, v in schema.items()}


def _merge(target: dict, doc: Any, schema: dict, source: str, prefix: str = "") -> None:
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: {prefix or 'top level'} must be a mapping, got {type(doc).__name__}")
    for k, v in doc.items():
        key = f"{prefix}{k}"
        if k not in schema:
            known = ", ".join(sorted(schema)) or "(none)"
            raise ConfigError(f"{source}: unknown key '{key}' (known here: {known})")
        node = schema[k]
        if isinstance(node, Option):
            target[k] = _coerce(node, v, f"{source}: {key}")
        else:
            _merge(target[k], v, node, source, key + ".")


def _set(target: dict, key: str, value: str, source: str) -> None:
    node, schema = target, SCHEMA
    parts = key.split(".")
    for p in parts[:-1]:
        if p not in schema or isinstance(schema[p], Option):
            raise ConfigError(f"{source}: unknown key '{key}'")
        node, schema = node[p], schema[p]
    last = parts[-1]
    if last not in schema or not isinstance(schema[last], Option):
        raise ConfigError(f"{source}: unknown option '{key}'")
    opt = schema[last]
    if opt.type in ("bands", "levels", "floats", "strs", "str"):
        parsed = value
    else:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
    node[last] = _coerce(opt, parsed, f"{source}: {key}")


def _load_yaml(path: Path) -> dict:
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"configuration file {path} not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return doc or {}


def load_config(stream: str = "osa", user_file: str | Path | None = None, overrides: dict[str, str] | None = None) -> dict:
    """The effective configuration: defaults < pipelines/<stream>.yaml < user file < overrides."""
    import isdc.pipeline.options  # noqa: F401  (declares the instrument sections)

    if stream not in ("nrt", "cons", "osa"):
        raise ConfigError(f"unknown stream {stream!r}: nrt, cons or osa")
    cfg = _defaults(SCHEMA)
    path = data_dir("pipelines") / f"{stream}.yaml"
    _merge(cfg, _load_yaml(path), SCHEMA, str(path.name))
    if user_file is not None:
        _merge(cfg, _load_yaml(Path(user_file)), SCHEMA, str(user_file))
    for k, v in (overrides or {}).items():
        _set(cfg, k, v, "command line")
    return json.loads(json.dumps(cfg))


def describe(schema: dict | None = None, prefix: str = "") -> list[str]:
    """One line per option: key, type, default, help (for docs and --help-config)."""
    lines = []
    for k, v in (schema or SCHEMA).items():
        if isinstance(v, Option):
            lines.append(f"{prefix}{k} ({v.type}, default {json.dumps(v.default)}): {v.help}")
        else:
            lines += describe(v, prefix + k + ".")
    return lines
