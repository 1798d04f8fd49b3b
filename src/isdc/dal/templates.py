"""Data-structure templates: one declarative YAML file per data structure in `templates/`.

A template names a structure (`ISGR-EVTS-COR`), its kind (table or image), its version,
the keywords it requires (fixed values or typed) and its columns (TFORM, unit, null).
Products are *made* from templates (`Template.table(...)`, `Template.image(...)`), which
fills fixed keywords and casts columns, and are *validated* against them when written
and when read. A mismatch raises `TemplateError` naming the template, the column or
keyword, and what was wrong.

Every HDU made from a template carries `TEMPLATE` (name) and `TEMPLVER` (version), so a
reader knows what to check the HDU against.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml
from astropy.io import fits

from isdc.dal.fitsfile import ColumnSpec, FitsError, Image, Table, parse_tform
from isdc.resources import data_dir

__all__ = ["TemplateError", "Template", "KeywordSpec", "get", "all_templates", "validate_hdu"]


class TemplateError(FitsError):
    """A product that does not match its template."""


_KW_TYPES = {"str": str, "int": int, "float": float, "bool": bool}
_NATIVE = {"L": np.bool_, "B": np.uint8, "I": np.int16, "J": np.int32, "K": np.int64, "E": np.float32,
           "D": np.float64, "C": np.complex64, "M": np.complex128}
_TEMPLATE_KEYS = {"name", "version", "kind", "description", "keywords", "columns", "extname", "hduclass"}
_KEYWORD_KEYS = {"value", "type", "unit", "comment", "required"}
_COLUMN_KEYS = {"name", "format", "unit", "comment", "null", "zero", "dim"}


@dataclass(frozen=True)
class KeywordSpec:
    name: str
    type: type | None = None
    value: Any = None
    unit: str | None = None
    comment: str = ""
    required: bool = True

    def check(self, header: fits.Header, where: str) -> list[str]:
        if self.name not in header:
            return [f"{where}: keyword {self.name} missing"] if self.required else []
        v = header[self.name]
        if self.value is not None:
            same = (v == self.value) if not isinstance(self.value, str) else (str(v).strip() == self.value)
            if not same:
                return [f"{where}: keyword {self.name} = {v!r}, template requires {self.value!r}"]
            return []
        if self.type is not None:
            ok = isinstance(v, self.type) and not (self.type in (int, float) and isinstance(v, bool))
            if self.type is float and isinstance(v, int) and not isinstance(v, bool):
                ok = True
            if not ok:
                return [f"{where}: keyword {self.name} = {v!r} is {type(v).__name__}, template requires {self.type.__name__}"]
        return []

    def card(self, value: Any = None) -> tuple:
        v = self.value if value is None else value
        comment = self.comment
        if self.unit:
            comment = f"[{self.unit}] {comment}".strip()
        return (self.name, v, comment)


@dataclass(frozen=True)
class Template:
    """A declared data structure. Use `get(name)` to obtain one."""

    name: str
    version: int
    kind: str  # 'table' | 'image'
    description: str
    keywords: tuple[KeywordSpec, ...]
    columns: tuple[ColumnSpec, ...] = ()
    extname: str = ""
    source: str = ""

    @property
    def where(self) -> str:
        return f"template {self.name} v{self.version}"

    # ---- making products
    def _header(self, keywords: Mapping[str, Any]) -> fits.Header:
        h = fits.Header()
        h["EXTNAME"] = (self.extname or self.name, "name of this data structure")
        given = dict(keywords)
        for spec in self.keywords:
            if spec.value is not None:
                if spec.name in given and given[spec.name] != spec.value:
                    raise TemplateError(f"{self.where}: keyword {spec.name} is fixed to {spec.value!r}, got {given[spec.name]!r}")
                given.pop(spec.name, None)
                h.append(spec.card())
            elif spec.name in given:
                v = given.pop(spec.name)
                if isinstance(v, np.generic):
                    v = v.item()
                h.append(spec.card(v))
            elif spec.required:
                raise TemplateError(f"{self.where}: required keyword {spec.name} not given")
        for k, v in given.items():
            if isinstance(v, tuple):
                h[k] = v
            else:
                h[k] = v.item() if isinstance(v, np.generic) else v
        h["TEMPLATE"] = (self.name, "isdc template of this data structure")
        h["TEMPLVER"] = (self.version, "version of the template")
        return h

    def table(self, columns: Mapping[str, Any], **keywords) -> Table:
        """Make a table HDU: columns cast to the template's types, keywords filled.

        Raises TemplateError for a missing or unknown column, or a value that cannot be
        cast without changing its kind (e.g. float data into an integer column).
        """
        if self.kind != "table":
            raise TemplateError(f"{self.where} is an {self.kind}, not a table")
        unknown = set(columns) - {c.name for c in self.columns}
        if unknown:
            raise TemplateError(f"{self.where}: unknown columns {sorted(unknown)}")
        out = {}
        n = None
        for spec in self.columns:
            if spec.name not in columns:
                raise TemplateError(f"{self.where}: column {spec.name} not given")
            arr = np.asarray(columns[spec.name])
            rep, code, _ = parse_tform(spec.tform)
            if code == "A":
                if arr.dtype.kind not in "SU" and arr.size:
                    raise TemplateError(f"{self.where}: column {spec.name} must be text, got {arr.dtype}")
                arr = arr.astype("U") if arr.dtype.kind != "U" else arr
                if arr.size and int(np.char.str_len(arr).max()) > rep:
                    raise TemplateError(f"{self.where}: column {spec.name}: text longer than {rep} characters")
            else:
                target = _native_dtype(spec)
                if arr.size and not np.can_cast(arr.dtype, target, "same_kind") and not (
                    arr.dtype.kind in "iub" and target.kind in "iuf"
                ):
                    raise TemplateError(f"{self.where}: column {spec.name}: cannot store {arr.dtype} in {spec.tform}")
                if arr.dtype.kind in "iu" and target.kind in "iu" and arr.size:
                    info = np.iinfo(target)
                    lo, hi = arr.min(), arr.max()
                    if lo < info.min or hi > info.max:
                        raise TemplateError(
                            f"{self.where}: column {spec.name}: values {lo}..{hi} do not fit {spec.tform} ({target})"
                        )
                arr = arr.astype(target, copy=False)
                cell = (rep,) if rep > 1 and not spec.tdim else (tuple(reversed(spec.tdim)) if spec.tdim else ())
                if arr.ndim == 0 and arr.size == 0:
                    arr = arr.reshape((0,) + cell)
                if arr.shape[1:] != cell:
                    raise TemplateError(f"{self.where}: column {spec.name}: cell shape {arr.shape[1:]}, template wants {cell}")
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise TemplateError(f"{self.where}: column {spec.name} has {len(arr)} rows, others have {n}")
            out[spec.name] = arr
        return Table(out, self._header(keywords), [ColumnSpec(**vars(c)) for c in self.columns])

    def image(self, data: np.ndarray | None, **keywords) -> Image:
        """Make an image HDU with the template's keywords."""
        if self.kind != "image":
            raise TemplateError(f"{self.where} is a {self.kind}, not an image")
        return Image(data, self._header(keywords))

    # ---- checking products
    def problems(self, hdu: Table | Image, where: str | None = None) -> list[str]:
        """Every way `hdu` differs from this template (empty when it conforms)."""
        where = where or self.where
        h = hdu.header
        out = []
        ext = str(h.get("EXTNAME", "")).strip()
        if ext != (self.extname or self.name):
            out.append(f"{where}: EXTNAME {ext!r}, template requires {self.extname or self.name!r}")
        for spec in self.keywords:
            out += spec.check(h, where)
        if self.kind == "table":
            if not isinstance(hdu, Table):
                return out + [f"{where}: is an image, template is a table"]
            have = {s.name: s for s in hdu.specs}
            for c in self.columns:
                s = have.get(c.name)
                if s is None:
                    out.append(f"{where}: column {c.name} missing")
                    continue
                r1, t1, _ = parse_tform(c.tform)
                r2, t2, _ = parse_tform(s.tform)
                if (r1, t1) != (r2, t2):
                    out.append(f"{where}: column {c.name} has TFORM {s.tform}, template requires {c.tform}")
                if (c.unit or "") != (s.unit or ""):
                    out.append(f"{where}: column {c.name} has unit {s.unit!r}, template requires {c.unit!r}")
                if c.tnull is not None and s.tnull != c.tnull:
                    out.append(f"{where}: column {c.name} has TNULL {s.tnull!r}, template requires {c.tnull!r}")
            extra = set(have) - {c.name for c in self.columns}
            if extra:
                out.append(f"{where}: columns not in the template: {sorted(extra)}")
        elif not isinstance(hdu, Image):
            out.append(f"{where}: is a table, template is an image")
        return out

    def validate(self, hdu: Table | Image, where: str | None = None) -> None:
        """Raise TemplateError listing every problem of `hdu` against this template."""
        p = self.problems(hdu, where)
        if p:
            raise TemplateError("; ".join(p))


