"""The one dependency graph: ScW levels, ScW analysis groups, observation products.

NRT, CONS and OSA builds are made here from the same task classes; they differ only in
the ScWs, the configuration (`pipelines/<stream>.yaml` + user overrides) and the output
folder. A level name (COR … LCR) maps to the task producing that level's product (the
product file names are the data contract, docs/isgri.md).
"""
from __future__ import annotations

import importlib
import logging
from pathlib import Path

import luigi
import numpy as np
from astropy.io import fits

from isdc.dal.archive import Archive, ArchiveError, build_scw_index, read_scw_index, select_scws
from isdc.dal.catalog import read_catalog
from isdc.dal.fitsfile import FitsFile
from isdc.dal.grouping import Grouping, PendingFile, link, link_existing
from isdc.dal.products import Product
from isdc.dal.skyimages import sky_image_hdus, sky_image_sets
from isdc.ids import ScwId
from isdc.pipeline.base import DATASETS, PRODUCERS, ObsTask, ScwTask, register_dataset
from isdc.pipeline.config import LEVELS
from isdc.pipeline.skymaps import mosaic_sets
from isdc.pipeline.sourcelist import ReferenceSources, source_list
from isdc.resources import data_dir

log = logging.getLogger(__name__)

__all__ = ["LEVEL_FILES", "level_task", "ScwGroup", "ObsMosaic", "ObsGroup", "scw_tasks", "obs_tasks", "select_run_scws",
           "reference_sources"]

# The product file of each ISGRI level (data contract).
LEVEL_FILES = {
    "COR": "isgri_events_cor.fits", "GTI": "ibis_gti.fits", "DEAD": "isgri_dead.fits",
    "BIN": "isgri_shadowgrams.fits", "BKG": "isgri_bkg_shadowgrams.fits", "IMA": "isgri_sky_ima.fits",
    "SPE": "isgri_spectrum.fits", "LCR": "isgri_lc.fits",
}
# Modules whose import registers the instrument tasks.
CHAIN_MODULES = ("isdc.pipeline.isgri_scw", "isdc.pipeline.isgri_science")


def _load_chain() -> None:
    for name in CHAIN_MODULES:
        importlib.import_module(name)


def level_dataset(level: str) -> str:
    """Name of the dataset type holding `level`'s product."""
    _load_chain()
    want = LEVEL_FILES[level]
    for name, dt in DATASETS.items():
        if dt.dimension == "scw" and dt.filename == want and name in PRODUCERS:
            return name
    raise KeyError(f"no task produces the {level} product {want}")


def level_task(level: str) -> type:
    """The task class of a level (e.g. 'IMA')."""
    return PRODUCERS[level_dataset(level)]


register_dataset("isgri_scw_group", "scw", "swg_isgri.fits", "the ScW's analysis group (GNRL-SCWG-GRP)")
register_dataset("isgri_obs_mosaic", "obs", "isgri_mosa_ima.fits", "observation mosaic (ISGR-MOSA-IMA)")
register_dataset("isgri_obs_srcl", "obs", "isgri_mosa_res.fits", "sources found in the mosaic (ISGR-SRCL-RES)")
register_dataset("isgri_obs_group", "obs", "og_isgri.fits", "the observation group (GNRL-OBSG-GRP)")


class ScwGroup(ScwTask):
    """The ScW's analysis group: a GNRL-SCWG-GRP grouping of the products of every level run."""

    outputs = {"group": "isgri_scw_group"}
    config_keys = ("levels",)
    read_data = False  # it lists the products' HDUs

    @property
    def inputs(self):
        """Every product of every configured level (a level task may write several files)."""
        out = {}
        for lv in self.config.get("levels", LEVELS):
            for local, dataset in level_task(lv).outputs.items():
                out[f"{lv.lower()}.{local}"] = dataset
        return out

    def process(self, inputs):
        path = self.dataset_path("isgri_scw_group")
        info = self.scw_info()
        g = Grouping("GNRL-SCWG-GRP", header=info.header(), aux={"ISDCLEVL": "8A"})
        pf = PendingFile(path)
        pf.append(g)
        for local, prod in inputs.items():
            if not prod.nowork:
                _link_members(g, pf, prod, self.outdir, {"ISDCLEVL": local.split(".")[0].upper()})
        group = Product([h.to_table() if isinstance(h, Grouping) else h for h in pf.hdus[1:]])
        group.header["STREAM"] = (str(self.config.get("stream", "osa")), "processing stream (nrt, cons, osa)")
        return {"group": group}


