"""The simulated instrument's IC files: ISGRI response and gain model, to and from FITS.

`response_hdus`/`write_response` store an `IsgriResponse` as an OGIP RMF
(ISGR-EBDS-MOD = EBOUNDS, ISGR-RMF.-RSP = SPECRESP MATRIX); `IsgriResponse.load`
reads it back. `gain_model_table`/`gain_model_from_table` convert a `GainModel` to and
from the ISGR-GAIN-MOD table the COR step reads.

`python -m isdc.sim.icfiles [RMF]` writes `ic_files/isgri/isgr_gain_mod_0001.fits` (the
default `GainModel`) and, given the real OSA 11 response, re-derives
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
from isdc.instruments.isgri.detector_model import PHA_MAX, RISE_MAX, RISE_MIN, GainModel
from isdc.instruments.isgri.response import (
    AREA_SCALE,
    SIM_RESPONSE_FILE,
    IsgriResponse,
    derive_simulation_response,
)

__all__ = ["response_hdus", "write_response", "gain_model_table", "gain_model_from_table", "VSTOP_OPEN",
           "SIM_GAIN_FILE"]

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
