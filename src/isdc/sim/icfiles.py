"""The simulated instrument's IC files: ISGRI response and gain model, to and from FITS.

`response_hdus`/`write_response` store an `IsgriResponse` as an OGIP RMF
(ISGR-EBDS-MOD = EBOUNDS, ISGR-RMF.-RSP = SPECRESP MATRIX); `IsgriResponse.load`
reads it back. `gain_model_table`/`gain_model_from_table` convert a `GainModel` to and
from the ISGR-GAIN-MOD table the COR step reads.

`mask_image`/`geometry_from_mask` store the IBIS mask and its geometry (IBIS-MASK-MOD).

`python -m isdc.sim.icfiles [RMF]` writes `ic_files/isgri/isgr_gain_mod_0001.fits` (the
default `GainModel`), `ic_files/isgri/ibis_mask_mod_0001.fits` (the mask) and, given the real OSA 11 response, re-derives
`ic_files/isgri/isgr_rmf_rsp_0001.fits.gz` from it (see `derive_simulation_response`).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from isdc.dal import templates
from isdc.dal.fitsfile import Image, Table
from isdc.dal.products import write_product
from isdc.imaging.geometry import CodedMaskGeometry
from isdc.instruments.isgri.detector_model import PHA_MAX, RISE_MAX, RISE_MIN, GainModel
from isdc.instruments.isgri.response import (
    AREA_SCALE,
    SIM_RESPONSE_FILE,
    IsgriResponse,
    derive_simulation_response,
)

__all__ = ["response_hdus", "write_response", "gain_model_table", "gain_model_from_table", "VSTOP_OPEN",
           "SIM_GAIN_FILE", "SIM_MASK_FILE", "mask_image", "geometry_from_mask", "revolution_gain"]

VSTOP_OPEN = 99999.0
"""VSTOP of an IC file valid until further notice (the ISDC convention)."""


def response_hdus(resp: IsgriResponse, version: int = 1, vstart: float = 0.0, vstop: float = VSTOP_OPEN,
                  history: tuple[str, ...] = ()) -> list[Table]:
    """[EBOUNDS, SPECRESP MATRIX] tables of `resp` (fixed-length matrix, channels from 0)."""
    n_e, n_ch = resp.matrix.shape
    common = dict(DETCHANS=n_ch, VERSION=int(version), VSTART=float(vstart), VSTOP=float(vstop))
    eb = templates.get("ISGR-EBDS-MOD").table(
        {"CHANNEL": np.arange(n_ch, dtype=np.int16), "E_MIN": resp.e_min, "E_MAX": resp.e_max}, **common)
    mat = templates.get("ISGR-RMF.-RSP").table(
        {"ENERG_LO": resp.energ_lo, "ENERG_HI": resp.energ_hi, "N_GRP": np.ones(n_e, np.int16),
         "F_CHAN": np.zeros(n_e, np.int32), "N_CHAN": np.full(n_e, n_ch, np.int32),
         "MATRIX": resp.matrix.astype(np.float32)},
        TLMIN4=0, RISE_MIN=RISE_MIN, RISE_MAX=RISE_MAX, **common)
    for line in history:
        mat.header.add_history(line)
    return [eb, mat]


def write_response(path: str | os.PathLike, resp: IsgriResponse, **kw) -> Path:
    """Write `resp` as an OGIP response file (see `response_hdus` for keywords)."""
    return write_product(path, [Image(None, {})] + response_hdus(resp, **kw))


_GAIN_COLUMNS = {"GAIN": "gain", "OFFSET": "offset", "GAIN_TCOEF": "gain_tcoef", "OFFS_TCOEF": "offset_tcoef",
                 "RT_GAIN": "rt_gain", "RT_OFFSET": "rt_offset"}


def gain_model_table(model: GainModel, version: int = 1, vstart: float = 0.0, vstop: float = VSTOP_OPEN) -> Table:
    """The ISGR-GAIN-MOD table of `model` (one row per module)."""
    cols = {"MODULE": np.arange(model.gain.size, dtype=np.int16)}
    cols.update({c: getattr(model, a) for c, a in _GAIN_COLUMNS.items()})
    return templates.get("ISGR-GAIN-MOD").table(
        cols, VERSION=int(version), VSTART=float(vstart), VSTOP=float(vstop), T_REF=float(model.t_ref),
        TEMP_REF=float(model.temperature_ref), GAINDRFT=float(model.gain_drift), CHLOSS=float(model.charge_loss),
        CHLKNEE=float(model.charge_loss_knee), RISE_MIN=RISE_MIN, RISE_MAX=RISE_MAX, PHA_MAX=PHA_MAX)


def gain_model_from_table(table: Table, where: str = "ISGR-GAIN-MOD") -> GainModel:
    """A `GainModel` from an ISGR-GAIN-MOD table (rows in any order, one per module)."""
    templates.get("ISGR-GAIN-MOD").validate(table, where)
    order = np.argsort(table["MODULE"])
    if not np.array_equal(np.asarray(table["MODULE"])[order], np.arange(len(order))):
        raise templates.TemplateError(f"{where}: MODULE must list each module 0..{len(order) - 1} once")
    h = table.header
    return GainModel(**{a: np.asarray(table[c], dtype=float)[order] for c, a in _GAIN_COLUMNS.items()},
                     gain_drift=float(h["GAINDRFT"]), t_ref=float(h["T_REF"]), temperature_ref=float(h["TEMP_REF"]),
                     charge_loss=float(h["CHLOSS"]), charge_loss_knee=float(h["CHLKNEE"]))


def revolution_gain(model: GainModel, t_ref: float) -> GainModel:
    """The same gain law re-referenced to `t_ref` [IJD]: GAIN becomes the gain at `t_ref`
    (drift applied), T_REF = `t_ref`. The simulator writes one per revolution (its start),
    as the calibration of that revolution, and uses exactly it as the true gain."""
    from dataclasses import replace

    return replace(model, gain=model.gain * (1.0 + model.gain_drift * (float(t_ref) - model.t_ref)), t_ref=float(t_ref))


def mask_image(geometry: CodedMaskGeometry | None = None, version: int = 1, vstart: float = 0.0,
               vstop: float = VSTOP_OPEN) -> Image:
    """The IBIS-MASK-MOD image of `geometry` (default `isgri_geometry()`): the 95 x 95 mask
    (uint8, 1 open) and the mask/detector constants as keywords."""
    from isdc.instruments.isgri.geometry import IBIS_MASK_ORDER, IBIS_MASK_ORIGIN, isgri_geometry

    g = geometry if geometry is not None else isgri_geometry()
    if not np.all(np.isin(g.mask, (0.0, 1.0))):
        raise ValueError(f"{g.name}: IBIS-MASK-MOD stores open/closed elements (0/1), the mask has other values")
    return templates.get("IBIS-MASK-MOD").image(
        g.mask.astype(np.uint8), VERSION=int(version), VSTART=float(vstart), VSTOP=float(vstop),
        MASK_ORD=IBIS_MASK_ORDER, ORIGIN_Z=IBIS_MASK_ORIGIN[0], ORIGIN_Y=IBIS_MASK_ORIGIN[1],
        ELEMSIZE=g.mask_element_mm, MASKDIST=g.mask_distance_mm, MASKOFFZ=g.mask_offset_mm[0],
        MASKOFFY=g.mask_offset_mm[1], PIXPITCH=g.pixel_pitch_mm, PIXACTIV=g.pixel_active_mm,
        MODPIX_Z=g.module_pixels[0], MODPIX_Y=g.module_pixels[1], NMOD_Z=g.n_modules[0], NMOD_Y=g.n_modules[1],
        GAP_Z=g.gap_pitches[0], GAP_Y=g.gap_pitches[1])


def geometry_from_mask(image: Image, where: str = "IBIS-MASK-MOD") -> CodedMaskGeometry:
    """The `CodedMaskGeometry` an IBIS-MASK-MOD image describes (what the imaging needs)."""
    templates.get("IBIS-MASK-MOD").validate(image, where)
    h = image.header
    return CodedMaskGeometry(
        mask=np.asarray(image.data, dtype=float), mask_element_mm=float(h["ELEMSIZE"]),
        mask_distance_mm=float(h["MASKDIST"]), pixel_pitch_mm=float(h["PIXPITCH"]),
        pixel_active_mm=float(h["PIXACTIV"]), module_pixels=(int(h["MODPIX_Z"]), int(h["MODPIX_Y"])),
        n_modules=(int(h["NMOD_Z"]), int(h["NMOD_Y"])), gap_pitches=(int(h["GAP_Z"]), int(h["GAP_Y"])),
        mask_offset_mm=(float(h["MASKOFFZ"]), float(h["MASKOFFY"])), name=f"IBIS/ISGRI from {where}")


SIM_MASK_FILE = "isgri/ibis_mask_mod_0001.fits"
"""The IBIS mask (IBIS-MASK-MOD of `isgri_geometry()`), relative to `ic_files/`."""

SIM_GAIN_FILE = "isgri/isgr_gain_mod_0001.fits"
"""The simulator's ISGR-GAIN-MOD (the default `GainModel`), relative to `ic_files/`."""