def reference_sources(archive: str, config: dict) -> ReferenceSources:
    """The reference catalogue of a run: config 'catalog' ('default' = the archive's
    cat/gnrl_refr_cat.fits when present) as ReferenceSources; empty when there is none."""
    name = config.get("catalog", "default")
    if name == "default":
        path = Archive(archive).cat_dir() / "gnrl_refr_cat.fits"
        if not path.is_file():
            return ReferenceSources.empty()
    else:
        path = Path(name)
    return ReferenceSources.from_catalog(read_catalog(path), path.name)


class ObsMosaic(ObsTask):
    """Mosaic of the ScW sky images of an observation, and the sources found in it."""

    outputs = {"mosaic": "isgri_obs_mosaic", "srcl": "isgri_obs_srcl"}
    config_keys = ("isgri.ima.detection_threshold", "catalog")
    # luigi gives a task's priority to everything upstream of it: every ScW's chain up to IMA
    # runs before any SPE/LCR, so that the mosaic (the one long task at the end, ~8 s for 52
    # ScWs) runs beside the spectra and light curves instead of alone after them.
    priority = 10

    @property
    def scw_inputs(self):
        return {"ima": level_dataset("IMA")}

    def process(self, inputs):
        per = self.per_scw(inputs, "ima")
        sets = [sky_image_sets(p.hdus, str(p.path)) for s, p in sorted(per.items()) if not p.nowork]
        if not sets:
            from isdc.pipeline.base import NoWork

            raise NoWork(f"no ScW of {self.group} has sky images")
        mos = mosaic_sets(sets)
        kw = {"NIMAGES": (len(sets), "ScW images in the mosaic"), "OBS_GRP": (self.group, "observation group")}
        threshold = float(self.config.get("isgri", {}).get("ima", {}).get("detection_threshold", 6.0))
        srcl = source_list(mos, reference_sources(self.archive, self.config), threshold=threshold,
                           image_name=self.dataset_path("isgri_obs_mosaic").name)
        return {"mosaic": Product(sky_image_hdus(mos, "ISGR-MOSA-IMA", kw)), "srcl": Product([srcl])}


class ObsGroup(ObsTask):
    """The observation group: a GNRL-OBSG-GRP grouping of the ScW analysis groups and the
    observation products (ISDC's og.fits)."""

    outputs = {"group": "isgri_obs_group"}
    scw_inputs = {"scw": "isgri_scw_group"}
    read_data = False  # it lists the ScW groups and the observation products
    config_keys = ("levels", "obs.mosaic")

    @property
    def inputs(self):
        if "IMA" in self.config.get("levels", LEVELS) and self.config.get("obs", {}).get("mosaic", True):
            return {"mosaic": "isgri_obs_mosaic", "srcl": "isgri_obs_srcl"}
        return {}

    def process(self, inputs):
        path = self.dataset_path("isgri_obs_group")
        scws = self.scw_ids()
        header = fits.Header([("OBS_GRP", self.group, "observation group name"),
                              ("NSCW", len(scws), "science windows"),
                              ("STREAM", str(self.config.get("stream", "osa")), "processing stream")])
        g = Grouping("GNRL-OBSG-GRP", header=header, aux={"KIND": "8A"})
        # The ScW analysis groups are listed in an index nested in this file: an index leaves
        # its members (written by other tasks) untouched.
        scw_idx = Grouping("GNRL-SCWG-GRP-IDX", extver=2, aux={"SWID": "16A"})
        pf = PendingFile(path)
        pf.append(g)
        pf.append(scw_idx)
        link(g, pf, scw_idx, aux={"KIND": "SCW_IDX"})
        for scw, prod in sorted(self.per_scw(inputs, "scw").items()):
            if not prod.nowork:
                link_existing(scw_idx, pf, prod.path, "GROUPING", root=self.outdir, aux={"SWID": str(scw)})
        for local in ("mosaic", "srcl"):
            prod = inputs.get(local)
            if prod is not None and not prod.nowork:
                _link_members(g, pf, prod, self.outdir, {"KIND": local.upper()})
        return {"group": Product([h.to_table() if isinstance(h, Grouping) else h for h in pf.hdus[1:]])}


