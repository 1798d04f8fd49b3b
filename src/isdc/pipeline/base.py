"""Task base for luigi: tasks declare their inputs and outputs as data.

A task class states, as class attributes, which dataset types it reads (`inputs`) and
writes (`outputs`), its `algorithm_version`, the configuration keys that change its
results (`config_keys`) and the IC structures it calls for (`ic_structures`). From these
the framework derives `requires()` (the producer of every input), `output()` (one
`ProductTarget` per output), completeness and provenance. The task's own code is
`process(inputs) -> outputs`, working on in-memory `Product`s only.

Completeness is stronger than luigi's `exists()`: a product is complete when the file is
whole (every HDU's checksum verifies) and its fingerprint matches the one the task would
write now. The fingerprint hashes the task family, its algorithm version (not the package
version: an unrelated commit must not make every product stale), the configuration values
it reads, the IC files it would select, and the fingerprints of its inputs. A new IC
version or a changed configuration value therefore makes exactly the products that
depend on it stale, downstream included.

Outcomes (DESIGN §3): `NoWork` writes explicit empty products so the graph completes;
`PermanentError` (bad input) quarantines the data ID with the reason and is never retried
while the inputs are unchanged; `TransientError` is retried with back-off.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import json
import logging
import os
import resource
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import luigi
from luigi.freezing import FrozenOrderedDict

from isdc import __version__
from isdc.dal import quarantine, runlog
from isdc.dal.archive import Archive, ArchiveError, ScwInfo, read_scw_info
from isdc.dal.icindex import ICError, ic_index_for
from isdc.dal.fitsfile import FitsError, FitsFile
from isdc.dal.grouping import add_back_pointer
from isdc.dal.products import Product
from isdc.dal.templates import TemplateError, get as get_template
from isdc.ids import IdError, ScwId, safe_name

log = logging.getLogger(__name__)

__all__ = [
    "ScwIdParameter", "NoWork", "PermanentError", "TransientError", "DatasetType", "register_dataset", "ObsTask",
    "DATASETS", "PRODUCERS", "ProductTarget", "IsdcTask", "ScwTask", "canonical_digest", "config_value",
]


# --------------------------------------------------------------------------- outcomes

class NoWork(Exception):
    """Nothing to do for this data ID (e.g. no good time): explicit empty products are written."""


class PermanentError(Exception):
    """Bad input that a retry cannot fix: the data ID is quarantined with this reason."""


class TransientError(Exception):
    """A failure that may pass (busy file system, network): the task retries."""


TRANSIENT_ERRNOS = {errno.EAGAIN, errno.EBUSY, errno.ETIMEDOUT, errno.ESTALE, errno.EINTR, errno.ECONNRESET,
                    errno.ECONNREFUSED}
RETRIES = 3
RETRY_DELAY_S = 0.5


# --------------------------------------------------------------------------- parameters

class ScwIdParameter(luigi.Parameter):
    """A luigi parameter holding a validated `ScwId` ('RRRRPPPPSSSF.VVV' on the command line)."""

    def parse(self, x):
        return ScwId.parse(x)

    def serialize(self, x):
        return str(x)

    def normalize(self, x):
        return ScwId.parse(x) if not isinstance(x, ScwId) else x


class ConfigParameter(luigi.DictParameter):
    """The run's configuration (a nested mapping). Every task of a build gets the same one:
    an already frozen value is taken as it is instead of being frozen again for each of the
    thousands of task instances a build makes (luigi re-freezes every value it is given)."""

    def normalize(self, value):
        return value if isinstance(value, FrozenOrderedDict) else super().normalize(value)


def canonical_digest(obj: Any, length: int = 16) -> str:
    """SHA-256 (hex, truncated) of the canonical JSON of `obj`."""
    text = json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _plain(obj):
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def config_value(config: Mapping, key: str, default: Any = KeyError) -> Any:
    """Value at dotted `key` ('isgri.bands') of a nested mapping."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            if default is KeyError:
                raise KeyError(f"configuration has no '{key}'")
            return default
        node = node[part]
    return _plain(node)


# --------------------------------------------------------------------------- datasets

