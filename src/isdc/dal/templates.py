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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import yaml
from astropy.io import fits

from isdc.dal.fitsfile import UNSIGNED_ZERO, ColumnSpec, FitsError, Image, Table, native_column, parse_tform
from isdc.resources import data_dir

__all__ = ["TemplateError", "Template", "KeywordSpec", "get", "load", "all_templates", "validate_hdu"]


class TemplateError(FitsError):
    """A product that does not match its template."""


_KW_TYPES = {"str": str, "int": int, "float": float, "bool": bool}
_TEMPLATE_KEYS = {"name", "version", "kind", "description", "keywords", "columns", "extname"}
_KEYWORD_RE = re.compile(r"[A-Z0-9_-]{1,8}")
_COLUMN_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,67}")
# what our writer stores: fixed-width columns (no variable-length P/Q, no bit X)
_TFORM_RE = re.compile(r"[0-9]*[LBIJKEDCMA]")
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
            if isinstance(self.value, str):
                same = str(v).strip() == self.value
            else:  # True == 1 in Python; a FITS logical is not a number
                same = v == self.value and isinstance(v, bool) == isinstance(self.value, bool)
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
            try:
                arr = native_column(columns[spec.name], spec)
            except FitsError as exc:
                raise TemplateError(f"{self.where}: {exc}") from None
            if arr.dtype.kind == "S":
                arr = arr.astype("U")  # as the reader returns text
            if n is None:
                n = len(arr)
            elif len(arr) != n:
                raise TemplateError(f"{self.where}: column {spec.name} has {len(arr)} rows, others have {n}")
            out[spec.name] = arr
        tab = Table(out, self._header(keywords), [ColumnSpec(**vars(c)) for c in self.columns])
        self.validate(tab)  # keyword types, e.g. REVOL given as text
        return tab

    def image(self, data: np.ndarray | None, **keywords) -> Image:
        """Make an image HDU with the template's keywords."""
        if self.kind != "image":
            raise TemplateError(f"{self.where} is a {self.kind}, not an image")
        img = Image(data, self._header(keywords))
        self.validate(img)
        return img

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
                if (c.tzero or 0) != (s.tzero or 0):
                    out.append(f"{where}: column {c.name} has TZERO {s.tzero!r}, template requires {c.tzero!r}")
                if (c.tdim or None) != (s.tdim or None):
                    out.append(f"{where}: column {c.name} has TDIM {s.tdim!r}, template requires {c.tdim!r}")
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