def _link_members(group: Grouping, pf: PendingFile, prod: Product, root: str, aux: dict) -> None:
    """List every data HDU of a product (not its provenance or own groupings) in `group`;
    the framework wrote their back-pointers to this group's file."""
    opened = []  # the product's file is scanned once, not once per HDU

    def opener(path):
        if not opened:
            opened.append(FitsFile(path))
        return opened[0]

    for i, hdu in enumerate(prod.hdus[1:], start=1):
        if hdu.name not in ("GNRL-PROV-HIS", "GROUPING"):
            link_existing(group, pf, prod.path, i, root=root, aux=aux, opener=opener)


# Options of how a build runs, not of what it makes: kept out of the tasks' parameters, so
# that worker processes started with different options share one build's task IDs.
RUN_OPTIONS = ("workers",)


def task_config(config: dict) -> dict:
    """The configuration the tasks of a build get: `config` without RUN_OPTIONS."""
    return {k: v for k, v in config.items() if k not in RUN_OPTIONS}


def scw_tasks(archive: str, outdir: str, scws: list[ScwId], config: dict) -> list[luigi.Task]:
    """One ScwGroup per ScW: it requires every configured level of the ScW."""
    return [ScwGroup(archive=str(archive), outdir=str(outdir), config=config, scw=s) for s in scws]


def obs_tasks(archive: str, outdir: str, groups: dict[str, list[ScwId]], config: dict) -> list[luigi.Task]:
    """The observation group of each group: it requires the ScW groups and the observation
    products (mosaic and its sources when IMA is run and mosaics are configured)."""
    return [ObsGroup(archive=str(archive), outdir=str(outdir), config=config, group=name,
                     scws=[str(s) for s in sorted(scws)]) for name, scws in sorted(groups.items())]


def select_run_scws(archive: str, *, scw_ids=(), revolution=None, tstart=None, tstop=None, ra=None, dec=None,
                    radius=None, version=None, pointings_only: bool = True) -> list[ScwId]:
    """ScWs of a run: explicit IDs, or a selection on the archive's ScW index."""
    arch = Archive(archive)
    if scw_ids:
        return sorted({ScwId.parse(s) for s in scw_ids})
    idx_path = arch.idx_scw()
    try:
        index = read_scw_index(idx_path, archive=arch) if idx_path.is_file() else build_scw_index(arch, write=False)
    except ArchiveError:
        raise
    chosen = select_scws(index, revolution=revolution, tstart=tstart, tstop=tstop, ra=ra, dec=dec, radius_deg=radius,
                         version=version, sw_type="POINTING" if pointings_only else None, latest=True)
    return sorted(chosen)


def _product(outdir: str, scw: ScwId, filename: str) -> Product | None:
    path = Path(outdir) / "scw" / str(scw) / filename
    if not path.is_file():
        return None
    try:
        return Product.read(path, validate=False)
    except Exception as exc:  # a damaged product is reported as such, not raised
        log.warning("summary: %s: %s", path, exc)
        return None


def summarize(outdir: str, scws: list[ScwId], quarantined: list[dict]) -> list[dict]:
    """One row per ScW: status, good time, exposure, sources found and the brightest."""
    q = {r.get("data_id"): r for r in quarantined}
    rows = []
    for s in scws:
        row = {"scw": str(s), "status": "missing", "ontime": np.nan, "exposure": np.nan, "sources": 0,
               "brightest": "", "detsig": np.nan, "reason": ""}
        group = _product(outdir, s, "swg_isgri.fits")
        gti = _product(outdir, s, LEVEL_FILES["GTI"])
        if str(s) in q:
            row["status"], row["reason"] = "quarantined", str(q[str(s)].get("reason", ""))[:80]
        elif group is not None:
            row["status"] = "done"
        if gti is not None and gti.nowork and row["status"] != "quarantined":
            row["status"], row["reason"] = "no work", gti.nowork_reason
        if gti is not None and not gti.nowork:
            row["ontime"] = float(gti.hdus[1].header.get("ONTIME", np.nan)) if len(gti.hdus) > 1 else np.nan
        dead = _product(outdir, s, LEVEL_FILES["DEAD"])
        if dead is not None and not dead.nowork and len(dead.hdus) > 1:
            row["exposure"] = float(dead.hdus[1].header.get("EXPOSURE", np.nan))
        srcl = _product(outdir, s, "isgri_srcl_res.fits")
        if srcl is not None and not srcl.nowork:
            t = srcl.table("ISGR-SRCL-RES")
            row["sources"] = len(set(t["NAME"])) if len(t) else 0
            if len(t):
                j = int(np.argmax(t["DETSIG"]))
                row["brightest"], row["detsig"] = str(t["NAME"][j]), float(t["DETSIG"][j])
        rows.append(row)
    return rows