class DatasetType:
    """A kind of product: name, the dimension that keys it, and its file name.

    Dimensions: 'raw' (input data of a ScW in the archive, `scw/RRRR/<scw>/`), 'aux'
    (auxiliary data of the ScW's revolution, `aux/adp/RRRR.VVV/`), 'scw' (a ScW's analysis
    products, `<outdir>/scw/<scw>/`), 'obs' (observation-level products,
    `<outdir>/obs/<group>/`).
    """

    def __init__(self, name: str, dimension: str, filename: str, description: str = ""):
        if dimension not in ("raw", "aux", "scw", "obs"):
            raise ValueError(f"dataset {name}: unknown dimension {dimension!r}")
        self.name, self.dimension, self.filename, self.description = name, dimension, filename, description

    def __repr__(self):
        return f"DatasetType({self.name!r}, {self.dimension!r}, {self.filename!r})"


DATASETS: dict[str, DatasetType] = {}
PRODUCERS: dict[str, type] = {}


def register_dataset(name: str, dimension: str, filename: str, description: str = "") -> DatasetType:
    """Declare a dataset type once; re-declaring it identically is allowed."""
    dt = DatasetType(name, dimension, filename, description)
    old = DATASETS.get(name)
    if old is not None and (old.dimension, old.filename) != (dimension, filename):
        raise ValueError(f"dataset {name} already declared as {old}")
    DATASETS[name] = dt
    return dt


# --------------------------------------------------------------------------- targets

_VERIFIED: dict[tuple, tuple[bool, str | None, str]] = {}