def _native_dtype(spec: ColumnSpec) -> np.dtype:
    _, code, _ = parse_tform(spec.tform)
    if code in "BIJK" and spec.tzero:
        unsigned = {"I": np.uint16, "J": np.uint32, "K": np.uint64}
        if code == "B":
            return np.dtype(np.int8)
        return np.dtype(unsigned[code])
    return np.dtype(_NATIVE[code])


def _load(path: Path) -> Template:
    where = f"template file {path.name}"
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise TemplateError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise TemplateError(f"{where}: must be a mapping")
    unknown = set(doc) - _TEMPLATE_KEYS
    if unknown:
        raise TemplateError(f"{where}: unknown keys {sorted(unknown)}")
    for key in ("name", "version", "kind"):
        if key not in doc:
            raise TemplateError(f"{where}: '{key}' missing")
    if doc["kind"] not in ("table", "image"):
        raise TemplateError(f"{where}: kind must be table or image, got {doc['kind']!r}")
    if path.stem != doc["name"]:
        raise TemplateError(f"{where}: file name must be the template name {doc['name']!r}.yaml")
    kws = []
    for name, spec in (doc.get("keywords") or {}).items():
        spec = spec or {}
        bad = set(spec) - _KEYWORD_KEYS
        if bad:
            raise TemplateError(f"{where}: keyword {name}: unknown keys {sorted(bad)}")
        if len(name) > 8 or not name.replace("_", "").replace("-", "").isalnum() or name != name.upper():
            raise TemplateError(f"{where}: keyword {name!r} is not a valid FITS keyword")
        t = spec.get("type")
        if t is not None and t not in _KW_TYPES:
            raise TemplateError(f"{where}: keyword {name}: type must be one of {sorted(_KW_TYPES)}")
        if t is None and "value" not in spec:
            raise TemplateError(f"{where}: keyword {name}: give a type or a fixed value")
        kws.append(KeywordSpec(name, _KW_TYPES.get(t), spec.get("value"), spec.get("unit"), spec.get("comment", ""),
                               bool(spec.get("required", True))))
    cols = []
    for c in doc.get("columns") or []:
        bad = set(c) - _COLUMN_KEYS
        if bad:
            raise TemplateError(f"{where}: column {c.get('name')}: unknown keys {sorted(bad)}")
        try:
            parse_tform(str(c["format"]))
        except (KeyError, FitsError) as exc:
            raise TemplateError(f"{where}: column {c.get('name')}: bad or missing format") from exc
        dim = c.get("dim")
        cols.append(ColumnSpec(c["name"], str(c["format"]), c.get("unit"), c.get("comment"), c.get("null"),
                               c.get("zero"), 1 if c.get("zero") else None, tuple(dim) if dim else None))
    if doc["kind"] == "table" and not cols:
        raise TemplateError(f"{where}: a table template needs columns")
    return Template(doc["name"], int(doc["version"]), doc["kind"], doc.get("description", ""), tuple(kws),
                    tuple(cols), doc.get("extname", ""), str(path))


@functools.lru_cache(maxsize=None)
def _registry(folder: str) -> dict[str, Template]:
    out = {}
    for p in sorted(Path(folder).glob("*.yaml")):
        t = _load(p)
        out[t.name] = t
    return out


def all_templates() -> dict[str, Template]:
    """Every template shipped in `templates/`, by name."""
    return _registry(str(data_dir("templates")))


def get(name: str) -> Template:
    """The template called `name` (e.g. 'ISGR-EVTS-COR'); TemplateError if there is none."""
    try:
        return all_templates()[name]
    except KeyError:
        raise TemplateError(f"no template named {name!r} in {data_dir('templates')}") from None


def validate_hdu(hdu: Table | Image, where: str) -> None:
    """Validate an HDU against the template its TEMPLATE keyword names (no-op if none)."""
    name = hdu.header.get("TEMPLATE")
    if not name:
        return
    t = get(str(name).strip())
    ver = hdu.header.get("TEMPLVER")
    if ver != t.version:
        raise TemplateError(f"{where}: made from {t.name} v{ver}, this code knows v{t.version}")
    t.validate(hdu, f"{where} ({t.where})")