# libyaml's safe loader when PyYAML has it: the same documents, ~10x faster (every template is
# parsed once per process, and a build forks a process per task).
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load(path: str | Path) -> Template:
    """Load and check one template file. Strict: an unknown key, a bad keyword name, a
    TFORM our writer cannot store, a TNULL/TZERO/TDIM that does not fit the column, or a
    file name other than `<name>.yaml` raises TemplateError naming the file."""
    path = Path(path)
    where = f"template file {path}"

    def fail(msg: str):
        raise TemplateError(f"{where}: {msg}")

    try:
        doc = yaml.load(path.read_text(), Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except OSError as exc:
        raise TemplateError(f"{where}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise TemplateError(f"{where}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        fail("must be a mapping")
    unknown = set(doc) - _TEMPLATE_KEYS
    if unknown:
        fail(f"unknown keys {sorted(unknown)} (known: {sorted(_TEMPLATE_KEYS)})")
    for key in ("name", "version", "kind"):
        if key not in doc:
            fail(f"'{key}' missing")
    if not isinstance(doc["name"], str) or path.stem != doc["name"]:
        fail(f"file name must be the template name: {doc['name']!r}.yaml")
    if not isinstance(doc["version"], int) or isinstance(doc["version"], bool) or doc["version"] < 1:
        fail(f"version must be a positive integer, got {doc['version']!r}")
    if doc["kind"] not in ("table", "image"):
        fail(f"kind must be table or image, got {doc['kind']!r}")
    for key in ("description", "extname"):
        if not isinstance(doc.get(key, ""), str):
            fail(f"'{key}' must be text")
    kw_doc = doc.get("keywords") or {}
    if not isinstance(kw_doc, dict):
        fail("'keywords' must be a mapping NAME: {value|type, unit, comment, required}")
    kws = []
    for name, spec in kw_doc.items():
        spec = spec or {}
        if not isinstance(spec, dict):
            fail(f"keyword {name}: must be a mapping")
        bad = set(spec) - _KEYWORD_KEYS
        if bad:
            fail(f"keyword {name}: unknown keys {sorted(bad)}")
        if not isinstance(name, str) or not _KEYWORD_RE.fullmatch(name):
            fail(f"keyword {name!r} is not a valid FITS keyword (1-8 of A-Z 0-9 _ -)")
        t = spec.get("type")
        if t is not None and t not in _KW_TYPES:
            fail(f"keyword {name}: type must be one of {sorted(_KW_TYPES)}")
        if t is None and "value" not in spec:
            fail(f"keyword {name}: give a type or a fixed value")
        value = spec.get("value")
        if t is not None and value is not None and KeywordSpec(name, _KW_TYPES[t]).check(fits.Header([(name, value)]), ""):
            fail(f"keyword {name}: value {value!r} is not of type {t}")
        kws.append(KeywordSpec(name, _KW_TYPES.get(t), value, spec.get("unit"), spec.get("comment", ""),
                               bool(spec.get("required", True))))
    col_doc = doc.get("columns") or []
    if not isinstance(col_doc, list):
        fail("'columns' must be a list")
    if doc["kind"] == "image" and col_doc:
        fail("an image template has no columns")
    cols = []
    for c in col_doc:
        if not isinstance(c, dict):
            fail(f"column {c!r}: must be a mapping")
        if None in c and "null" not in c:  # YAML reads the bare key `null` as None
            c = {("null" if k is None else k): v for k, v in c.items()}
        cname = c.get("name")
        if not isinstance(cname, str) or not _COLUMN_RE.fullmatch(cname):
            fail(f"column name {cname!r}: letters, digits and '_', starting with a letter")
        if cname in {x.name for x in cols}:
            fail(f"column {cname} declared twice")
        bad = set(c) - _COLUMN_KEYS
        if bad:
            fail(f"column {cname}: unknown keys {sorted(bad)}")
        tform = str(c.get("format", ""))
        if not _TFORM_RE.fullmatch(tform):
            fail(f"column {cname}: format {tform!r} is not a TFORM we write (rL B I J K E D C M A)")
        code = parse_tform(tform)[1]
        null, zero, dim = c.get("null"), c.get("zero"), c.get("dim")
        if null is not None and (code not in "BIJK" or not isinstance(null, int) or isinstance(null, bool)):
            fail(f"column {cname}: null (TNULL) is for integer columns (B I J K), with an integer value")
        if zero is not None and (code not in UNSIGNED_ZERO or zero != UNSIGNED_ZERO[code] or isinstance(zero, bool)):
            fail(f"column {cname}: zero (TZERO) must be the unsigned offset of its type {UNSIGNED_ZERO}")
        if dim is not None and (not isinstance(dim, list) or not dim
                                or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in dim)):
            fail(f"column {cname}: dim (TDIM) must be a list of positive integers")
        for key in ("unit", "comment"):
            if not isinstance(c.get(key, ""), str):
                fail(f"column {cname}: {key} must be text")
        col = ColumnSpec(cname, tform, c.get("unit"), c.get("comment"), null, zero, 1 if zero else None,
                         tuple(dim) if dim else None)
        try:
            col.file_dtype()
        except FitsError as exc:
            fail(str(exc))
        cols.append(col)
    if doc["kind"] == "table" and not cols:
        fail("a table template needs columns")
    return Template(doc["name"], doc["version"], doc["kind"], doc.get("description", ""), tuple(kws),
                    tuple(cols), doc.get("extname", ""), str(path))


@functools.lru_cache(maxsize=None)
def _registry(folder: str) -> dict[str, Template]:
    out = {}
    for p in sorted(Path(folder).glob("*.yaml")):
        t = load(p)
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
    try:
        t = get(str(name).strip())
    except TemplateError as exc:
        raise TemplateError(f"{where}: {exc}") from None
    ver = hdu.header.get("TEMPLVER")
    if ver != t.version:
        raise TemplateError(f"{where}: made from {t.name} v{ver}, this code knows v{t.version}")
    t.validate(hdu, f"{where} ({t.where})")