def _verify_file(path: Path) -> tuple[bool, str | None, str]:
    """(whole and checksums good, fingerprint keyword, problem) for a file; cached by stat."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False, None, "missing"
    key = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
    hit = _VERIFIED.get(key)
    if hit is not None:
        return hit
    try:
        f = FitsFile(path)
        problem = ""
        for info in f.hdus:
            ds, cs = f.verify_checksum(info)
            if "bad" in (ds, cs):
                problem = f"HDU {info.index} ({info.extname}) checksum {ds}/{cs}"
                break
        fp = f.hdus[0].header.get("ISDCFPRT")
        result = (not problem, None if fp is None else str(fp), problem)
    except FitsError as exc:
        result = (False, None, str(exc))
    if len(_VERIFIED) > 50000:
        _VERIFIED.clear()
    _VERIFIED[key] = result
    return result


def _written(path: Path, fingerprint: str) -> None:
    """Remember a product this process has just written as whole: `write_fits` computed its
    checksums from the bytes it wrote, so reading the file back to verify them (luigi asks
    for the completeness of a task's inputs before running it) would only repeat that."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return
    if len(_VERIFIED) > 50000:
        _VERIFIED.clear()
    _VERIFIED[(str(path), st.st_mtime_ns, st.st_size, st.st_ino)] = (True, fingerprint, "")


class ProductTarget(luigi.Target):
    """A product file that is complete only when whole and made with the expected fingerprint."""

    def __init__(self, path: str | os.PathLike, fingerprint: str | None = None, check_whole: bool = True):
        self.path = Path(path)
        self.fingerprint = fingerprint
        self.check_whole = check_whole

    def exists(self) -> bool:
        if not self.check_whole:
            return self.path.is_file()
        ok, fp, _ = _verify_file(self.path)
        return ok and (self.fingerprint is None or fp == self.fingerprint)

    def why_incomplete(self) -> str:
        ok, fp, problem = _verify_file(self.path)
        if not ok:
            return problem
        if self.fingerprint is not None and fp != self.fingerprint:
            return f"stale: fingerprint {fp}, expected {self.fingerprint}"
        return ""

    def __repr__(self):
        return f"ProductTarget({str(self.path)!r})"


# --------------------------------------------------------------------------- run log

def _log_run(task: "IsdcTask", outcome: str, t0: float, t1: float, cpu_s: float, times: dict) -> None:
    """One line in the host's run log (isdc.dal.runlog): who ran the task, when, how long it
    read, computed and wrote, and the process's peak memory so far."""
    try:
        data_id = task.data_id()
    except Exception:  # a bad ID is the task's error to report, not the log's
        data_id = ""
    runlog.append(task.outdir, {
        "task": task.task_family, "data_id": data_id, "task_id": task.task_id, "host": runlog.HOST,
        "pid": os.getpid(), "ppid": os.getppid(), "start": round(t0, 6), "stop": round(t1, 6),
        "seconds": round(t1 - t0, 6), "cpu_s": round(cpu_s, 6),
        "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "outcome": outcome, **{k: round(v, 6) for k, v in times.items()}})


# --------------------------------------------------------------------------- memos

# Per-build memo of fingerprints and requires(): within one build a task's fingerprint
# cannot change (it depends on parameters, IC files and raw inputs, not on products), and
# the DAG shares upstream tasks, so computing each once keeps a build linear in its tasks.
# Outside `build_memo()` nothing is cached (a daemon sees new IC files and raw data).
_MEMO: dict[str, dict] = {}
_RAW_FP: dict[tuple, str] = {}
_PARAM_NAMES: dict[type, frozenset] = {}


@contextlib.contextmanager
def build_memo():
    """Memoize fingerprints and requirements for the duration of one build."""
    saved = dict(_MEMO)
    _MEMO.update(fingerprint={}, requires={})
    try:
        yield
    finally:
        _MEMO.clear()
        _MEMO.update(saved)


def _param_names(cls: type) -> frozenset:
    names = _PARAM_NAMES.get(cls)
    if names is None:
        names = _PARAM_NAMES[cls] = frozenset(name for name, _ in cls.get_params())
    return names


# --------------------------------------------------------------------------- tasks

class IsdcTask(luigi.Task):
    """Base of every isdc task. Subclasses declare data, not wiring (see module docstring)."""

    archive = luigi.Parameter(description="archive root folder (input data, IC files)")
    outdir = luigi.Parameter(description="output root folder of this run")
    config = ConfigParameter(default={}, description="effective pipeline configuration")

    inputs: ClassVar[dict[str, str]] = {}
    outputs: ClassVar[dict[str, str]] = {}
    algorithm_version: ClassVar[int] = 1
    config_keys: ClassVar[tuple[str, ...]] = ()
    ic_structures: ClassVar[tuple[tuple[str, str], ...]] = ()  # (instrument, structure)
    nowork_propagates: ClassVar[bool] = True  # an empty input makes this task's outputs empty
    read_data: ClassVar[bool] = True  # False: process() gets its inputs' headers only (groupings)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.__dict__.get("outputs") and not callable(getattr(cls, "process", None)):
            raise TypeError(f"{cls.__name__} declares outputs but defines no process(inputs) method")
        for name in cls.__dict__.get("outputs", {}).values():
            if name not in DATASETS:
                raise ValueError(f"{cls.__name__}: output dataset {name} is not registered")
            other = PRODUCERS.get(name)
            if other is not None and other.__qualname__ != cls.__qualname__:
                raise ValueError(f"dataset {name} produced by both {other.__name__} and {cls.__name__}")
            PRODUCERS[name] = cls

    # Dimension-specific subclasses (ScwTask, ObsTask) define `data_id() -> str` and
    # `dataset_path(dataset) -> Path`; concrete tasks define `process(inputs) -> outputs`:
    # the science wiring from in-memory input Products to one Product per declared output.

    def producer_params(self, dataset: str) -> dict:
        """Parameters for the task that produces `dataset` (by default the same data ID)."""
        producer = PRODUCERS[dataset]
        wanted = _param_names(producer)
        params = {name: getattr(self, name) for name in _param_names(type(self)) if name in wanted}
        if producer is RawData:
            params["dataset"] = dataset
        elif producer is AuxData:
            scw = self.scw
            params.update(dataset=dataset, revolution=scw.revolution, version=str(scw.version))
        return params

    # ---- what luigi asks
    def requires(self):
        memo = _MEMO.get("requires")
        if memo is not None:
            hit = memo.get(self.task_id)
            if hit is None:
                hit = memo[self.task_id] = self._requires()
            return hit
        return self._requires()

    def _requires(self):
        reqs = {}
        for local, dataset in self.inputs.items():
            producer = PRODUCERS.get(dataset)
            if producer is None:
                raise ValueError(f"{self.task_family}: no task produces input dataset {dataset}")
            reqs[local] = producer(**self.producer_params(dataset))
        return reqs

    def output(self):
        fp = self.fingerprint()
        return {local: ProductTarget(self.dataset_path(ds), fp) for local, ds in self.outputs.items()}

    # ---- fingerprint and provenance
    def config_subset(self) -> dict:
        return {k: config_value(self.config, k, None) for k in self.config_keys}

    def ic_selection(self) -> list[dict]:
        """Provenance records of the IC files this task uses ([] when it uses none)."""
        return []

    def input_fingerprints(self) -> dict[str, str]:
        return {local: req.fingerprint() for local, req in self.requires().items()}

    def fingerprint(self) -> str:
        memo = _MEMO.get("fingerprint")
        if memo is not None:
            hit = memo.get(self.task_id)
            if hit is None:
                hit = memo[self.task_id] = self._fingerprint()
            return hit
        return self._fingerprint()

    def _fingerprint(self) -> str:
        return canonical_digest({
            "task": self.task_family,
            "algorithm_version": self.algorithm_version,
            "config": self.config_subset(),
            "ic": self.ic_selection(),
            "inputs": self.input_fingerprints(),
        })

    def provenance_rows(self, input_products: Mapping[str, Product]) -> dict[str, list]:
        rows = {"KIND": [], "NAME": [], "LOCATION": [], "VERSION": [], "CHECKSUM": []}

        def add(kind, name, loc, ver, cks):
            for k, v in zip(rows, (kind, name, str(loc)[:256], int(ver), str(cks)[:32])):
                rows[k].append(v)

        fps = self.input_fingerprints()
        for local, prod in input_products.items():
            sums = ",".join(str(h.header.get("DATASUM", "")) for h in prod.hdus)
            add("input", self.input_dataset(local), _relative(prod.path, self.roots()), 0, fps.get(local, "") or sums)
        for ic in self.ic_selection():
            add("ic", ic.get("structure", ""), ic.get("file", ""), ic.get("version", 0), ic.get("datasum", ""))
        for k, v in self.config_subset().items():
            add("config", k, json.dumps(v, sort_keys=True), 0, "")
        add("software", "isdc", __version__, 0, "")
        return rows

    def roots(self) -> list[Path]:
        return [Path(self.outdir), Path(self.archive)]

    # ---- running
    def read_inputs(self) -> dict[str, Product]:
        out = {}
        for local, req in self.requires().items():
            dataset = self.input_dataset(local)
            path = req.dataset_path(dataset) if isinstance(req, IsdcTask) else req.output().path
            try:
                out[local] = Product.read(path, data=self.read_data)
            except (FitsError, TemplateError, OSError) as exc:
                if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
                    raise TransientError(f"{self.data_id()}: reading {path}: {exc}") from exc
                raise PermanentError(f"{self.data_id()}: input {dataset} {path}: {exc}") from exc
        return out

    def input_dataset(self, local: str) -> str:
        """Dataset type of the input called `local` in requires()/inputs."""
        return self.inputs[local]

    def quarantine_key(self) -> str:
        return self.data_id()

    def run(self):
        started = _dt.datetime.now(_dt.timezone.utc)
        t0, cpu0 = time.time(), time.process_time()
        times = {"read_s": 0.0, "process_s": 0.0, "write_s": 0.0}
        outcome = "failed"
        try:
            fp = self.fingerprint()
            qdir = Path(self.outdir) / "quarantine"
            rec = quarantine.find(qdir, self.quarantine_key(), self.task_family)
            if rec is not None and rec.get("fingerprint") == fp:
                outcome = "quarantined"
                raise PermanentError(f"{self.data_id()} is quarantined: {rec.get('reason')}")
            try:
                inputs, outputs = self._attempt(times)
            except PermanentError as exc:
                outcome = "quarantined"
                quarantine.record(qdir, self.quarantine_key(), self.task_family, str(exc), fp)
                log.error("quarantined %s (%s): %s", self.data_id(), self.task_family, exc)
                raise
            finished = _dt.datetime.now(_dt.timezone.utc)
            w0 = time.perf_counter()
            self._write(inputs, outputs, fp, started, finished)
            times["write_s"] = time.perf_counter() - w0
            if rec is not None:
                quarantine.clear(qdir, self.quarantine_key(), self.task_family)
            outcome = "nowork" if all(p.nowork for p in outputs.values()) else "done"
        finally:
            _log_run(self, outcome, t0, time.time(), time.process_time() - cpu0, times)

    def _attempt(self, times: dict | None = None) -> tuple[dict[str, Product], dict[str, Product]]:
        times = times if times is not None else {}
        for attempt in range(RETRIES + 1):
            try:
                t0 = time.perf_counter()
                inputs = self.read_inputs()
                t1 = time.perf_counter()
                times["read_s"] = times.get("read_s", 0.0) + t1 - t0
                empty = [p for p in inputs.values() if p.nowork]
                if empty and self.nowork_propagates:
                    raise NoWork(f"input has no work: {empty[0].nowork_reason}")
                try:
                    outputs = self.process(inputs)
                finally:
                    times["process_s"] = times.get("process_s", 0.0) + time.perf_counter() - t1
                missing = set(self.outputs) - set(outputs)
                if missing:
                    raise RuntimeError(f"{self.task_family}.process() did not return {sorted(missing)}")
                return inputs, outputs
            except NoWork as nw:
                return {}, {local: Product.empty(str(nw)) for local in self.outputs}
            except (FitsError, TemplateError, IdError) as exc:
                raise PermanentError(f"{self.data_id()}: {exc}") from exc
            except (TransientError, OSError) as exc:
                transient = isinstance(exc, TransientError) or exc.errno in TRANSIENT_ERRNOS
                if not transient or attempt == RETRIES:
                    raise
                log.warning("%s: transient error, retry %d/%d: %s", self.data_id(), attempt + 1, RETRIES, exc)
                time.sleep(RETRY_DELAY_S * 2**attempt)
        raise AssertionError("unreachable")

    def _write(self, inputs: dict[str, Product], outputs: dict[str, Product], fp: str, started, finished) -> None:
        rows = self.provenance_rows(inputs)
        creator = f"{self.task_family} v{self.algorithm_version}"
        prov = get_template("GNRL-PROV-HIS").table(rows, CREATOR=creator, ISDCFPRT=fp)
        for local, product in outputs.items():
            h = product.header
            h["ISDCFPRT"] = (fp, "fingerprint: task, config, IC files, inputs")
            h["CREATOR"] = (creator, "task that made this product")
            h["ISDCVERS"] = (__version__, "isdc software version")
            h["CONFDIGS"] = (canonical_digest(self.config_subset()), "digest of the configuration used")
            h["HOSTNAME"] = (runlog.HOST[:68], "host that made this product")
            h["PRVSTART"] = (started.strftime("%Y-%m-%dT%H:%M:%S"), "processing start (UTC)")
            h["PRVSTOP"] = (finished.strftime("%Y-%m-%dT%H:%M:%S"), "processing end (UTC)")
            if not any(getattr(x, "name", "") == "GNRL-PROV-HIS" for x in product.hdus):
                product.hdus.append(prov)
            _number_extvers(product)
            group = self.group_file()
            if group and self.dataset_path(self.outputs[local]).name != group:
                for hdu in product.hdus[1:]:
                    if hdu.name not in ("GNRL-PROV-HIS", "GROUPING"):
                        add_back_pointer(hdu, 1, group)
            path = self.dataset_path(self.outputs[local])
            path.parent.mkdir(parents=True, exist_ok=True)
            product.write(path)
            _written(path, fp)

    def group_file(self) -> str | None:
        """File name (in the product's folder) of the group its HDUs belong to, or None."""
        return None


def _number_extvers(product: Product) -> None:
    """Give repeated EXTNAMEs distinct EXTVERs (1, 2, ...) where none is set: FITS readers
    (and fitsverify) need type/name/version to tell HDUs apart."""
    names = [h.name for h in product.hdus[1:]]
    for name in {n for n in names if n and names.count(n) > 1}:
        same = [h for h in product.hdus[1:] if h.name == name]
        if all("EXTVER" not in h.header for h in same):
            for k, h in enumerate(same, start=1):
                h.header["EXTVER"] = (k, "version of this EXTNAME in the file")


def _relative(path: Path | None, roots: list[Path]) -> str:
    if path is None:
        return ""
    p = Path(path).resolve()
    for r in roots:
        try:
            return str(p.relative_to(Path(r).resolve()))
        except ValueError:
            continue
    return p.name


class ScwTask(IsdcTask):
    """A task keyed by one science window."""

    scw = ScwIdParameter(description="science window RRRRPPPPSSSF.VVV")

    def data_id(self) -> str:
        return str(self.scw)

    def dataset_path(self, dataset: str) -> Path:
        dt = DATASETS[dataset]
        if dt.dimension in ("raw", "aux"):
            return _input_path(Path(self.archive), self.scw, dt)
        if dt.dimension == "scw":
            return Path(self.outdir) / "scw" / str(self.scw) / dt.filename
        raise ValueError(f"{self.task_family}: dataset {dataset} has dimension {dt.dimension}, not per-ScW")

    def group_file(self) -> str | None:
        return SCW_GROUP_FILE

    def scw_info(self) -> ScwInfo:
        """The ScW's swg.fits keywords (times, pointing); PermanentError if unusable."""
        archive = Archive(self.archive)
        try:
            st = archive.swg(self.scw).stat()
            key = (str(archive.swg(self.scw)), st.st_mtime_ns, st.st_size)
            info = _SCW_INFO.get(key)
            if info is None:
                info = read_scw_info(archive, self.scw)
                if len(_SCW_INFO) > 20000:
                    _SCW_INFO.clear()
                _SCW_INFO[key] = info
            return info
        except FileNotFoundError as exc:
            raise PermanentError(f"ScW {self.scw}: no {exc.filename}") from exc
        except ArchiveError as exc:
            raise PermanentError(str(exc)) from exc

    def ic_selection(self) -> list[dict]:
        if not self.ic_structures:
            return []
        try:
            t = self.scw_info().tstart
            index = ic_index_for(self.archive)
            return [index.select(inst, struct, t).provenance() for inst, struct in self.ic_structures]
        except (ICError, PermanentError) as exc:
            # Completeness cannot be judged without the IC files: say why, as an input problem.
            return [{"error": str(exc)}]

    def ic_file(self, instrument: str, structure: str):
        """The ICSelection (path, HDU, version) of an IC structure valid at this ScW's start."""
        try:
            return ic_index_for(self.archive).select(instrument, structure, self.scw_info().tstart)
        except ICError as exc:
            raise PermanentError(f"{self.scw}: {exc}") from exc


# The analysis group of a ScW's products, and of an observation's, in their folders.
SCW_GROUP_FILE = "swg_isgri.fits"
OBS_GROUP_FILE = "og_isgri.fits"

# swg.fits keywords by (path, mtime, size): fingerprints ask for them many times per build.
_SCW_INFO: dict[tuple, ScwInfo] = {}


def _input_path(archive: Path, scw: ScwId, dt: DatasetType) -> Path:
    # Built only from a parsed ScwId: every component is digits.
    if dt.dimension == "aux":
        return archive / "aux" / "adp" / f"{scw.revolution:04d}.{scw.version}" / dt.filename
    return archive / "scw" / f"{scw.revolution:04d}" / str(scw) / dt.filename


class _ArchiveInput(luigi.ExternalTask):
    """An input file in the archive: present or not (its fingerprint says what it holds)."""

    archive = luigi.Parameter()
    dataset = luigi.Parameter()

    def input_path(self) -> Path:
        raise NotImplementedError

    def output(self):
        # Present is enough here: a damaged input must reach the task that reads it, which
        # quarantines the ScW with the file and the problem named (a luigi "missing
        # dependency" would say neither).
        return ProductTarget(self.input_path(), check_whole=False)

    def fingerprint(self) -> str:
        """Raw data change (e.g. more NRT telemetry) -> every product made from them is stale.

        Per HDU: DATASUM, CHECKSUM (covers the header) and the axis lengths — a data sum
        alone misses appended zero bytes.
        """
        path = self.input_path()
        try:
            st = path.stat()
            key = (str(path), st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            return canonical_digest({"raw": DATASETS[self.dataset].filename, "missing": True})
        hit = _RAW_FP.get(key)
        if hit is None:
            try:
                f = FitsFile(path)
                sums = [[str(h.header.get(k, "")) for k in ("DATASUM", "CHECKSUM", "NAXIS1", "NAXIS2")] for h in f.hdus]
            except FitsError:
                sums = ["unreadable"]
            if len(_RAW_FP) > 50000:
                _RAW_FP.clear()
            hit = _RAW_FP[key] = canonical_digest({"raw": DATASETS[self.dataset].filename, "datasums": sums})
        return hit


class RawData(_ArchiveInput):
    """Input data of a ScW in the archive (made by pre-processing or the simulator)."""

    scw = ScwIdParameter()

    def input_path(self) -> Path:
        return _input_path(Path(self.archive), self.scw, DATASETS[self.dataset])


class AuxData(_ArchiveInput):
    """Auxiliary data of a revolution (attitude, time correlation, orbit): one task for all
    the revolution's ScWs, so a revolution's build holds one per file, not one per ScW
    (52 pointings: 104 tasks fewer for luigi to schedule, and for luigid to be told of by
    every worker)."""

    revolution = luigi.IntParameter()
    version = luigi.Parameter()

    def input_path(self) -> Path:
        # Built only from an int and a version that came out of a parsed ScwId.
        if not (0 <= self.revolution <= 9999 and len(self.version) == 3 and self.version.isdigit()):
            raise ValueError(f"invalid revolution {self.revolution} / version {self.version!r}")
        folder = Path(self.archive) / "aux" / "adp" / f"{self.revolution:04d}.{self.version}"
        return folder / DATASETS[self.dataset].filename


def raw_input(dataset: str) -> None:
    """Make the archive the producer of an input dataset type (raw ScW data or aux data)."""
    dimension = DATASETS[dataset].dimension
    if dimension not in ("raw", "aux"):
        raise ValueError(f"{dataset} is not a raw dataset")
    PRODUCERS[dataset] = AuxData if dimension == "aux" else RawData


def safe_group(name: str) -> str:
    return safe_name(name, "observation group name")


class ObsTask(IsdcTask):
    """A task keyed by an observation group: a named list of ScWs.

    `scw_inputs` maps a local name to a per-ScW dataset: the task requires that dataset for
    every ScW of the group (keys '<local>@<scwid>' in requires() and in process()'s
    inputs). ScWs with explicit empty products (no work) are handed over as such; the task
    decides what to do with them (by default an observation goes on without them).
    """

    group = luigi.Parameter(description="observation group name")
    scws = luigi.ListParameter(description="ScW IDs RRRRPPPPSSSF.VVV of the group")

    scw_inputs: ClassVar[dict[str, str]] = {}
    nowork_propagates = False

    def data_id(self) -> str:
        return safe_group(self.group)

    def group_file(self) -> str | None:
        return OBS_GROUP_FILE

    def scw_ids(self) -> list[ScwId]:
        return [ScwId.parse(s) for s in self.scws]

    def dataset_path(self, dataset: str) -> Path:
        dt = DATASETS[dataset]
        if dt.dimension != "obs":
            raise ValueError(f"{self.task_family}: dataset {dataset} has dimension {dt.dimension}, not obs")
        return Path(self.outdir) / "obs" / safe_group(self.group) / dt.filename

    def input_dataset(self, local: str) -> str:
        name, _, _ = local.partition("@")
        return self.scw_inputs.get(name) or self.inputs[name]

    def _requires(self):
        reqs = dict(super()._requires())
        for local, dataset in self.scw_inputs.items():
            producer = PRODUCERS.get(dataset)
            if producer is None:
                raise ValueError(f"{self.task_family}: no task produces input dataset {dataset}")
            for scw in self.scw_ids():
                reqs[f"{local}@{scw}"] = producer(archive=self.archive, outdir=self.outdir, config=self.config, scw=scw)
        return reqs

    def per_scw(self, inputs: dict, local: str) -> dict[ScwId, Product]:
        """The inputs called `local`, by ScW (empty products included)."""
        return {ScwId.parse(k.partition("@")[2]): v for k, v in inputs.items() if k.partition("@")[0] == local}