def main(argv: list[str] | None = None) -> int:
    """Write the simulator's IC files: the gain model, and the response derived from a real one."""
    from isdc.resources import data_dir

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("rmf", nargs="?", help="real ISGRI response (OSA 11 ISGR-RMF.-RSP, e.g. isgri_rmf_osa11_2020.fits)")
    p.add_argument("--ic", default=str(data_dir("ic_files")), help="IC tree to write into")
    a = p.parse_args(argv)
    out = Path(a.ic)
    gain = write_product(out / SIM_GAIN_FILE, [Image(None, {}), gain_model_table(GainModel())])
    print(f"wrote {gain}")
    mask = write_product(out / SIM_MASK_FILE, [Image(None, {}), mask_image()])
    print(f"wrote {mask}")
    if a.rmf:
        real = IsgriResponse.load(a.rmf)
        rsp = write_response(out / SIM_RESPONSE_FILE, derive_simulation_response(real), history=(
            f"Derived from {Path(a.rmf).name}: the OSA 11 ISGRI response of 2020 (VSTART 7356.44),",
            f"matrix x {AREA_SCALE} (isdc.instruments.isgri.response.AREA_SCALE) to match the",
            "in-flight Crab rates the simulator is calibrated to; grids and shape unchanged.",
        ))
        print(f"wrote {rsp}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