def summary_text(rows: list[dict]) -> str:
    head = f"{'ScW':<17} {'status':<11} {'ontime/s':>9} {'exposure/s':>10} {'sources':>7}  brightest"
    lines = [head, "-" * len(head)]
    for r in rows:
        bright = f"{r['brightest']} ({r['detsig']:.1f} sigma)" if r["brightest"] else r["reason"]
        lines.append(f"{r['scw']:<17} {r['status']:<11} {r['ontime']:>9.0f} {r['exposure']:>10.0f} "
                     f"{r['sources']:>7}  {bright}")
    n = {k: sum(r["status"] == k for r in rows) for k in ("done", "no work", "quarantined", "missing")}
    lines.append(f"{n['done']} done, {n['no work']} without good time, {n['quarantined']} quarantined, "
                 f"{n['missing']} not produced")
    return "\n".join(lines)


def run_analysis(archive: str, outdir: str, scws: list[ScwId], config: dict, *, groups: dict | None = None,
                 workers: int = 1, scheduler_host: str | None = None, scheduler_port: int = 8082,
                 progress: bool = True, log_level: str = "WARNING"):
    """Build the analysis of `scws` (+ observation products of `groups`) into `outdir`.

    Returns (BuildReport, summary rows). The output folder may not lie in the archive's
    input areas (scw/, aux/, ic/, idx/, cat/).
    """
    from isdc.pipeline.runner import Progress, run_build

    out = Archive(archive).make_output_dir(outdir)
    config = task_config(config)
    tops = scw_tasks(archive, str(out), scws, config)
    tasks = tops + obs_tasks(archive, str(out), groups or {}, config)
    qdir = out / "quarantine"
    if progress:
        with Progress(tops, qdir):
            report = run_build(tasks, workers=workers, scheduler_host=scheduler_host, scheduler_port=scheduler_port,
                               log_level=log_level, quarantine_dirs=[qdir])
    else:
        report = run_build(tasks, workers=workers, scheduler_host=scheduler_host, scheduler_port=scheduler_port,
                           log_level=log_level, quarantine_dirs=[qdir])
    return report, summarize(str(out), scws, report.quarantined)


def observation_groups(archive: str, scws: list[ScwId], default: str) -> dict[str, list[ScwId]]:
    """ScWs grouped by their OBS_ID (swg.fits); ScWs without one form the group `default`."""
    from isdc.dal.archive import read_scw_info

    arch = Archive(archive)
    groups: dict[str, list[ScwId]] = {}
    for s in scws:
        try:
            obs = read_scw_info(arch, s).obs_id
        except ArchiveError:
            obs = ""
        groups.setdefault(obs or default, []).append(s)
    return groups


def run_consolidated(archive: str, revolution: int, config: dict, **kw):
    """CONS standard analysis of a revolution: ScWs (.001 pointings), observations, results index.

    Returns (BuildReport, summary rows, output folder).
    """
    from isdc.dal.results import update_results_index
    from isdc.ids import CONS, Revolution

    arch = Archive(archive)
    rev = Revolution.parse(revolution)
    scws = select_run_scws(archive, revolution=rev.number, version=CONS.number)
    if not scws:
        raise ArchiveError(f"revolution {rev}: no consolidated (.001) pointing in {arch.root}")
    name = f"rev{rev}"
    outdir = arch.obs_dir(name, CONS)
    groups = observation_groups(archive, scws, name)
    report, rows = run_analysis(archive, str(outdir), scws, config, groups=groups, **kw)
    update_results_index(arch)
    return report, rows, outdir
